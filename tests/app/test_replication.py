"""replication on real nodes (three uvicorn processes on loopback): sync mode reads its writes from node to node, a
replayed delta batch is refused, a node that was away catches up, a restarted node serves only with a snapshot,
and reads keep a session alive on every node.

No retries here: in sync mode every answer comes after the peers have the change, so each read is checked once.
"""

from __future__ import annotations

import contextlib
import json
import signal
import time

import pytest
import requests

from harness.client import SessionClient
from harness.cluster import Backends, Cluster
from harness.servers import AppNode, free_port, port_open, wait_until
from sample_app.stores.replicated import AUTH_HEADER, sign

from .conftest import eventually


@contextlib.contextmanager
def replication(size: int = 3, ttl: int = 1800, **env: str):
    """A cluster of `size` replication nodes (env: their extra settings), started, and crashed when done."""
    cluster = Cluster("replication", Backends(), size=size, ttl=ttl, extra_env=env).start()
    try:
        yield cluster
    finally:
        cluster.crash()


@pytest.fixture(scope="module")
def sync_cluster():
    with replication(REPLICATION_MODE="sync") as cluster:
        yield cluster


def status(url: str) -> dict:
    return requests.get(url + "/_replication/status", timeout=5).json()


def test_sync_round_robin_reads_its_own_writes(sync_cluster):
    urls = sync_cluster.urls
    client = SessionClient()
    assert client.login(urls[0], "roundrobin").status_code == 200
    read = client.get(urls[1] + "/session")  # at once, on another node
    assert read.status_code == 200 and read.json()["user"] == "roundrobin", read.text
    seen = [client.post(urls[n % 3] + "/session/counter").json()["counter"] for n in range(50)]
    assert seen == list(range(1, 51)), "each increment must build on the one before, whichever node served it"
    assert client.request("PUT", urls[2] + "/session/data/cart", json=[1, 2]).status_code == 200
    assert client.get(urls[0] + "/session").json()["data"] == {"cart": [1, 2]}
    assert client.request("DELETE", urls[0] + "/session/data/cart").json()["deleted"] is True
    assert client.get(urls[1] + "/session").json()["data"] == {}
    copied = client.handle
    # Login again on a third node: the session moves to a new id, and the old one is dead everywhere at once.
    assert client.login(urls[2], "roundrobin").status_code == 200 and client.handle != copied
    assert client.get(urls[0] + "/session").json()["counter"] == 50
    thief = SessionClient()
    thief.handle = copied
    assert [thief.get(url + "/session").status_code for url in urls] == [401, 401, 401]
    thief.handle = client.handle
    assert client.post(urls[0] + "/logout").status_code == 200
    assert [thief.get(url + "/session").status_code for url in urls] == [401, 401, 401], (
        "after logout every node must refuse the session at once"
    )
    assert {status(url)["mode"] for url in urls} == {"sync"}


def test_replayed_delta_batch_is_refused(sync_cluster):
    url, key = sync_cluster.urls[0], sync_cluster.env["REPLICATION_KEY"].encode()
    handle = "R" * 43

    def batch(seq: int, delta: dict) -> bytes:
        return json.dumps(
            {"origin": "intruder", "epoch": "e1", "deltas": [{"seq": seq, "ts": time.time(), "sid": handle, **delta}]}
        ).encode()

    def post(body: bytes, header: str) -> requests.Response:
        return requests.post(url + "/_replication/deltas", data=body, headers={AUTH_HEADER: header}, timeout=5)

    version = [10**9, "intruder"]
    create = batch(
        1,
        {
            "exp": time.time() + 600,
            "f": {"user": [*version, "mallory"], "created": [*version, 0], "counter": [*version, 0]},
        },
    )
    captured = sign(key, "POST", "/_replication/deltas", create)
    assert post(create, captured).json() == {"applied": 1}
    reader = SessionClient()
    reader.handle = handle
    assert reader.get(url + "/session").json()["user"] == "mallory"
    end = batch(2, {"del": time.time()})
    assert post(end, sign(key, "POST", "/_replication/deltas", end)).json() == {"applied": 1}
    assert reader.get(url + "/session").status_code == 401
    before = status(url)["replays_refused"]
    replay = post(create, captured)  # the same bytes, the same signature, well within the 30 s window
    assert replay.status_code == 409 and replay.json()["error"] == "replayed"
    assert status(url)["replays_refused"] == before + 1
    # Signed afresh (as a sender retrying a batch whose answer it lost): its sequence number was applied already.
    assert post(create, sign(key, "POST", "/_replication/deltas", create)).json() == {"applied": 0}
    assert reader.get(url + "/session").status_code == 401, "a replayed creation must not bring a session back"


