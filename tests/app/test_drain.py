"""A node that is stopped (SIGTERM, as `systemctl stop` sends) under load through Nginx fails no request: it drains
(sample_app/serve.py). A node killed (SIGKILL) fails at most the requests it had in flight."""

from __future__ import annotations

import asyncio
import signal

import pytest

from drills.load import Load, summarize, upstreams_of_failures
from harness.cluster import Cluster
from harness.nginx import Nginx


def run_load_around(cluster: Cluster, nginx: Nginx, action, seconds: float = 6.0) -> tuple[Load, dict]:
    async def main():
        load = Load(nginx.url, clients=60, bearer=cluster.bearer, think=0.02, limit_seconds=seconds + 30)
        await load.open()
        try:
            assert await load.log_in_all() == 60
            runner = asyncio.create_task(load.run())
            await asyncio.sleep(seconds / 3)
            events: dict[str, float] = {}
            await asyncio.to_thread(action, lambda name: events.setdefault(name, load.now()))
            await asyncio.sleep(seconds * 2 / 3)
            load.stop()
            await runner
            checked = await load.check_all()
        finally:
            await load.close()
        return load, {**summarize(load.outcomes, events), **checked, "events": events}

    return asyncio.run(main())


@pytest.fixture(scope="module")
def redis_cluster(backends):
    cluster = Cluster("redis", backends, size=3, extra_env={"DRAIN_SECONDS": "8"}).start()
    nginx = Nginx([node.url.removeprefix("http://") for node in cluster.nodes], access_log=True).start()
    yield cluster, nginx
    nginx.destroy()
    cluster.destroy()


def test_stopping_a_node_under_load_fails_no_request(redis_cluster):
    cluster, nginx = redis_cluster
    node = cluster.nodes[1]

    def stop_and_restart(mark):
        mark("stop")
        node.stop()  # SIGTERM: the drain
        node.start()

    load, figures = run_load_around(cluster, nginx, stop_and_restart)
    assert figures["requests"] > 500, figures
    assert figures["failed"] == 0, figures
    assert figures["unauthorized"] == 0 and figures["gone_at_end"] == 0 and figures["counter_mismatch"] == 0, figures
    assert node.name in figures["per_node"], "the restarted node should serve again"


def test_killing_a_node_fails_at_most_its_requests_in_flight(redis_cluster):
    cluster, nginx = redis_cluster
    node = cluster.nodes[2]

    def kill_and_restart(mark):
        mark("kill")
        node.proc.send_signal(signal.SIGKILL)
        node.proc.wait(5)
        node.start()
        mark("restarted")

    load, figures = run_load_around(cluster, nginx, kill_and_restart)
    # Every failed request was sent to the killed node (a POST in progress there, or sent on a connection the
    # kill had just closed): nginx's access log names the node of each.
    sent_to = upstreams_of_failures(load.outcomes, nginx.access_log())
    killed = node.url.removeprefix("http://")
    assert len(sent_to) == figures["failed"], (sent_to, figures)
    assert all(killed in nodes for nodes in sent_to.values()), (sent_to, killed)
    # How many depends on timing (in flight at the kill, or sent on a keep-alive connection the kill closed before
    # Nginx saw it close), not on a defect; each was sent before the node was back, and at most one per client.
    restarted = figures["events"]["restarted"]
    assert all(o.start <= restarted for o in load.outcomes if o.failed), figures
    assert figures["failed"] <= 60, figures
    assert figures["gone_at_end"] == 0 and figures["counter_lower"] == 0, figures
    # An increment whose answer the kill cut off may have reached Redis all the same (the client cannot tell): at
    # most one such surplus per failed request, never an acknowledged increment missing.
    assert figures["counter_higher"] <= figures["failed"], figures


def test_connections_queued_at_the_close_are_taken_not_reset():
    """Closing a listener resets what the kernel had queued and the loop had not accepted: requests the balancer
    already sent (a POST it must not send again). The drain takes them first (sample_app/serve.py: take_pending);
    once it has, the port refuses, so the balancer sends new requests elsewhere."""
    import socket

    from sample_app.serve import take_pending

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    clients = [socket.create_connection(("127.0.0.1", port), timeout=2) for _ in range(5)]
    for client in clients:
        client.sendall(b"POST /session/counter HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    taken = take_pending(listener)
    try:
        assert len(taken) == 5, f"{len(taken)} of 5 queued connections taken"
        for conn in taken:
            conn.setblocking(True)
            conn.settimeout(2)
            assert conn.recv(1024).startswith(b"POST /session/counter"), "the request sent before the close is there"
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        for client in clients:
            assert client.recv(1024).startswith(b"HTTP/1.1 200 OK"), "the client got its answer, not a reset"
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2)
    finally:
        for sock in [*taken, *clients]:
            sock.close()
