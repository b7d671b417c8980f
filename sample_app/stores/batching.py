"""Gather the same operation from concurrent requests into one round trip to the store.

Requests that arrive during one event-loop turn are answered by one query (for PostgreSQL: `WHERE id = ANY(...)`)
instead of one query each. Under load this divides the per-query cost (client library, network, server parse and
plan) by the batch size; with one request in flight it adds nothing but a loop turn.
"""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, Generic, Sequence, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class Batcher(Generic[Item, Result]):
    def __init__(self, run: Callable[[Sequence[Item]], Awaitable[Sequence[Result]]], limit: int = 256):
        self.run, self.limit = run, limit
        self.pending: list[tuple[Item, asyncio.Future]] = []

    async def submit(self, item: Item) -> Result:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if not self.pending:
            loop.call_soon(self._flush)
        self.pending.append((item, future))
        if len(self.pending) >= self.limit:
            self._flush()
        return await future

    def _flush(self) -> None:
        if self.pending:
            batch, self.pending = self.pending, []
            asyncio.ensure_future(self._answer(batch))

    async def _answer(self, batch: list[tuple[Item, asyncio.Future]]) -> None:
        try:
            results = await self.run([item for item, _ in batch])
        except BaseException as error:  # every waiter gets the store's error (StoreUnavailable: a 503 each)
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            if not isinstance(error, Exception):
                raise
            return
        for (_, future), result in zip(batch, results):
            if not future.done():
                future.set_result(result)
