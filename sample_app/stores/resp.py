"""A lean Redis connection for the request path: one socket, automatic pipelining, hiredis parsing.

Why not redis-py's client for every call: on this machine one redis-py asyncio command costs about 60 us of client
CPU, more than a whole no-session request (about 51 us), which caps a session endpoint near half the no-session
throughput (../shared/LAB-NOTES.md). Here a command is packed by hiredis, appended to a buffer, and every command
issued by any request during one event-loop turn leaves in a single write; replies are matched to waiters in order.

redis-py still does what it does well and what is not on the hot path: URL parsing, Sentinel master discovery and
the cluster key slot (CRC16, hash tags).

Redis Cluster: resp_cluster.py (ClusterRedis), one LeanRedis per primary.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Sequence
from typing import Any, Protocol

import hiredis
from redis.asyncio.sentinel import Sentinel
from redis.connection import parse_url

from .base import STORE_TIMEOUT, StoreUnavailable

log = logging.getLogger("sample_app.redis")

TIMEOUT = STORE_TIMEOUT
# A Redis restarting (`systemctl restart`, a package upgrade) refuses connections for a moment: a request that finds
# no connection tries again every RECONNECT_PAUSE for up to RECONNECT_WITHIN instead of failing at once, so that a
# restart shorter than that fails no request. (Redis Cluster's nodes do not wait: their client looks for the slot's
# new owner instead, resp_cluster.py.)
RECONNECT_WITHIN = STORE_TIMEOUT
RECONNECT_PAUSE = 0.1


class RedisError(Exception):
    """Redis answered with an error reply."""


class NotSent(StoreUnavailable):
    """No connection could be made (or set up): the command never left, so it may be sent elsewhere."""


class _Replies:
    """The waiter of several commands sent together: its future gets all their replies (an error reply in place, as
    a hiredis.ReplyError) once the last is in. One future per batch of commands instead of one per command: a
    batch of reads is two commands per session (redis.py)."""

    __slots__ = ("future", "count", "replies")

    def __init__(self, future: asyncio.Future, count: int) -> None:
        self.future, self.count, self.replies = future, count, []


_NO_REPLY = object()  # what the reader answers when no whole reply is in (RESP3 has a boolean: False is a reply)


class Tracker(Protocol):
    """What a tracking connection (RESP3, CLIENT TRACKING ON) tells about the keys read on it (client_cache.py)."""

    def invalidated(self, keys: list[bytes] | None) -> None:
        """Redis says these keys changed (None: every key, FLUSHALL or a full tracking table)."""

    def lost(self) -> None:
        """The connection is gone, and with it every invalidation that may have been on its way."""


class _Protocol(asyncio.Protocol):
    def __init__(self, tracker: Tracker | None = None) -> None:
        self.reader = hiredis.Reader(notEnoughData=_NO_REPLY)
        self.tracker = tracker
        self.waiters: collections.deque[asyncio.Future | _Replies] = collections.deque()
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
        while (reply := self.reader.gets()) is not _NO_REPLY:
            if reply.__class__ is hiredis.PushNotification:  # RESP3, out of band: ["invalidate", keys or None]
                if self.tracker is not None and reply[0] == b"invalidate":
                    self.tracker.invalidated(reply[1])
                continue
            self.oldest_sent = self.loop.time()  # Redis is answering: the watchdog's clock starts again
            waiter = self.waiters[0]
            if waiter.__class__ is _Replies:
                waiter.replies.append(reply)
                if len(waiter.replies) < waiter.count:
                    continue
                reply, waiter = waiter.replies, waiter.future
            self.waiters.popleft()
            if waiter.done():
                continue
            if isinstance(reply, hiredis.ReplyError):
                waiter.set_exception(RedisError(str(reply)))
            else:
                waiter.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.watchdog.cancel()
        if self.tracker is not None:
            self.tracker.lost()
        while self.waiters:
            waiter = self.waiters.popleft()
            if waiter.__class__ is _Replies:
                waiter = waiter.future
            if not waiter.done():
                waiter.set_exception(StoreUnavailable(f"redis connection lost: {exc or 'closed by server'}"))

    def send(self, command: Sequence[Any]) -> asyncio.Future:
        """Send one command; the future gets its reply (an error reply: RedisError)."""
        waiter = self.loop.create_future()
        self._queue(waiter, hiredis.pack_command(tuple(command)))
        return waiter

    def send_all(self, commands: Sequence[Sequence[Any]]) -> asyncio.Future:
        """Send commands together (at least one); the future gets the list of their replies, error replies in place."""
        if not commands:  # a waiter for no reply would take the next command's
            raise ValueError("send_all: no commands")
        waiter = self.loop.create_future()
        pack = hiredis.pack_command
        self._queue(_Replies(waiter, len(commands)), b"".join([pack(tuple(command)) for command in commands]))
        return waiter

    def _queue(self, waiter: asyncio.Future | _Replies, packed: bytes) -> None:
        if self.closed:
            raise StoreUnavailable("redis connection closed")
        if not self.waiters:
            self.oldest_sent = self.loop.time()
        self.waiters.append(waiter)
        if not self.pending:
            self.loop.call_soon(self._flush)
        self.pending.append(packed)

    def _flush(self) -> None:
        if self.pending and self.transport is not None and not self.closed:
            self.transport.write(b"".join(self.pending))
        self.pending.clear()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class LeanRedis:
    """One auto-pipelined connection to the Redis master, (re)connected on demand, found through Sentinel if set."""

    def __init__(
        self,
        url: str,
        sentinels: tuple[tuple[str, int], ...] = (),
        master: str = "mymaster",
        *,
        address: tuple[str, int] | None = None,
        db: int | None = None,
        tracker: Tracker | None = None,
        follows: LeanRedis | None = None,
    ):
        """url: redis://[USER:PASSWORD@]HOST:PORT/DB (a user: AUTH USER PASSWORD, an ACL user; none: AUTH PASSWORD);
        address and db override the URL's (a cluster node: its own address, db 0). With a tracker the connection
        speaks RESP3 with CLIENT TRACKING ON: replies come in RESP3 types (HGETALL a dict), and the tracker hears of
        every change to a key read on it, in order with the replies. With follows (the store's own connection), it
        connects where that one is connected, and again whenever that one moved (a Sentinel failover): reads and
        writes never go to two servers, one of them a master no longer (a partitioned one keeps accepting until
        Sentinel demotes it), and the tracker is told the connection is lost at once."""
        options = parse_url(url) if url else {}
        self.host, self.port = address or (options.get("host", "127.0.0.1"), int(options.get("port", 6379)))
        self.username = options.get("username")
        self.password = options.get("password")
        self.db = int(options.get("db", 0) or 0) if db is None else db
        self.sentinels = sentinels
        self.master = master
        self.tracker = tracker
        self.follows = follows
        self.connected_to: tuple[str, int] | None = None  # where the current connection goes
        # A cluster node (address given) does not wait for a refusing node: its client finds the slot's owner.
        self.waits_for_restart = address is None
        self._proto: _Protocol | None = None
        self._connecting: asyncio.Future[_Protocol] | None = None
        self._scripts: dict[str, str] = {}

    async def _address(self) -> tuple[str, int]:
        if self.follows is not None:
            leader = self.follows
            if leader._proto is None or leader._proto.closed:
                await leader._connect()
            return leader.connected_to  # type: ignore[return-value]
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
            _, proto = await asyncio.wait_for(
                loop.create_connection(lambda: _Protocol(self.tracker), host, port), TIMEOUT
            )
        except (TimeoutError, OSError) as error:
            why = str(error) or f"no answer in {TIMEOUT} s"
            raise NotSent(f"redis at {host}:{port} unreachable: {why}") from None
        setup = []
        if self.username:  # an ACL user (a user without password: one with nopass takes any)
            setup.append(("AUTH", self.username, self.password or ""))
        elif self.password:
            setup.append(("AUTH", self.password))
        if self.db:
            setup.append(("SELECT", self.db))
        if self.tracker is not None:
            setup += [("HELLO", 3), ("CLIENT", "TRACKING", "ON")]
        setup.append(("PING",))  # even without AUTH or SELECT: a connection counts once the server has answered
        try:
            for command in setup:
                await asyncio.wait_for(proto.send(command), TIMEOUT)
        except RedisError as error:
            proto.close()
            raise NotSent(f"redis at {host}:{port} refused the connection setup: {error}") from None
        except (TimeoutError, StoreUnavailable) as error:  # accepted, then silent or closed
            proto.close()
            why = error if isinstance(error, StoreUnavailable) else f"no reply in {TIMEOUT} s"
            raise NotSent(f"redis at {host}:{port} did not answer the connection setup: {why}") from None
        self._proto, self.connected_to = proto, (host, port)
        return proto

    async def _connect_waiting(self) -> _Protocol:
        """_connect, tried again while Redis refuses the connection (NotSent: nothing was sent), for up to
        RECONNECT_WITHIN."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RECONNECT_WITHIN
        while True:
            try:
                return await self._connect()
            except NotSent:
                if loop.time() + RECONNECT_PAUSE >= deadline:
                    raise
                await asyncio.sleep(RECONNECT_PAUSE)

    async def execute(self, *command: Any) -> Any:
        return (await self.pipeline(command))[0]

    async def ping(self) -> None:
        await self.execute("PING")

    async def pipeline(self, *commands: Sequence[Any]) -> list[Any]:
        """Send commands together (not as a transaction) and return their replies; an error reply raises."""
        if not commands:
            return []
        proto = self._proto
        if proto is not None and self.follows is not None and self.connected_to != self.follows.connected_to:
            proto.close()  # the store's connection moved (a failover): follow it
            if self.tracker is not None:
                self.tracker.lost()  # now: the connection's own end is only heard of on a later loop turn
            proto = None
        if proto is None or proto.closed:
            proto = await self._connect_waiting() if self.waits_for_restart else await self._connect()
        if len(commands) == 1:
            return [await proto.send(commands[0])]
        # No per-call timer: the watchdog enforces TIMEOUT.
        replies = await proto.send_all(commands)
        for reply in replies:
            if isinstance(reply, hiredis.ReplyError):
                raise RedisError(str(reply))
        return replies

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

    # A script answering one result per key, in KEYS order, over keys of any slots: one call on a single Redis
    # (ClusterRedis runs it once per slot).
    script_each = script

    async def close(self) -> None:
        if self._proto is not None:
            self._proto.close()
            self._proto = None
