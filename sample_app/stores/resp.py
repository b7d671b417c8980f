"""A lean Redis connection for the request path: one socket, automatic pipelining, hiredis parsing.

Why not redis-py's client for every call: on this machine one redis-py asyncio command costs about 60 us of client
CPU, more than a whole no-session request (about 51 us), which caps a session endpoint near half the no-session
throughput (../shared/LAB-NOTES.md). Here a command is packed by hiredis, appended to a buffer, and every command
issued by any request during one event-loop turn leaves in a single write; replies are matched to waiters in order.

redis-py still does what it does well and what is not on the hot path: URL parsing, Sentinel master discovery and
the cluster key slot (CRC16, hash tags).

Redis Cluster (ClusterRedis): the slot map comes from CLUSTER SLOTS, one LeanRedis per primary, each command goes to
its key's slot's primary; MOVED updates the slot and retries there, ASK retries once on the importing node after
ASKING, TRYAGAIN and CLUSTERDOWN retry after a short pause, a node that cannot be reached refreshes the map (a
replica promoted by a failover is found there) and retries; every retry is bounded (about a second in all), then
StoreUnavailable, the app's 503. A command already sent on a connection that is then lost is never sent again (it
may have been applied): StoreUnavailable at once, and the map is refreshed for the next request.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import hiredis
from redis.asyncio.sentinel import Sentinel
from redis.connection import parse_url
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from .base import STORE_TIMEOUT, StoreUnavailable

log = logging.getLogger("sample_app.redis")

TIMEOUT = STORE_TIMEOUT


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
            proto = await self._connect()
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


# -- Redis Cluster --------------------------------------------------------------------------------------------------

ATTEMPTS = 6  # tries of one command: redirects, a node found down, a cluster briefly down
PAUSES = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4)  # before each try after an unreachable node or CLUSTERDOWN: 1.05 s in all
RETRY_BUDGET = 2.0  # seconds: no new try of a command after this (a node that times out instead of refusing)
REFRESH_INTERVAL = 0.1  # at most one slot-map refresh per this many seconds, unless a redirect forces one

Address = tuple[str, int]


def slot_of(key: str | bytes) -> int:
    """The key's cluster slot: CRC16 of the key, or of its hash tag (the first non-empty {...})."""
    return key_slot(key.encode() if isinstance(key, str) else key)


def _key_of(command: Sequence[Any]) -> Any:
    """The key a command routes by: EVAL/EVALSHA's first key, else the first argument; None for PING and the like."""
    name = str(command[0]).upper()
    if name in ("EVAL", "EVALSHA"):
        return command[3] if int(command[2]) > 0 else None
    if name in ("PING", "SCRIPT", "CLUSTER") or len(command) < 2:
        return None
    return command[1]


def _address(raw: Any, default_host: str) -> Address:
    host, _, port = (raw.decode() if isinstance(raw, bytes) else str(raw)).rpartition(":")
    return _host(host, default_host), int(port)


def _host(raw: str | bytes, default_host: str) -> str:
    """A node's host as the cluster names it; "" or "?" (it does not know its own): the one we reached it by."""
    host = raw.decode() if isinstance(raw, bytes) else raw
    return default_host if host in ("", "?") else host


