"""A lean Redis connection for the request path: one socket, automatic pipelining, hiredis parsing.

Why not redis-py's client for every call: on this machine one redis-py asyncio command costs about 60 us of client
CPU, more than a whole no-session request (about 51 us), which caps a session endpoint near half the no-session
throughput (../shared/LAB-NOTES.md). Here a command is packed by hiredis, appended to a buffer, and every command
issued by any request during one event-loop turn leaves in a single write; replies are matched to waiters in order.

redis-py still does what it does well and what is not on the hot path: URL parsing and Sentinel master discovery.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import Any, Sequence

import hiredis
from redis.asyncio.sentinel import Sentinel
from redis.connection import parse_url

from .base import StoreUnavailable

log = logging.getLogger("sample_app.redis")

TIMEOUT = 2.0


class RedisError(Exception):
    """Redis answered with an error reply."""


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.waiters: collections.deque[asyncio.Future] = collections.deque()
        self.pending: list[bytes] = []
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.loop = asyncio.get_running_loop()
        self.oldest_sent = 0.0  # when the oldest unanswered command was sent (roughly: reset on every reply)
        self.watchdog = self.loop.call_later(TIMEOUT / 4, self._watch)

    def _watch(self) -> None:
        """One timer per connection instead of one per command: a server silent for TIMEOUT fails every waiter."""
        if self.closed:
            return
        if self.waiters and self.loop.time() - self.oldest_sent > TIMEOUT:
            self.close()
            self.connection_lost(TimeoutError(f"no reply in {TIMEOUT} s"))
            return
        self.watchdog = self.loop.call_later(TIMEOUT / 4, self._watch)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            waiter = self.waiters.popleft()
            self.oldest_sent = self.loop.time()
            if waiter.done():
                continue
            if isinstance(reply, hiredis.ReplyError):
                waiter.set_exception(RedisError(str(reply)))
            else:
                waiter.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.watchdog.cancel()
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(StoreUnavailable(f"redis connection lost: {exc or 'closed by server'}"))

    def send(self, command: Sequence[Any]) -> asyncio.Future:
        if self.closed:
            raise StoreUnavailable("redis connection closed")
        waiter = self.loop.create_future()
        if not self.waiters:
            self.oldest_sent = self.loop.time()
        self.waiters.append(waiter)
        if not self.pending:
            self.loop.call_soon(self._flush)
        self.pending.append(hiredis.pack_command(tuple(command)))
        return waiter

    def _flush(self) -> None:
        if self.pending and self.transport is not None and not self.closed:
            self.transport.write(b"".join(self.pending))
        self.pending.clear()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class LeanRedis:
    """One auto-pipelined connection to the Redis master, (re)connected on demand, found through Sentinel if set."""

    def __init__(self, url: str, sentinels: tuple[tuple[str, int], ...] = (), master: str = "mymaster"):
        options = parse_url(url) if url else {}
        self.host = options.get("host", "127.0.0.1")
        self.port = int(options.get("port", 6379))
        self.username = options.get("username")
        self.password = options.get("password")
        self.db = int(options.get("db", 0) or 0)
        self.sentinels = sentinels
        self.master = master
        self._proto: _Protocol | None = None
        self._connecting: asyncio.Future[_Protocol] | None = None
        self._scripts: dict[str, str] = {}

    async def _address(self) -> tuple[str, int]:
        if not self.sentinels:
            return self.host, self.port
        sentinel = Sentinel(list(self.sentinels), socket_timeout=TIMEOUT)
        try:
            host, port = await sentinel.discover_master(self.master)
        except Exception as error:  # redis-py raises several kinds here; all mean "no master now"
            raise StoreUnavailable(f"no redis master {self.master!r} from sentinels: {error}") from None
        finally:
            for conn in sentinel.sentinels:
                await conn.aclose()
        return host, int(port)

    async def _connect(self) -> _Protocol:
        # Every request that finds no connection waits for the same attempt and shares its outcome: against a server
        # that accepts connections but does not answer, N waiting requests fail together after TIMEOUT, not one
        # after another (N x TIMEOUT) behind a lock.
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.ensure_future(self._open())
            self._connecting.add_done_callback(lambda attempt: attempt.cancelled() or attempt.exception())
        return await asyncio.shield(self._connecting)  # a cancelled request does not cancel the others' attempt

    async def _open(self) -> _Protocol:
        host, port = await self._address()
        loop = asyncio.get_running_loop()
        try:
            _, proto = await asyncio.wait_for(loop.create_connection(_Protocol, host, port), TIMEOUT)
        except (OSError, asyncio.TimeoutError) as error:
            why = str(error) or f"no answer in {TIMEOUT} s"
            raise StoreUnavailable(f"redis at {host}:{port} unreachable: {why}") from None
        setup = []
        if self.password:
            setup.append(("AUTH", self.username, self.password) if self.username else ("AUTH", self.password))
        if self.db:
            setup.append(("SELECT", self.db))
        setup.append(("PING",))  # even without AUTH or SELECT: a connection counts once the server has answered
        try:
            for command in setup:
                await asyncio.wait_for(proto.send(command), TIMEOUT)
        except RedisError as error:
            proto.close()
            raise StoreUnavailable(f"redis refused the connection setup: {error}") from None
        except (asyncio.TimeoutError, StoreUnavailable) as error:  # accepted, then silent or closed
            proto.close()
            why = error if isinstance(error, StoreUnavailable) else f"no reply in {TIMEOUT} s"
            raise StoreUnavailable(f"redis at {host}:{port} did not answer the connection setup: {why}") from None
        self._proto = proto
        return proto

    async def execute(self, *command: Any) -> Any:
        return (await self.pipeline(command))[0]

    async def pipeline(self, *commands: Sequence[Any]) -> list[Any]:
        """Send commands together (not as a transaction) and return their replies; an error reply raises."""
        proto = self._proto
        if proto is None or proto.closed:
            proto = await self._connect()
        waiters = [proto.send(command) for command in commands]
        # Replies arrive in order: once the last is in, all are. No per-call timer: the watchdog enforces TIMEOUT.
        await waiters[-1]
        return [waiter.result() for waiter in waiters]

    async def script(self, source: str, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        sha = self._scripts.get(source)
        if sha is not None:
            try:
                return await self.execute("EVALSHA", sha, len(keys), *keys, *args)
            except RedisError as error:
                if not str(error).startswith("NOSCRIPT"):
                    raise
        # First use, or the server lost its script cache (restart, failover): load it (again).
        self._scripts[source] = await self.execute("SCRIPT", "LOAD", source)
        return await self.execute("EVALSHA", self._scripts[source], len(keys), *keys, *args)

    async def close(self) -> None:
        if self._proto is not None:
            self._proto.close()
            self._proto = None
