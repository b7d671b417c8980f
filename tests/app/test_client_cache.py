"""The node's copies of sessions (REDIS_CACHE_SESSIONS, sample_app/stores/client_cache.py), on the real Redis: a read
on any node sees every write made before it, on whichever node; copies are really served; and a tracking
connection that drops (killed, or Redis restarted) takes every copy with it, since the invalidations it would have
carried are lost."""

from __future__ import annotations

import asyncio
import hashlib
import time

import pytest
import redis

from harness.client import SessionClient
from harness.cluster import Cluster
from harness.servers import RedisServer
from sample_app.stores.client_cache import ClientCache
from sample_app.stores.resp import LeanRedis

ROUNDS = 1000  # each: a write on one node, then four reads alternating between the two


@pytest.fixture(scope="module", params=["redis", "token"])
def pair(request, backends):
    cluster = Cluster(request.param, backends, size=2).start()
    yield cluster
    cluster.destroy()


@pytest.fixture
def direct(backends):
    client = redis.Redis.from_url(backends.redis.url)
    yield client
    client.close()


def _calls(client: redis.Redis, command: str) -> int:
    return client.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0)


def _tracking_clients(client: redis.Redis) -> list[dict]:
    return [c for c in client.client_list() if "t" in c["flags"]]


def test_a_client_alternating_between_nodes_reads_every_write_at_once_and_copies_are_served(pair, direct):
    """No pause between a write on one node and a read on the other: the read's barrier (one round trip on the
    tracking connection) must find the invalidation Redis sent when it ran the write."""
    client = SessionClient(bearer=pair.bearer)
    assert client.login(pair.urls[0], "alternating").status_code == 200
    assert [client.get(url + "/session").status_code for url in pair.urls] == [200, 200]
    assert len(_tracking_clients(direct)) >= 2, "no tracking connection: the copies are off"
    reads_before, hgetall_before = 0, _calls(direct, "hgetall")
    stale = []
    for i in range(1, ROUNDS + 1):
        writer, other = pair.urls[i % 2], pair.urls[(i + 1) % 2]
        if i % 5:
            assert client.post(writer + "/session/counter").json()["counter"] == i
        else:  # a data write every fifth round (the counter then moves too, as a write of its own)
            assert client.request("PUT", writer + "/session/data/round", json=i).status_code == 200
            assert client.post(other + "/session/counter").json()["counter"] == i
        for url in (other, writer, other, writer):
            body = client.get(url + "/session").json()
            reads_before += 1
            if body["counter"] != i or (i >= 5 and body["data"].get("round") != i - i % 5):
                stale.append((i, url, body["counter"], body["data"]))
    assert not stale, f"{len(stale)} of {reads_before} reads missed a write made before them: {stale[:5]}"
    hgetall = _calls(direct, "hgetall") - hgetall_before
    # After each write both copies are gone: the first read on each node goes to Redis, the second is a copy.
    assert hgetall <= reads_before * 0.55, f"{hgetall} reads from Redis for {reads_before} reads: copies not served"


@pytest.mark.parametrize("how", ["connection killed", "redis restarted"])
def test_copies_go_with_the_tracking_connection(pair, direct, backends, how):
    """A change made while no tracking connection could hear of it is read at once, never an old copy."""
    client = SessionClient(bearer=pair.bearer)
    assert client.login(pair.urls[0], "dropped").status_code == 200
    assert client.post(pair.urls[0] + "/session/counter").json()["counter"] == 1
    for _ in range(3):  # held as a copy now (the first read filled it)
        assert client.get(pair.urls[1] + "/session").json()["counter"] == 1
    hgetall = _calls(direct, "hgetall")
    assert client.get(pair.urls[1] + "/session").json()["counter"] == 1
    assert _calls(direct, "hgetall") == hgetall, "the read went to Redis: no copy held, nothing to test"

    key = ("token:" + hashlib.sha256(client.handle.encode()).hexdigest()) if pair.bearer else "session:" + client.handle
    if how == "connection killed":
        for tracking in _tracking_clients(direct):
            direct.client_kill_filter(_id=tracking["id"])
    else:
        backends.redis.stop(save=True)
        backends.redis.start()
        direct.close()  # its connection went with the server
    time.sleep(0.3)  # the nodes see their connection end
    direct.hset(key, "counter", 41)  # no node's tracking connection can hear of this one
    answers = [client.get(pair.urls[1] + "/session") for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    assert [a.json()["counter"] for a in answers] == [41, 41], "an old copy outlived its tracking connection"
    assert client.post(pair.urls[0] + "/session/counter").json()["counter"] == 42
    assert client.get(pair.urls[1] + "/session").json()["counter"] == 42


def test_the_tracking_connection_moves_where_the_stores_connection_went(redis_server, run):
    """A Sentinel failover moves the store's connection to the promoted replica; the old master may keep answering
    until Sentinel demotes it. The reads' connection must follow at its next batch, dropping every copy, so that a
    node never reads on one server and writes on another."""
    promoted = RedisServer().start()
    try:
        redis.Redis.from_url(redis_server.url).set("cache-move", "old master")
        redis.Redis.from_url(promoted.url).set("cache-move", "promoted")

        async def scenario():
            cache = ClientCache(10)
            store = LeanRedis(redis_server.url)
            reads = LeanRedis(redis_server.url, tracker=cache, follows=store)
            try:
                assert await reads.execute("GET", "cache-move") == b"old master"
                cache.reading("held")
                cache.read("held", "a copy", deadline=float("inf"))
                store.host, store.port = "127.0.0.1", promoted.port  # where Sentinel now says the master is
                store._proto.close()
                await asyncio.sleep(0.1)  # its end is heard of
                await store.ping()  # the store's connection reconnects there
                assert cache.get("held", 0.0) == "a copy", "nothing told the cache yet: the test shows nothing"
                value = await reads.execute("GET", "cache-move")
                return value, reads.connected_to, cache.get("held", 0.0)
            finally:
                await store.close()
                await reads.close()

        value, connected_to, copy = run(scenario())
        assert (value, connected_to) == (b"promoted", ("127.0.0.1", promoted.port)), "reads stayed on the old master"
        assert copy is None, "a copy outlived the move"
    finally:
        promoted.destroy()
