"""The database store's lanes (sample_app/stores/postgres_lane.py: Lane), on a real PostgreSQL of their own (these tests
restart it), on asyncio's loop and on uvloop (the app's): a lane watches its socket for the connection's life, and no
statement waits on a watch that is gone, after a restart, a change of event loop, a cancel or a close. (`run`: the
coroutine on each kind of loop, tests/app/conftest.py.)"""

from __future__ import annotations

import asyncio
import contextlib

import psycopg
import pytest

from harness.servers import PostgresServer
from sample_app.stores import postgres_lane
from sample_app.stores.base import Limits, Session, StoreUnavailable
from sample_app.stores.postgres import PostgresStore
from sample_app.stores.postgres_lane import Lane


@pytest.fixture(scope="module")
def postgres():
    server = PostgresServer().start()
    yield server
    server.destroy()


def new_store(postgres: PostgresServer) -> PostgresStore:
    return PostgresStore(Limits(ttl=600, max_data_keys=8), postgres.url, pool_size=2)


async def started(store: PostgresStore, user: str) -> str:
    """The store started, with one session of `user` read and incremented once: both lanes open and idle."""
    await store.start()
    handle = await store.create(Session(user=user))
    assert (await store.increment(handle)).value == 1
    assert (await store.load(handle)).counter == 1
    return handle


async def within(seconds: float, awaitable):
    """The awaitable's result; a TimeoutError past `seconds`."""
    return await asyncio.wait_for(awaitable, seconds)


def counter(postgres: PostgresServer, handle: str) -> int:
    with psycopg.connect(postgres.url, autocommit=True) as sql:
        return sql.execute("SELECT counter FROM sessions WHERE id = %s", (handle,)).fetchone()[0]


class CountingLoop(asyncio.SelectorEventLoop):
    """asyncio's own loop, remembering every socket registered for reading."""

    def __init__(self):
        super().__init__()
        self.registered: list[int] = []

    def add_reader(self, fd, callback, *args):
        self.registered.append(fd)
        return super().add_reader(fd, callback, *args)


def test_a_lane_watches_its_socket_once_not_once_per_statement(postgres, monkeypatch):
    """A batch's round trip on a lane registers nothing with the event loop: psycopg's wait registered the socket and
    removed it for every statement, with a timer (about 40 us of the app's CPU a statement). 50 reads and
    50 increments, one at a time, after each lane's first statement: no new registration of a lane's socket."""
    monkeypatch.setattr(Lane, "TICK", 30.0)  # a statement slowed past two ticks by a busy machine is watched anew
    store, loop = new_store(postgres), CountingLoop()
    try:
        loop.run_until_complete(store.start())
        handle = loop.run_until_complete(store.create(Session(user="watched")))
        loop.run_until_complete(store.load(handle))
        loop.run_until_complete(store.increment(handle))  # each lane's connection opened, its socket watched
        lanes, before = {store._load_lane.fd, store._increment_lane.fd}, len(loop.registered)

        async def one_at_a_time():
            for i in range(50):
                assert (await store.increment(handle)).value == i + 2
                assert (await store.load(handle)).counter == i + 2

        loop.run_until_complete(one_at_a_time())
        again = [fd for fd in loop.registered[before:] if fd in lanes]
        assert not again, f"{len(again)} registrations of the lanes' sockets for 100 statements"
    finally:
        loop.run_until_complete(store.close())
        loop.close()


def test_the_first_statements_after_a_restart_answer_at_once_without_the_tick(postgres, run, monkeypatch):
    """The server's goodbye, unread on an idle lane, ends the next statement at once (a FATAL error: nothing more
    comes), and the statement goes again on a new connection: a read, and an increment counted exactly once. With the
    tick pushed out to 30 s, nothing here may wait for it (uvloop closes its watch of a socket in error after one
    callback: the goodbye read, the reset behind it never reported)."""
    monkeypatch.setattr(Lane, "TICK", 30.0)
    store = new_store(postgres)

    async def main():
        try:
            handle = await started(store, "restarted")
            postgres.stop()
            postgres.start()
            session = await within(2, store.load(handle))  # the tick would take 30-60 s
            assert session.counter == 1
            change = await within(2, store.increment(handle))
            assert change.value == 2
            assert counter(postgres, handle) == 2, "the increment was applied once"
        finally:
            await store.close()

    run(main())


def test_a_lane_follows_its_store_to_a_new_event_loop(postgres, run):
    """Statements on one loop, that loop closed (a tick still due on it), then statements on a new one, across a
    restart of the server: the lane opens a connection watched by the new loop, and its ticks run there (a statement
    whose watch is gone is still answered)."""
    store = new_store(postgres)
    lane = store._increment_lane

    async def first():
        await store.pool.open()
        handle = await store.create(Session(user="moving"))
        await store.pool.close()
        assert (await lane.run([handle]))[handle] == 1
        return handle

    async def second(handle):
        assert (await lane.run([handle]))[handle] == 2  # a new connection, on this loop
        postgres.stop()
        postgres.start()
        assert (await within(2, lane.run([handle])))[handle] == 3
        holder = await hold_row(postgres, handle)
        try:
            waiting = asyncio.ensure_future(lane.run([handle]))
            await until_waiting_for_the_lock(postgres)
            asyncio.get_running_loop().remove_reader(lane.fd)  # only a tick can answer it now
        finally:
            release(holder)
        assert (await within(2, waiting))[handle] == 4
        await lane.close()

    handle = run(first())
    run(second(handle))


