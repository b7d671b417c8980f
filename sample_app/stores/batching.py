"""Gather the same operation from concurrent requests into one round trip to the store.

Requests are answered by one query for many of them (for PostgreSQL: `WHERE id = ANY(...)`) instead of one query
each, which divides the per-query cost (client library, network, server parse and plan) by the batch size.

A batch goes at the end of the event-loop turn in which its first request arrived. With `concurrency` set, at most
that many batches of one operation are in flight: while they are, new requests gather in the next batch, which goes
as soon as one comes back. Under load the batches then grow with the load (every request that arrived during a round
trip goes in the next one) instead of one small query per loop turn, and with one request in flight a batch still
costs nothing but a loop turn: the round trip ahead of it is the only wait, never a timer. Without `concurrency`
(None), every loop turn sends its own batch.

The loop is looked up once, not per request: on Python 3.11 asyncio.get_running_loop() (and ensure_future, which
calls it) makes a getpid() system call each time, one per request on the hot path (seen with strace).

A batch that fails fails each of its requests; a result that is an exception (a Redis Cluster batch whose keys were on
several nodes, one of them failing) fails its own request only. A failure that `shares(error)` (PostgreSQL: a
server that did not answer in time) also fails every request that arrived while that batch was out, instead of
making them wait as long again, batch after batch, behind it.

While a batch is out, the event loop polls instead of sleeping, for at most `poll` seconds (STORE_POLL_US): a
callback every loop turn keeps uvloop from blocking in epoll_wait. Measured under load (redis, wrk -c32):
without it the app slept in epoll about once every 33 requests, waiting for a reply that its store (woken on the
other core) had not sent yet, and each sleep and wake-up cost more than the wait itself on this kind of virtual
machine; with a 500 us window the sleeps fell to one in 100-200 requests and session throughput rose by 0-27% on
10 of 12 endpoints side by side (one 5% lower). The price: CPU burnt while waiting, 8% more per request with one
request at a time (README, "What limits them").
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from .base import Change, Session, SessionStore, is_valid_id

Item = TypeVar("Item")
Result = TypeVar("Result")


class _Poller:
    """Keeps one event loop turning (a callback every turn, so no turn blocks in epoll_wait) while any batch on it is
    out, until `window` seconds after the latest batch went; shared by every Batcher on the loop."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.out = 0  # batches out on that loop
        self.until = 0.0  # loop time after which it sleeps again, batches out or not
        self.turning = False

    def sent(self, loop: asyncio.AbstractEventLoop, window: float) -> None:
        if loop is not self.loop:  # another loop (a test's new one): nothing of the old one counts
            self.loop, self.out, self.turning = loop, 0, False
        self.out += 1
        self.until = loop.time() + window
        if not self.turning:
            self.turning = True
            loop.call_soon(self._turn)

    def back(self, loop: asyncio.AbstractEventLoop) -> None:
        if loop is self.loop:
            self.out -= 1

    def _turn(self) -> None:
        loop = self.loop
        if self.out > 0 and loop is not None and not loop.is_closed() and loop.time() < self.until:
            loop.call_soon(self._turn)
        else:
            self.turning = False


POLLER = _Poller()


class Batcher(Generic[Item, Result]):
    def __init__(
        self,
        run: Callable[[Sequence[Item]], Awaitable[Sequence[Result]]],
        limit: int = 256,
        concurrency: int | None = None,
        poll: float = 0.0,
        shares: Callable[[BaseException], bool] | None = None,
    ):
        """poll: seconds the loop keeps polling while a batch is out (0: it may sleep at once); shares(error): the
        requests waiting when a batch fails with this error fail with it (bounded concurrency)."""
        self.run, self.limit, self.poll, self.shares = run, limit, poll, shares
        self.concurrency = concurrency if concurrency is not None else float("inf")
        self.pending: list[tuple[Item, asyncio.Future]] = []
        self.running: set[asyncio.Task] = set()  # the batches in flight (bounded concurrency only)
        self.scheduled = False
        self.loop: asyncio.AbstractEventLoop | None = None  # the loop of the last submit (a closed one is replaced)

    async def submit(self, item: Item) -> Result:
        loop = self.loop
        if loop is None or loop.is_closed():
            loop = self.loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.pending.append((item, future))
        if not self.scheduled and len(self.running) < self.concurrency:
            # Go at the end of this loop turn: the requests that arrived in the same turn join this batch.
            self.scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self.scheduled = False
        while self.pending and len(self.running) < self.concurrency:
            batch, self.pending = self.pending[: self.limit], self.pending[self.limit :]
            task = self.loop.create_task(self._answer(batch))
            if self.concurrency != float("inf"):  # unbounded: nothing to count, nothing to send when it is done
                self.running.add(task)
                task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self.running.discard(task)
        if self.pending and not self.scheduled:
            self._flush()  # every waiting request arrived while the batch was out: send them now

    async def _answer(self, batch: list[tuple[Item, asyncio.Future]]) -> None:
        if self.poll:
            POLLER.sent(self.loop, self.poll)
        try:
            results = await self.run([item for item, _ in batch])
        except BaseException as error:  # every waiter gets the store's error (StoreUnavailable: a 503 each)
            if self.shares is not None and self.shares(error):
                batch, self.pending = batch + self.pending, []
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            if not isinstance(error, Exception):
                raise
            return
        finally:
            if self.poll:
                POLLER.back(self.loop)
        for (_, future), result in zip(batch, results):
            if not future.done():
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)


class BatchingStore(SessionStore):
    """A store whose reads and increments of concurrent requests go to its server together: its Batchers `_loads`
    and `_increments` answer them. A handle that is no valid id reads as no session and is not sent."""

    _loads: Batcher[str, Session | None]
    _increments: Batcher[str, Change[int] | None]

    async def load(self, handle: str) -> Session | None:
        if not is_valid_id(handle):
            return None
        return await self._loads.submit(handle)

    async def increment(self, handle: str) -> Change[int] | None:
        if not is_valid_id(handle):
            return None
        return await self._increments.submit(handle)