def test_peer_that_misses_the_timeout_is_marked_down_and_catches_up():
    with replication(REPLICATION_MODE="sync", REPLICATION_TIMEOUT_MS="300") as cluster:
        first, stuck = cluster.nodes[0], cluster.nodes[2]
        client = SessionClient()
        client.login(first.url, "patient")
        stuck.proc.send_signal(signal.SIGSTOP)  # alive, port open, never answers
        try:
            started = time.monotonic()
            assert client.post(first.url + "/session/counter").json()["counter"] == 1
            waited = time.monotonic() - started
            assert 0.25 <= waited < 2, (
                f"a sync change waits for the stuck peer about REPLICATION_TIMEOUT ({waited:.2f} s)"
            )
            assert status(first.url)["peers"][stuck.url]["state"] != "up"
            # the second node has not sent to the stuck peer yet: its first change waits once, and marks it down too
            assert client.post(cluster.urls[1] + "/session/counter").json()["counter"] == 2
            started = time.monotonic()
            for n in range(3, 7):
                assert client.post(cluster.urls[n % 2] + "/session/counter").json()["counter"] == n
            # four changes that each waited REPLICATION_TIMEOUT would take 1.2 s at least
            assert time.monotonic() - started < 1, "a peer marked down is not waited for again"
        finally:
            stuck.proc.send_signal(signal.SIGCONT)
        cluster.wait_replicating()
        assert client.get(stuck.url + "/session").json()["counter"] == 6, "the snapshot brings it up to date"
        assert status(first.url)["peers"][stuck.url]["snapshots"] >= 2


def test_restarted_node_serves_only_with_a_snapshot():
    with replication(REPLICATION_MODE="sync") as cluster:
        client = SessionClient()
        client.login(cluster.urls[0], "phoenix")
        restarted = cluster.nodes[1]
        restarted.kill()
        for _ in range(3):
            client.post(cluster.urls[2] + "/session/counter")
        restarted.start(wait=False)
        # The port opens only after the snapshot: the first answer it gives already knows the session.
        wait_until(lambda: port_open(restarted.port), 20, "the restarted node")
        assert client.get(restarted.url + "/session").json()["counter"] == 3
        assert status(restarted.url)["snapshot_from"] in (cluster.urls[0], cluster.urls[2])


def test_startup_no_peer_up_starts_empty_but_a_failing_peer_is_retried():
    env = {"SESSION_STRATEGY": "replication", "REPLICATION_KEY": "right-key", "LOG_LEVEL": "info"}
    # A peer that is up but refuses (another key): the new node keeps retrying, its port stays closed.
    refusing = AppNode("refusing", {**env, "REPLICATION_KEY": "another-key"}).start()
    waiting = AppNode("waiting", {**env, "PEERS": f"{refusing.url},http://127.0.0.1:{free_port()}"})
    alone = None
    try:
        waiting.start(wait=False)
        # bounded wait for its first retry (a loaded machine starts Python slowly), then it is still not serving
        wait_until(lambda: "no snapshot yet, retrying" in waiting.log.read_text(), 20, "the first snapshot retry")
        assert waiting.proc.poll() is None and not port_open(waiting.port), "it must not serve without a snapshot"
        refusing.kill()  # now no peer is up at all: an empty cluster, start empty
        waiting.wait_ready()
        assert status(waiting.url)["snapshot_from"] == "" and status(waiting.url)["sessions"] == 0
        # A node whose peers are all down starts at once.
        alone = AppNode("alone", {**env, "PEERS": f"http://127.0.0.1:{free_port()}"})
        started = time.monotonic()
        alone.start()
        assert time.monotonic() - started < 20
    finally:
        for node in (refusing, waiting, alone):
            if node:
                node.kill()
                node.destroy()


def test_reads_keep_the_session_alive_on_every_node():
    with replication(size=2, ttl=2) as cluster:
        read, idle = SessionClient(), SessionClient()
        read.login(cluster.urls[0], "reader")
        idle.login(cluster.urls[0], "idler")
        deadline = time.monotonic() + 3  # longer than the TTL: only the reads on node1 keep it alive on node2
        while time.monotonic() < deadline:
            assert read.get(cluster.urls[0] + "/session").status_code == 200
            time.sleep(0.3)
        assert read.get(cluster.urls[1] + "/session").status_code == 200, "node2 let a session that is read expire"
        assert idle.get(cluster.urls[1] + "/session").status_code == 401, "a session nobody reads must expire"


def test_async_mode_answers_first_and_reports_lag():
    with replication(size=2, REPLICATION_MODE="async") as cluster:
        client = SessionClient()
        client.login(cluster.urls[0], "hasty")
        for _ in range(5):
            client.post(cluster.urls[0] + "/session/counter")
        caught_up = eventually(lambda: client.get(cluster.urls[1] + "/session").json().get("counter") == 5 or None)
        assert caught_up, "async replication never delivered"
        lag = status(cluster.urls[1])
        assert lag["mode"] == "async" and lag["lag_ms"]["samples"] >= 6 and lag["lag_ms"]["p50"] is not None
