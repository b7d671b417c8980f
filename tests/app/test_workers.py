"""WORKERS > 1: a node of several processes sharing one port (sample_app/serve.py), as real processes on loopback.

Which worker served a request is read from /proc, not from the app: the server side of the request's connection is
a socket that one worker's file descriptors hold.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.cluster import Cluster, strategy_env
from harness.nginx import Nginx
from harness.servers import ROOT, AppNode, free_port, wait_until
from tests.app.test_drain import run_load_around

pytestmark = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads the served connections from /proc")


def children(parent: int) -> set[int]:
    """The live processes whose parent is `parent`."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, ...
            if int(fields[1]) == parent and fields[0] != "Z":
                found.add(int(entry))
    return found


def serving_pid(conn: http.client.HTTPConnection, server_port: int, pids: set[int]) -> int | None:
    """The process among `pids` holding the server side of the connection `conn` opened."""
    client_port = conn.sock.getsockname()[1]
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1], fields[2]
        if int(local.split(":")[1], 16) == server_port and int(remote.split(":")[1], 16) == client_port:
            inode = fields[9]
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                    return pid
            except OSError:
                continue
    return None


def call(
    conn: http.client.HTTPConnection, method: str, path: str, body: dict | None = None, cookie: str | None = None
) -> tuple[int, dict, str | None]:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if cookie:
        headers["Cookie"] = f"SESSION={cookie}"
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    response = conn.getresponse()
    data = json.loads(response.read() or b"{}")
    set_cookie = response.getheader("set-cookie") or ""
    handle = set_cookie.split(";", 1)[0].partition("=")[2] if set_cookie.startswith("SESSION=") else None
    return response.status, data, handle


def connections_by_worker(node: AppNode, want: set[int], timeout: float = 15) -> dict[int, http.client.HTTPConnection]:
    """One open connection served by each worker in `want` (connections are opened until each has taken one)."""
    found: dict[int, http.client.HTTPConnection] = {}
    spare: list[http.client.HTTPConnection] = []
    deadline = time.monotonic() + timeout
    try:
        while set(found) < want and time.monotonic() < deadline:
            batch = [http.client.HTTPConnection(node.host, node.port, timeout=5) for _ in range(8)]
            for conn in batch:
                conn.connect()
            for conn in batch:
                assert call(conn, "GET", "/ping")[0] == 200
                pid = serving_pid(conn, node.port, want)
                if pid in want and pid not in found:
                    found[pid] = conn
                else:
                    spare.append(conn)  # kept open: the worker that took it is busier for the next ones
    finally:
        for conn in spare:
            conn.close()
    assert set(found) == want, f"workers {sorted(want)} did not all serve within {timeout} s: {sorted(found)}"
    return found


def wait_workers(node: AppNode, count: int, timeout: float = 15) -> set[int]:
    """The node's workers, once there are `count` and each has served a request (a worker that dies before it
    first serves is one that cannot start: the node stops)."""
    wait_until(lambda: len(children(node.proc.pid)) == count, timeout, f"{count} workers of node {node.name}")
    workers = children(node.proc.pid)
    for conn in connections_by_worker(node, workers, timeout).values():
        conn.close()
    return workers


@pytest.fixture(scope="module")
def node(backends):
    cluster = Cluster("redis", backends, size=1, extra_env={"WORKERS": "2"}).start()
    yield cluster.nodes[0]
    cluster.destroy()


def test_two_workers_serve_and_share_sessions(node):
    workers = wait_workers(node, 2)
    assert node.proc.pid not in workers
    first, second = connections_by_worker(node, workers).values()
    status, body, handle = call(first, "POST", "/login", {"username": "alice"})
    assert status == 200 and handle
    status, body, _ = call(second, "POST", "/session/counter", cookie=handle)  # the other worker
    assert (status, body["counter"]) == (200, 1)
    status, body, _ = call(first, "GET", "/session", cookie=handle)
    assert (status, body["user"], body["counter"]) == (200, "alice", 1)
    first.close()
    second.close()


def test_a_killed_worker_is_replaced(node):
    workers = wait_workers(node, 2)
    killed = min(workers)
    os.kill(killed, signal.SIGKILL)
    wait_until(
        lambda: killed not in children(node.proc.pid) and len(children(node.proc.pid)) == 2,
        15,
        "a new worker in place of the killed one",
    )
    now = children(node.proc.pid)
    new = now - workers
    assert len(new) == 1, (workers, now)
    for conn in connections_by_worker(node, now).values():  # the new one serves, beside the one left
        conn.close()
    assert node.proc.poll() is None