class ClusterRedis:
    """The LeanRedis interface over a Redis Cluster: one auto-pipelined LeanRedis per primary, commands routed by slot.

    Seeds are only where the first slot map comes from; later maps come from any node known (primaries, replicas,
    then the seeds again). REDIS_URL gives the user and password; the cluster has one database, 0.
    """

    def __init__(self, url: str, seeds: Sequence[Address]):
        self.url = url
        self.seeds: tuple[Address, ...] = tuple((host, int(port)) for host, port in seeds)
        self.slots: list[Address | None] = [None] * REDIS_CLUSTER_HASH_SLOTS
        self.nodes: dict[Address, LeanRedis] = {}  # primaries (and a node a redirect named)
        self.replicas: tuple[Address, ...] = ()
        self._refreshing: asyncio.Future | None = None
        self._refreshed_at = float("-inf")
        self._background: set[asyncio.Future] = set()

    # -- the slot map ---------------------------------------------------------------------------------------------

    def _node(self, address: Address) -> LeanRedis:
        node = self.nodes.get(address)
        if node is None:
            node = self.nodes[address] = LeanRedis(self.url, address=address, db=0)
        return node

    async def refresh(self, force: bool = False) -> None:
        """Load the slot map again (one load at a time, shared by every caller; at most one per REFRESH_INTERVAL
        unless forced). Raises StoreUnavailable when no node known answers."""
        loop = asyncio.get_running_loop()
        if self._refreshing is None or self._refreshing.done():
            if not force and loop.time() - self._refreshed_at < REFRESH_INTERVAL:
                return
            self._refreshing = asyncio.ensure_future(self._load_map())
            self._refreshing.add_done_callback(lambda attempt: attempt.cancelled() or attempt.exception())
        await asyncio.shield(self._refreshing)

    def _refresh_soon(self) -> None:
        task = asyncio.ensure_future(self.refresh())
        self._background.add(task)
        task.add_done_callback(lambda done: (self._background.discard(done), done.cancelled() or done.exception()))

    async def _load_map(self) -> None:
        primaries = [address for address in dict.fromkeys(self.slots) if address is not None]
        candidates = list(dict.fromkeys([*primaries, *self.replicas, *self.seeds]))
        # Nodes we hold a live connection to first: a node down may take TIMEOUT to refuse.
        candidates.sort(key=lambda address: not self._connected(address))
        failures = []
        for address in candidates:
            node, temporary = self.nodes.get(address), False
            if node is None:
                node, temporary = LeanRedis(self.url, address=address, db=0), True
            try:
                reply = await node.execute("CLUSTER", "SLOTS")
            except (StoreUnavailable, RedisError) as error:
                failures.append(f"{address[0]}:{address[1]}: {error}")
                continue
            finally:
                if temporary:
                    await node.close()
            try:
                self._apply_map(reply, address)
            except (ValueError, TypeError, IndexError, AttributeError) as error:
                failures.append(f"{address[0]}:{address[1]}: unreadable CLUSTER SLOTS reply ({error!r})")
                continue
            return
        raise StoreUnavailable("no redis cluster node answered CLUSTER SLOTS: " + "; ".join(failures))

    def _apply_map(self, reply: list, source: Address) -> None:
        slots: list[Address | None] = [None] * REDIS_CLUSTER_HASH_SLOTS
        replicas = []
        for entry in reply:
            start, end, primary, *others = entry
            owner = (_host(primary[0], source[0]), int(primary[1]))
            slots[int(start) : int(end) + 1] = [owner] * (int(end) - int(start) + 1)
            replicas += [(_host(other[0], source[0]), int(other[1])) for other in others]
        if not any(slots):
            raise StoreUnavailable(f"redis cluster node {source[0]}:{source[1]} serves no slot: not a cluster yet")
        self.slots, self.replicas = slots, tuple(dict.fromkeys(replicas))
        self._refreshed_at = asyncio.get_running_loop().time()
        owners = set(slots)
        for address in [address for address in self.nodes if address not in owners]:
            node = self.nodes.pop(address)  # a primary no more (failed over, or emptied): requests on it fail, retry
            asyncio.ensure_future(node.close())

    def _connected(self, address: Address) -> bool:
        node = self.nodes.get(address)
        return node is not None and node._proto is not None and not node._proto.closed

    async def _owner(self, slot: int | None) -> Address:
        if slot is None:
            owner = next((address for address in self.slots if address is not None), None)
        else:
            owner = self.slots[slot]
        if owner is None:  # no map yet (forced), or a slot no primary serves (no more than one load per interval)
            await self.refresh(force=not any(self.slots))
            owner = self.slots[slot] if slot is not None else next(a for a in self.slots if a is not None)
            if owner is None:
                raise StoreUnavailable(f"redis cluster: no node serves slot {slot}")
        return owner

    # -- routing --------------------------------------------------------------------------------------------------

    async def _run(self, slot: int | None, send: Callable[[LeanRedis, bool], Awaitable[Any]]) -> Any:
        """send(node, asking) runs the command on node (after ASKING if asking), following the cluster's answers."""
        asking: Address | None = None
        last: Exception | None = None
        deadline = asyncio.get_running_loop().time() + RETRY_BUDGET
        for attempt in range(ATTEMPTS):
            if attempt and asyncio.get_running_loop().time() > deadline:
                break
            node = self._node(asking if asking is not None else await self._owner(slot))
            try:
                return await send(node, asking is not None)
            except RedisError as error:
                last, asking = error, None
                kind, _, rest = str(error).partition(" ")
                if kind == "MOVED":  # the slot has a new owner for good: note it, refresh the rest soon
                    moved, _, target = rest.partition(" ")
                    self.slots[int(moved)] = _address(target, node.host)
                    self._refresh_soon()
                elif kind == "ASK":  # the key is being migrated: this one command goes to the importing node
                    asking = _address(rest.partition(" ")[2], node.host)
                elif kind in ("TRYAGAIN", "CLUSTERDOWN"):  # a slot mid-migration, or the cluster in a failover
                    await asyncio.sleep(PAUSES[attempt])
                    self._refresh_soon()
                else:
                    raise
            except NotSent as error:  # the node is down or refuses us: where is the slot now?
                last, asking = error, None
                await asyncio.sleep(PAUSES[attempt])
                try:
                    await self.refresh()
                except StoreUnavailable as refresh_error:
                    last = refresh_error
            except StoreUnavailable:  # sent, then the connection was lost: maybe applied, so never sent again
                self._refresh_soon()
                raise
        raise StoreUnavailable(f"redis cluster: slot {slot} not served after {attempt + 1} tries: {last}")

    async def execute(self, *command: Any) -> Any:
        key = _key_of(command)

        async def send(node: LeanRedis, asking: bool) -> Any:
            if asking:
                return (await node.pipeline(("ASKING",), command))[1]
            return await node.execute(*command)

        return await self._run(None if key is None else slot_of(key), send)

    async def pipeline(self, *commands: Sequence[Any]) -> list[Any]:
        """Each command to its own slot's node, all at once (not a transaction); an error reply raises."""
        if len(commands) == 1:
            return [await self.execute(*commands[0])]
        return list(await asyncio.gather(*(self.execute(*command) for command in commands)))

    async def script(self, source: str, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """Every key of one script must be in one slot (share a hash tag): Redis Cluster refuses it otherwise."""

        async def send(node: LeanRedis, asking: bool) -> Any:
            if asking:  # ASKING covers the next command only: the script itself, not a SCRIPT LOAD first
                return (await node.pipeline(("ASKING",), ("EVAL", source, len(keys), *keys, *args)))[1]
            return await node.script(source, keys, args)

        return await self._run(slot_of(keys[0]) if keys else None, send)

    async def script_each(self, source: str, keys: Sequence[Any], args: Sequence[Any]) -> list[Any]:
        """A script answering one result per key, run once per slot among keys (a batch of many sessions: one call
        per slot, the calls to one node leaving in one write). A slot that fails gives its keys StoreUnavailable
        (an exception as their result), the other keys still get theirs."""
        groups: dict[int, list[int]] = {}
        for i, key in enumerate(keys):
            groups.setdefault(slot_of(key), []).append(i)
        if len(groups) == 1:
            return await self.script(source, keys, args)
        results: list[Any] = [None] * len(keys)

        async def one(indexes: list[int]) -> None:
            try:
                replies = await self.script(source, [keys[i] for i in indexes], args)
            except (StoreUnavailable, RedisError) as error:
                failed = error if isinstance(error, StoreUnavailable) else StoreUnavailable(f"redis: {error}")
                replies = [failed] * len(indexes)
            for i, reply in zip(indexes, replies):
                results[i] = reply

        await asyncio.gather(*(one(indexes) for indexes in groups.values()))
        return results

    async def ping(self) -> None:
        """Every primary answers (the map loaded first if it is not yet)."""
        if not any(self.slots):
            await self.refresh(force=True)
        owners = [address for address in dict.fromkeys(self.slots) if address is not None]
        await asyncio.gather(
            *(self._run(self.slots.index(owner), lambda node, asking: node.execute("PING")) for owner in owners)
        )

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        nodes, self.nodes = list(self.nodes.values()), {}
        for node in nodes:
            await node.close()
