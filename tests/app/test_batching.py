"""The Batcher (sample_app/stores/batching.py) and the database store's use of it, on the real PostgreSQL:
one batch of a kind in flight while the next gathers, errors to every waiter, and increments that leave the indexed
expiry alone until it is due (HOT updates: the table does not bloat under increments, which is what slowed the old
reads down to a p50 of 20-40 ms)."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from harness.cluster import strategy_env
from sample_app.settings import Settings
from sample_app.stores import build_store
from sample_app.stores.base import Session
from sample_app.stores.batching import Batcher


class Recorder:
    """A store operation that answers after `delay`, remembering every batch and how many ran at once."""

    def __init__(self, delay: float = 0.01, fail: bool = False):
        self.delay, self.fail = delay, fail
        self.batches: list[list[int]] = []
        self.in_flight = self.most_in_flight = 0

    async def __call__(self, items):
        self.batches.append(list(items))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            if self.fail:
                raise RuntimeError("store down")
            return [item * 10 for item in items]
        finally:
            self.in_flight -= 1


def test_bounded_batcher_sends_one_batch_at_a_time_and_gathers_the_next():
    async def scenario():
        run = Recorder()
        batcher = Batcher(run, concurrency=1)
        first = asyncio.ensure_future(batcher.submit(0))
        await asyncio.sleep(0.002)  # the first batch is out
        rest = [asyncio.ensure_future(batcher.submit(i)) for i in range(1, 8)]
        results = await asyncio.gather(first, *rest)
        return run, results

    run, results = asyncio.run(scenario())
    assert results == [i * 10 for i in range(8)], "every request gets its own answer, in order"
    assert run.most_in_flight == 1
    assert run.batches == [[0], list(range(1, 8))], "what arrived while the first batch was out went as one"


def test_unbounded_batcher_sends_each_loop_turn_as_it_comes():
    async def scenario():
        run = Recorder(delay=0.5)  # the first batch is surely still out when the second comes, however slow the machine
        batcher = Batcher(run)
        first = [asyncio.ensure_future(batcher.submit(i)) for i in range(3)]
        await asyncio.sleep(0.002)
        second = [asyncio.ensure_future(batcher.submit(i)) for i in range(3, 5)]
        return run, await asyncio.gather(*first, *second)

    run, results = asyncio.run(scenario())
    assert results == [0, 10, 20, 30, 40]
    assert run.batches == [[0, 1, 2], [3, 4]] and run.most_in_flight == 2


def test_a_batcher_used_on_a_new_loop_answers_there():
    """The Batcher keeps its loop (no get_running_loop() per request: a getpid() system call each on Python 3.11);
    once that loop is closed, the next one in use is taken."""
    batcher = Batcher(Recorder(delay=0))
    assert asyncio.run(batcher.submit(1)) == 10
    assert asyncio.run(batcher.submit(2)) == 20


def test_a_failed_batch_fails_each_of_its_requests_and_the_next_batch_still_goes():
    async def scenario():
        run = Recorder(fail=True)
        batcher = Batcher(run, concurrency=1)
        outcomes = await asyncio.gather(*(batcher.submit(i) for i in range(4)), return_exceptions=True)
        run.fail = False
        return outcomes, await batcher.submit(9)

    outcomes, after = asyncio.run(scenario())
    assert all(isinstance(outcome, RuntimeError) for outcome in outcomes)
    assert after == 90


def test_a_shared_failure_fails_the_requests_that_waited_for_it_and_no_other():
    """shares(error): the requests that arrived while a batch was out fail with its error when it says so (a store
    that did not answer in time: one wait, not one per batch), and with no other error; a later request goes."""

    async def scenario(shares):
        run = Recorder(delay=0.2, fail=True)
        batcher = Batcher(run, concurrency=1, shares=shares)
        first = asyncio.ensure_future(batcher.submit(0))
        await asyncio.sleep(0.05)  # the first batch is out
        waiting = [asyncio.ensure_future(batcher.submit(i)) for i in range(1, 4)]
        outcomes = await asyncio.gather(first, *waiting, return_exceptions=True)
        run.fail = False
        return run.batches, outcomes, await batcher.submit(9)

    batches, outcomes, after = asyncio.run(scenario(lambda error: isinstance(error, RuntimeError)))
    assert batches == [[0], [9]], "the requests that waited behind the failure went to the store after it"
    assert all(isinstance(outcome, RuntimeError) for outcome in outcomes) and after == 90
    batches, outcomes, after = asyncio.run(scenario(lambda error: isinstance(error, KeyError)))
    assert batches == [[0], [1, 2, 3], [9]], "an error not shared failed the waiting requests too"
    assert all(isinstance(outcome, RuntimeError) for outcome in outcomes) and after == 90


@pytest.fixture
def database(backends):
    settings = Settings.from_env({**strategy_env("database", backends, ttl=600), "NODE_NAME": "batching"})
    _, store = build_store(settings)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(store.start())
    with psycopg.connect(backends.postgres.url, autocommit=True) as sql:
        yield store, loop.run_until_complete, sql
    loop.run_until_complete(store.close())
    loop.close()


def test_increments_leave_the_expiry_until_it_is_due_then_slide_it(database):
    store, run, sql = database
    handle = run(store.create(Session(user="hot")))
    expiry = lambda: sql.execute("SELECT expires_at FROM sessions WHERE id = %s", (handle,)).fetchone()[0]  # noqa: E731
    created = expiry()

    async def increments(n):
        return await asyncio.gather(*(store.increment(handle) for _ in range(n)))

    changes = run(increments(50))
    assert sorted(change.value for change in changes) == list(range(1, 51)), "every increment counted once"
    assert expiry() == created, "within a tenth of the TTL an increment leaves the indexed column alone"
    sql.execute("UPDATE sessions SET expires_at = now() + interval '500 seconds' WHERE id = %s", (handle,))
    run(increments(1))
    slid = sql.execute("SELECT expires_at - now() FROM sessions WHERE id = %s", (handle,)).fetchone()[0]
    assert slid.total_seconds() > 590, f"an increment past a tenth of the TTL slides the expiry ({slid})"
    # and a read does the same, in its one statement
    sql.execute("UPDATE sessions SET expires_at = now() + interval '500 seconds' WHERE id = %s", (handle,))
    assert run(store.load(handle)).counter == 51
    slid = sql.execute("SELECT expires_at - now() FROM sessions WHERE id = %s", (handle,)).fetchone()[0]
    assert slid.total_seconds() > 590, f"a read past a tenth of the TTL slides the expiry ({slid})"


def test_concurrent_batches_of_shared_sessions_count_every_increment(database):
    """Many sessions, each incremented by many concurrent requests: batches overlap, nothing is lost, no deadlock."""
    store, run, _ = database
    handles = [run(store.create(Session(user=f"u{i}"))) for i in range(20)]

    async def storm():
        return await asyncio.gather(*(store.increment(handles[i % 20]) for i in range(2000)))

    changes = run(storm())
    assert all(change is not None for change in changes)
    for handle in handles:
        assert run(store.load(handle)).counter == 100


def test_while_a_batch_is_out_the_loop_polls_for_at_most_the_window():
    """STORE_POLL_US: while a batch is out the loop turns without sleeping (a callback every turn: the process burns
    CPU instead of blocking in epoll_wait), for at most the window after the batch went; once the batch is back, or
    the window is over, it sleeps again."""
    import time

    from sample_app.stores.batching import POLLER

    async def cpu_share(seconds: float) -> float:
        """The process's CPU time over a wait of `seconds`, as a share of it."""
        start_cpu, start = time.process_time(), time.monotonic()
        await asyncio.sleep(seconds)
        return (time.process_time() - start_cpu) / (time.monotonic() - start)

    async def scenario():
        polling = Batcher(Recorder(delay=0.5), poll=0.2)
        out = asyncio.ensure_future(polling.submit(1))
        await asyncio.sleep(0)
        polled = await cpu_share(0.1)  # within the window, the batch out
        early = POLLER.turning
        await asyncio.sleep(0.2)
        late, slept = POLLER.turning, await cpu_share(0.1)  # past the window, the batch still out
        assert await out == 10
        quick = Batcher(Recorder(delay=0.01), poll=1.0)
        assert await quick.submit(2) == 20
        await asyncio.sleep(0.01)
        after_quick = POLLER.turning  # the batch came back long before the window's end
        off = Batcher(Recorder(delay=0.3))
        pending = asyncio.ensure_future(off.submit(3))
        await asyncio.sleep(0)
        without, off_share = POLLER.turning, await cpu_share(0.1)
        await pending
        return polled, early, late, slept, after_quick, without, off_share

    polled, early, late, slept, after_quick, without, off_share = asyncio.run(scenario())
    assert early and polled > 0.25, f"a batch out within the window: the loop polls ({polled:.0%} of a core)"
    assert not late and slept < 0.1, f"past the window it sleeps, the batch still out ({slept:.0%} of a core)"
    assert not after_quick, "a batch back: no more polling"
    assert not without and off_share < 0.1, f"poll=0 (STORE_POLL_US=0): never ({off_share:.0%} of a core)"