def test_workers_dying_over_and_over_stop_the_node(backends):
    """More than RESTART_LIMIT replacements within RESTART_WINDOW: the node stops with status 1 (and systemd's
    Restart=on-failure takes over)."""
    from sample_app.serve import RESTART_LIMIT

    node = AppNode("crashing", {**strategy_env("redis", backends), "WORKERS": "2"}).start()
    try:
        for _ in range(RESTART_LIMIT):
            workers = wait_workers(node, 2)
            gone = min(workers)
            os.kill(gone, signal.SIGKILL)
            wait_until(
                lambda gone=gone: gone not in children(node.proc.pid) and len(children(node.proc.pid)) == 2,
                15,
                "a replacement",
            )
        os.kill(min(children(node.proc.pid)), signal.SIGKILL)  # one more than the limit
        assert node.proc.wait(15) == 1
        assert "more than 5 restarts within 60 s: the node stops" in node.log.read_text()
        assert children(node.proc.pid) == set()
    finally:
        node.destroy()


def test_a_worker_whose_parent_is_killed_stops(backends):
    node = AppNode("orphans", {**strategy_env("redis", backends), "WORKERS": "2"}).start()
    try:
        workers = wait_workers(node, 2)
        node.kill()
        wait_until(lambda: all(stat_state(pid) == "Z" for pid in workers), 10, "the orphaned workers' exit")
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((node.host, node.port), timeout=2).close()
    finally:
        node.destroy()


def stat_state(pid: int) -> str:
    """A process's state letter; "Z" for one that exited (reaped or not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def test_one_worker_is_one_process(backends):
    node = AppNode("single", strategy_env("redis", backends)).start()  # WORKERS unset: 1
    try:
        assert children(node.proc.pid) == set()
        conn = http.client.HTTPConnection(node.host, node.port, timeout=5)
        assert call(conn, "GET", "/ping")[0] == 200
        assert serving_pid(conn, node.port, {node.proc.pid}) == node.proc.pid
        conn.close()
    finally:
        node.destroy()


def test_stopping_a_node_of_workers_under_load_fails_no_request(backends):
    """SIGTERM to the parent (systemd's stop, KillMode=mixed): every worker drains, as one process does."""
    cluster = Cluster("redis", backends, size=2, extra_env={"WORKERS": "2", "DRAIN_SECONDS": "8"}).start()
    nginx = Nginx([node.url.removeprefix("http://") for node in cluster.nodes], access_log=True).start()
    node = cluster.nodes[1]
    stopped: dict[str, object] = {}
    try:
        wait_workers(node, 2)

        def stop_and_restart(mark):
            workers = children(node.proc.pid)
            mark("stop")
            started = time.monotonic()
            node.stop()  # SIGTERM to the parent
            stopped.update(
                status=node.proc.returncode,
                seconds=time.monotonic() - started,
                left=[pid for pid in workers if stat_state(pid) != "Z"],
            )
            node.start()

        load, figures = run_load_around(cluster, nginx, stop_and_restart)
    finally:
        nginx.destroy()
        cluster.destroy()
    assert stopped["status"] == 0 and stopped["left"] == [], stopped
    assert stopped["seconds"] < 8 + 5, stopped  # DRAIN_SECONDS + the parent's margin
    assert figures["requests"] > 500, figures
    assert figures["failed"] == 0, figures
    assert figures["unauthorized"] == 0 and figures["gone_at_end"] == 0 and figures["counter_mismatch"] == 0, figures
    assert node.name in figures["per_node"], "the restarted node should serve again"


def run_app(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sample_app"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "APP_HOST": "127.0.0.1",
            "APP_PORT": str(free_port()),
            "LOG_LEVEL": "warning",
            **env,
        },
    )


@pytest.mark.parametrize("strategy", ["sticky", "replication"])
def test_in_memory_strategies_refuse_several_workers(strategy, backends):
    result = run_app({**strategy_env(strategy, backends), "WORKERS": "2"})
    assert result.returncode == 2
    assert result.stderr == (
        f"sample_app: invalid setting WORKERS: {strategy} keeps its sessions in one process's "
        f"memory, so it runs 1 worker per node, got 2\n"
    )


def test_a_port_in_use_stops_the_node_with_one_line(backends):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_app({**strategy_env("redis", backends), "WORKERS": "2", "APP_PORT": str(port)})
    assert result.returncode == 3, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and f"cannot bind 127.0.0.1:{port}: Address already in use" in lines[0], result.stderr
