"""The redis and token stores, driven directly on the real Redis: reads and increments slide the expiry only once a
tenth of SESSION_TTL has passed (a PEXPIRE is a write, sent on to replicas and the AOF), every other change slides
it at once; reads run no script; and a session hash is read whatever the order of its fields."""

from __future__ import annotations

import asyncio

import pytest
import redis

from harness.cluster import strategy_env
from sample_app.settings import Settings
from sample_app.stores import build_store
from sample_app.stores.base import Session
from sample_app.stores.redis import RedisStore

TTL = 600


@pytest.fixture(scope="module", params=["redis", "token"])
def driven(request, backends):
    settings = Settings.from_env({**strategy_env(request.param, backends, ttl=TTL), "NODE_NAME": "redis-store"})
    _, store = build_store(settings)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(store.start())
    client = redis.Redis.from_url(backends.redis.url)
    yield store, loop.run_until_complete, client
    client.close()
    loop.run_until_complete(store.close())
    loop.close()


def test_reads_and_increments_slide_the_expiry_once_a_tenth_of_the_ttl_has_passed(driven):
    store, run, client = driven
    handle = run(store.create(Session(user="hot")))
    key = store.key(handle)
    client.pexpire(key, (TTL - 30) * 1000)  # 30 s used: within the first tenth (60 s)
    run(store.load(handle))
    assert run(store.increment(handle)).value == 1
    assert client.pttl(key) <= (TTL - 30) * 1000, "within a tenth of the TTL, reads and increments leave it alone"

    client.pexpire(key, (TTL - 70) * 1000)  # 70 s since the last slide: due
    assert run(store.load(handle)).counter == 1
    run(store.ping())  # a read's slide is not waited for: it goes before this on the store's connection
    assert client.pttl(key) > (TTL - 5) * 1000, "a read past a tenth of the TTL slides the expiry"

    client.pexpire(key, (TTL - 70) * 1000)
    assert run(store.increment(handle)).value == 2
    assert client.pttl(key) > (TTL - 5) * 1000, "an increment past a tenth of the TTL slides the expiry"

    client.pexpire(key, (TTL - 30) * 1000)
    run(store.set_data(handle, "theme", "dark"))
    assert client.pttl(key) > (TTL - 5) * 1000, "a change of the data slides it at once"

    client.persist(key)  # a session without expiry (written by hand, or by an older node) is given one
    run(store.load(handle))
    run(store.ping())
    assert 0 < client.pttl(key) <= TTL * 1000


def test_an_expired_or_unknown_session_is_not_brought_back_by_an_increment(driven):
    store, run, client = driven
    handle = run(store.create(Session(user="gone")))
    client.delete(store.key(handle))
    assert run(store.increment(handle)) is None
    assert run(store.load(handle)) is None
    assert client.exists(store.key(handle)) == 0, "no half session left behind"


def _script_calls(client) -> int:
    stats = client.info("commandstats")
    return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("evalsha", "eval"))


def test_a_batch_of_reads_runs_no_script_and_slides_only_the_sessions_due(driven):
    """Reads go as plain HGETALL and PTTL (a script cost Redis twice the CPU per read); concurrent reads, gone
    sessions among them, still come back one answer each, and only the sessions past a tenth of the TTL slide."""
    store, run, client = driven
    handles = [run(store.create(Session(user=f"batch{i}", data={"n": i}))) for i in range(6)]
    due, fresh, gone = handles[:2], handles[2:4], handles[4:]
    for handle in due:
        client.pexpire(store.key(handle), (TTL - 70) * 1000)
    for handle in fresh:
        client.pexpire(store.key(handle), (TTL - 30) * 1000)
    for handle in gone:
        client.delete(store.key(handle))
    scripts = _script_calls(client)

    async def read_all():
        return await asyncio.gather(*(store.load(handle) for handle in handles))

    sessions = run(read_all())
    run(store.ping())  # the slides are not waited for: they go before this on the store's connection
    assert [s.data["n"] if s else None for s in sessions] == [0, 1, 2, 3, None, None]
    assert _script_calls(client) == scripts, "reads ran a script"
    assert all(client.pttl(store.key(h)) > (TTL - 5) * 1000 for h in due), "a read past a tenth of the TTL slides it"
    assert all(client.pttl(store.key(h)) <= (TTL - 30) * 1000 for h in fresh), "a fresh session was slid"
    assert all(client.exists(store.key(h)) == 0 for h in gone), "a read brought back a gone session"


@pytest.mark.parametrize(
    "order",
    [
        [b"user", b"ann", b"counter", b"7", b"created", b"1700000000.5", b"d:a", b"[1,2]", b"d:b", b'"x"'],
        [b"d:b", b'"x"', b"created", b"1700000000.5", b"counter", b"7", b"d:a", b"[1,2]", b"user", b"ann"],
        [b"counter", b"7", b"user", b"ann", b"created", b"1700000000.5", b"d:a", b"[1,2]", b"d:b", b'"x"'],
    ],
)
def test_a_session_hash_reads_the_same_in_any_field_order(order):
    session = RedisStore._parse(order)
    assert (session.user, session.counter, session.created, session.data) == (
        "ann",
        7,
        1700000000.5,
        {"a": [1, 2], "b": "x"},
    )
    assert RedisStore._parse([]) is None