async def hold_row(postgres: PostgresServer, handle: str) -> psycopg.Connection:
    """A transaction holding the session's row lock (roll it back to let an increment of it through)."""
    holder = psycopg.connect(postgres.url)
    holder.execute("SELECT 1 FROM sessions WHERE id = %s FOR UPDATE", (handle,))
    return holder


async def until_waiting_for_the_lock(postgres: PostgresServer) -> None:
    """Until a statement of the server waits for a lock (the increment, blocked by hold_row)."""
    with psycopg.connect(postgres.url, autocommit=True) as sql:
        for _ in range(300):
            if sql.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'").fetchone()[0]:
                return
            await asyncio.sleep(0.01)
    raise AssertionError("no statement waits for the row lock")


async def blocked_increment(store: PostgresStore, postgres: PostgresServer, handle: str):
    """An increment of the session sent and waiting on the server for the row lock that a transaction holds: the
    request's future and the holding connection."""
    holder = await hold_row(postgres, handle)
    waiting = asyncio.ensure_future(store.increment(handle))
    await until_waiting_for_the_lock(postgres)
    return waiting, holder


def release(holder: psycopg.Connection) -> None:
    holder.rollback()
    holder.close()


@contextlib.asynccontextmanager
async def ended_on_the_server(store: PostgresStore, postgres: PostgresServer, handle: str, how: str):
    """A blocked_increment (its request's future yielded) for the body to end; then, the row lock released: the
    increment that `how` ended was not applied, the increment lane let go of its connection, and the next increment
    counts."""
    waiting, holder = await blocked_increment(store, postgres, handle)
    try:
        yield waiting
    finally:
        release(holder)
    lane = store._increment_lane
    assert lane.conn is None and not lane.watching and lane.waiter is None
    await asyncio.sleep(0.3)  # had the statement gone on, it would have taken the lock by now
    assert counter(postgres, handle) == 1, f"the {how} increment was applied on the server"
    change = await within(2, store.increment(handle))
    assert change.value == 2


def test_a_cancelled_increment_is_cancelled_on_the_server_too(postgres, run):
    """An increment batch cancelled while the server runs it (waiting for a row lock) is cancelled there as well, so
    it is not applied after its requests were failed; the lane lets go of its connection, and the next increment
    counts."""
    store = new_store(postgres)

    async def main():
        try:
            handle = await started(store, "cancelled")
            async with ended_on_the_server(store, postgres, handle, "cancelled") as waiting:
                (batch,) = store._increments.running
                batch.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await within(3, waiting)
        finally:
            await store.close()

    run(main())


def test_a_statement_unanswered_for_store_timeout_fails_and_is_cancelled_on_the_server(postgres, run, monkeypatch):
    """An increment the server has not answered after STORE_TIMEOUT (here waiting for a row lock; a frozen server
    is the app test's) fails as the store being unavailable, at once and not after the server's cancel; the
    cancel still reaches the server in the background, so the increment is not applied when the lock is released,
    and the next increment counts."""
    store = new_store(postgres)

    async def main():
        try:
            handle = await started(store, "unanswered")
            monkeypatch.setattr(postgres_lane, "STORE_TIMEOUT", 0.5)  # after the start: the tick reads it each time
            async with ended_on_the_server(store, postgres, handle, "timed out") as waiting:
                with pytest.raises(StoreUnavailable, match="no answer within 0.5 s"):
                    await within(2, waiting)
                for _ in range(100):  # the cancel, in the background
                    if not store._background:
                        break
                    await asyncio.sleep(0.02)
                assert not store._background, "the cancel did not end"
        finally:
            await store.close()

    run(main())


def test_closing_the_store_fails_a_statement_out_at_once(postgres, run):
    """store.close() while an increment waits on the server: its request fails at once (the store is unavailable),
    it does not wait for the server, nor forever; and a read after the close opens no connection again."""
    store = new_store(postgres)

    async def main():
        handle = await started(store, "closing")
        waiting, holder = await blocked_increment(store, postgres, handle)
        try:
            await within(3, store.close())
            with pytest.raises(StoreUnavailable):
                await within(1, waiting)
            with pytest.raises(StoreUnavailable):  # and nothing opens a connection again
                await within(1, store.load(handle))
            assert store._load_lane.conn is None and store._increment_lane.conn is None
        finally:
            release(holder)

    run(main())


def test_a_statement_whose_watch_is_gone_is_answered_by_the_tick(postgres, run):
    """The tick's safety net: a statement out whose socket the loop no longer watches (as uvloop does after an error)
    is read by a tick, and the socket watched again for the statements after it."""
    store = new_store(postgres)

    async def main():
        try:
            handle = await started(store, "unwatched")
            waiting, holder = await blocked_increment(store, postgres, handle)
            lane = store._increment_lane
            asyncio.get_running_loop().remove_reader(lane.fd)  # behind the lane's back: it still thinks it watches
            release(holder)
            change = await within(2, waiting)
            assert change.value == 2
            lane.TICK = 30.0  # from the tick due now on, none for 30 s: the next statement needs its socket watched
            change = await within(2, store.increment(handle))
            assert change.value == 3
        finally:
            await store.close()

    run(main())
