"""Redis Cluster (ClusterRedis): the LeanRedis interface (resp.py) over a cluster's primaries.

The slot map comes from CLUSTER SLOTS, one LeanRedis per primary, each command goes to its key's slot's primary;
MOVED updates the slot and retries there, ASK retries once on the importing node after ASKING, TRYAGAIN and
CLUSTERDOWN retry after a short pause, a node that cannot be reached refreshes the map (a replica promoted by a
failover is found there) and retries; every retry is bounded (about a second in all), then StoreUnavailable, the
app's 503. A command already sent on a connection that is then lost is never sent again (it may have been applied):
StoreUnavailable at once, and the map is refreshed for the next request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from .base import StoreUnavailable
from .resp import LeanRedis, NotSent, RedisError

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
        # Nodes we hold a live connection to first: a node down may take TIMEOUT (resp.py) to refuse.
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
