"""replication: every node keeps every session in memory and sends each change to all peers (as Tomcat's
DeltaManager does).

State and convergence: replication_state.py (every field a versioned register, the counter a sum of per-node parts,
deletions as tombstones; nodes that received the same changes hold the same state, whatever the order). A read slides
the session's expiry on every node: it sends a "touch" (the new expiry), at most once per session per TTL/10.

Delivery
- One sender per peer posts batches of deltas, in order, to the peer's /_replication/deltas.
- REPLICATION_MODE=sync: a change is answered only once every live peer acknowledged the batch that holds it, or
  after REPLICATION_TIMEOUT_MS, when the peers that did not answer in time are marked down. async: answered at once,
  and a peer may briefly serve the state before (the lag is measured on arrival: /_replication/status and the log).
- A peer whose send fails or times out is marked down: its queued deltas are dropped and, as soon as it answers
  again, it is pushed a snapshot of this node's whole state (which holds all that the dropped deltas held); changes
  made meanwhile queue behind the snapshot, and the peer counts as live (sync waits for it) once it has taken it.
- A starting node pulls a snapshot from a live peer before it serves (uvicorn opens its port only after the store's
  start). When no peer accepts a connection, the cluster is empty and the node starts with no sessions; when a peer
  is up but fails to give one, it retries until STARTUP_TIMEOUT and then refuses to start.

Authentication: HMAC-SHA256 under REPLICATION_KEY over a timestamp, a random nonce, the method, the path and the
body. A request older than MAX_SKEW seconds is refused, and so is one whose nonce was already seen (a replay: nonces
are remembered for as long as their timestamp is accepted). A delta carries its origin's epoch (one per process) and
sequence number; one at or below the highest already applied from that origin is skipped.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import hashlib
import hmac
import json
import logging
import math
import secrets
import time
from collections.abc import Awaitable
from typing import Any

from .base import SLIDE_AFTER, Limits, Session, stopped
from .peer_link import PeerDown, PeerLink, Response
from .replication_state import ConvergentStore

log = logging.getLogger("sample_app.replication")

AUTH_HEADER = "X-Replication-Auth"
MAX_SKEW = 30.0  # seconds a signed request stays valid (clocks of the nodes may differ by this much)
DELTA_MAX_AGE = 60.0  # a delta older than this on arrival is dropped (a failed peer gets a snapshot instead)
STARTUP_TIMEOUT = 30.0  # how long a starting node retries peers that are up but fail to give a snapshot
RETRY_MAX = 1.0  # longest pause between attempts to bring a down peer back
SNAPSHOT_TIMEOUT = 30.0  # a whole snapshot sent or received (a delta batch: 5 s, Peer.link's own)
BATCH = 500
QUEUE_LIMIT = 100_000
LAG_SAMPLES = 2048
MODES = ("sync", "async")

DOWN, JOINING, UP = "down", "joining", "up"


def _mac(key: bytes, stamp: str, nonce: str, method: str, path: str, body: bytes) -> str:
    return hmac.new(key, f"{stamp}\n{nonce}\n{method}\n{path}\n".encode() + body, hashlib.sha256).hexdigest()


def sign(key: bytes, method: str, path: str, body: bytes, now: float | None = None) -> str:
    stamp, nonce = f"{time.time() if now is None else now:.3f}", secrets.token_urlsafe(12)
    return f"{stamp}:{nonce}:{_mac(key, stamp, nonce, method, path, body)}"


def authentic(key: bytes, method: str, path: str, body: bytes, header: str) -> str | None:
    """The request's nonce when its signature is right and its timestamp fresh; else None."""
    parts = header.split(":")
    if len(parts) != 3:
        return None
    stamp, nonce, mac = parts
    try:
        when = float(stamp)
    except ValueError:
        return None
    if not math.isfinite(when) or abs(time.time() - when) > MAX_SKEW:
        return None
    return nonce if hmac.compare_digest(_mac(key, stamp, nonce, method, path, body), mac) else None


def verify(key: bytes, method: str, path: str, body: bytes, header: str) -> bool:
    return authentic(key, method, path, body, header) is not None


class ReplayGuard:
    """The nonces of the authentic requests of the last 2 * MAX_SKEW seconds: a timestamp accepted now was made at
    most MAX_SKEW ago and stays acceptable at most MAX_SKEW longer, so a replay is either here or refused as old."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.order: collections.deque[tuple[float, str]] = collections.deque()
        self.refused = 0

    def first_time(self, nonce: str) -> bool:
        now = time.monotonic()
        while self.order and self.order[0][0] < now:
            self.seen.discard(self.order.popleft()[1])
        if nonce in self.seen:
            self.refused += 1
            return False
        self.seen.add(nonce)
        self.order.append((now + 2 * MAX_SKEW + 1, nonce))
        return True


@dataclasses.dataclass(eq=False)
class Pending:
    """A change in sync mode: answered when every peer in `peers` acknowledged it (or was marked down)."""

    seq: int
    peers: set
    future: asyncio.Future
    timer: asyncio.TimerHandle | None = None


class Peer:
    """One outgoing link: its state, a queue of deltas, and the sync changes waiting for its acknowledgement."""

    def __init__(self, url: str):
        self.url = url
        # PeerLink's defaults: 2 s to connect, 5 s per exchange, and idle connections let go of within a second (a
        # peer that is stopping, a drain, waits until the connections it holds are closed).
        self.link = PeerLink(url)
        self.state = DOWN  # until it has taken a snapshot from this node
        self.generation = 0  # bumped when marked down: an answer to an older send no longer counts
        self.queue: collections.deque[dict[str, Any]] = collections.deque()
        self.waiting: collections.deque[Pending] = collections.deque()
        self.wakeup = asyncio.Event()
        self.acked = 0
        self.sent = self.batches = self.failures = self.dropped = self.snapshots = 0
        self.last_error = ""

    def status(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "queued": len(self.queue),
            "sent": self.sent,
            "batches": self.batches,
            "failures": self.failures,
            "dropped": self.dropped,
            "snapshots": self.snapshots,
            "last_error": self.last_error,
        }


class ReplicatedStore(ConvergentStore):
    def __init__(
        self, limits: Limits, node: str, peers: tuple[str, ...], key: str, mode: str = "sync", timeout: float = 1.0
    ):
        # A tombstone outlives every delta that could still arrive and every copy a node that missed it may hold.
        super().__init__(limits, node, tombstone_keep=limits.ttl + DELTA_MAX_AGE + 2 * MAX_SKEW)
        self.key = key.encode()
        self.peers = [Peer(url) for url in peers]
        self.mode, self.timeout = mode, timeout  # REPLICATION_MODE, REPLICATION_TIMEOUT_MS / 1000
        self.epoch = secrets.token_hex(8)
        self.seq = 0
        self.touched: dict[str, float] = {}  # handle -> the expiry last sent to the peers
        self.touch_every = limits.ttl * SLIDE_AFTER
        self.links: dict[str, tuple[str, int]] = {}  # origin -> (its epoch, highest sequence number applied)
        self.guard = ReplayGuard()
        self.received = self.duplicates = self.stale = 0
        self.lag_ms: collections.deque[float] = collections.deque(maxlen=LAG_SAMPLES)
        self.snapshot_from = ""
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        await super().start()
        await self._pull_snapshot()
        self._tasks = [asyncio.create_task(self._send_forever(peer)) for peer in self.peers]
        self._tasks.append(asyncio.create_task(self._log_forever()))

    async def close(self) -> None:
        for task in self._tasks:
            await stopped(task)
        for peer in self.peers:
            self._mark_down(peer, "closing", quiet=True)
            peer.link.close()
        await super().close()

    # -- local changes ------------------------------------------------------------------------------------------

    def _forget(self, handle: str) -> None:
        super()._forget(handle)
        self.touched.pop(handle, None)

    def _changed(self, op: str, handle: str, **fields: Any) -> Awaitable[None] | None:
        delta = self._delta(op, handle, **fields)
        if "f" in delta:  # a change, not a deletion: the expiry it sends counts as touched
            self.touched[handle] = delta["exp"]
        return self._send(delta, wait=True)

    async def load(self, handle: str) -> Session | None:
        session = self._live(handle)
        if session is None:
            return None
        expires = self.expires[handle]
        if expires - self.touched.get(handle, 0.0) >= self.touch_every:
            self.touched[handle] = expires
            self._send({"sid": handle, "exp": expires}, wait=False)
        return self._copy(session)

    # -- outgoing -----------------------------------------------------------------------------------------------

    def _send(self, state: dict[str, Any], wait: bool) -> Awaitable[None] | None:
        """Queue a delta for every peer that is not down; in sync mode, what to await for the live peers' acks."""
        self.seq += 1
        delta = {"seq": self.seq, "ts": time.time(), **state}
        acking = set()
        for peer in self.peers:
            if peer.state == DOWN:
                continue
            if len(peer.queue) >= QUEUE_LIMIT:
                self._mark_down(peer, f"more than {QUEUE_LIMIT} deltas queued")
                continue
            peer.queue.append(delta)
            peer.wakeup.set()
            if peer.state == UP:
                acking.add(peer)
        if not (wait and self.mode == "sync" and acking):
            return None
        loop = asyncio.get_running_loop()
        pending = Pending(self.seq, acking, loop.create_future())
        pending.timer = loop.call_later(self.timeout, self._expire, pending)
        for peer in acking:
            peer.waiting.append(pending)
        return pending.future

    @staticmethod
    def _release(pending: Pending, peer: Peer) -> None:
        pending.peers.discard(peer)
        if not pending.peers and not pending.future.done():
            pending.future.set_result(None)
            if pending.timer:
                pending.timer.cancel()

    def _expire(self, pending: Pending) -> None:
        for peer in list(pending.peers):
            self._mark_down(peer, f"no acknowledgement within {self.timeout:g} s")

    def _mark_down(self, peer: Peer, reason: str, quiet: bool = False) -> None:
        if peer.state == UP and not quiet:
            log.warning("peer %s is down: %s (it gets a snapshot when it answers again)", peer.url, reason)
        peer.state = DOWN
        peer.generation += 1
        peer.dropped += len(peer.queue)
        peer.queue.clear()
        while peer.waiting:
            self._release(peer.waiting.popleft(), peer)
        peer.last_error = reason
        peer.wakeup.set()

    async def _post(self, peer: Peer, path: str, body: bytes, timeout: float | None = None) -> Response:
        headers = {AUTH_HEADER: sign(self.key, "POST", path, body), "Content-Type": "application/json"}
        return await peer.link.request("POST", path, body, headers, timeout)

    async def _deliver(self, peer: Peer, path: str, body: bytes, timeout: float | None = None) -> bool:
        """POST to a peer; False (and the peer marked down) when it fails or the peer was marked down meanwhile."""
        generation = peer.generation
        try:
            (await self._post(peer, path, body, timeout)).raise_for_status()
        except OSError as error:  # LinkError included
            if peer.generation == generation:
                peer.failures += 1
                self._mark_down(peer, f"{type(error).__name__}: {error}")
            return False
        return peer.generation == generation

    async def _rejoin(self, peer: Peer) -> bool:
        """Bring a down peer back: a cheap probe, then a snapshot; changes made from then on queue behind it."""
        try:
            (await peer.link.request("GET", "/_replication/status")).raise_for_status()
        except OSError as error:
            peer.failures += 1
            peer.last_error = f"{type(error).__name__}: {error}"
            return False
        peer.state = JOINING
        snapshot = json.dumps(self.snapshot()).encode()
        if not await self._deliver(peer, "/_replication/merge", snapshot, SNAPSHOT_TIMEOUT):
            return False
        peer.state, peer.last_error = UP, ""
        peer.snapshots += 1
        log.info("peer %s is live (sent it a snapshot)", peer.url)
        return True

    async def _send_forever(self, peer: Peer) -> None:
        pause = 0.05
        while True:
            if peer.state == DOWN:
                if not await self._rejoin(peer):
                    peer.wakeup.clear()  # a request from any peer sets it: it may be back, try again soon
                    try:
                        await asyncio.wait_for(peer.wakeup.wait(), pause)
                        pause = 0.05
                        await asyncio.sleep(pause)  # at most 20 tries a second however busy the others are
                    except TimeoutError:
                        pause = min(pause * 2, RETRY_MAX)
                    continue
                pause = 0.05
            if not peer.queue:
                peer.wakeup.clear()
                await peer.wakeup.wait()
                continue
            batch = [peer.queue[i] for i in range(min(BATCH, len(peer.queue)))]
            body = json.dumps({"origin": self.node, "epoch": self.epoch, "deltas": batch}).encode()
            if not await self._deliver(peer, "/_replication/deltas", body):
                continue
            for _ in batch:
                peer.queue.popleft()
            peer.sent += len(batch)
            peer.batches += 1
            peer.acked = batch[-1]["seq"]
            while peer.waiting and peer.waiting[0].seq <= peer.acked:
                self._release(peer.waiting.popleft(), peer)

    # -- incoming -----------------------------------------------------------------------------------------------

    def refusal(self, method: str, path: str, body: bytes, header: str) -> tuple[int, str, str] | None:
        """Why a peer's request is refused (status, code, message), or None when it is authentic, fresh and new."""
        nonce = authentic(self.key, method, path, body, header)
        if nonce is None:
            return 401, "unauthenticated", "bad or missing replication signature"
        if not self.guard.first_time(nonce):
            return 409, "replayed", "this signed request was already received"
        for peer in self.peers:  # a peer talks to us: the ones we think down may be back
            if peer.state == DOWN:
                peer.wakeup.set()
        return None

    def apply(self, batch: dict[str, Any]) -> int:
        """Merge a batch of deltas from one origin, in order; returns how many were new."""
        origin, epoch, deltas = str(batch["origin"]), str(batch["epoch"]), batch["deltas"]
        if not isinstance(deltas, list):
            raise TypeError("deltas must be a list")
        known_epoch, last = self.links.get(origin, ("", 0))
        if known_epoch != epoch:  # the origin restarted: its numbering starts again
            last = 0
        now, applied = time.time(), 0
        for delta in deltas:
            seq, sent = int(delta["seq"]), float(delta["ts"])
            if seq <= last:
                self.duplicates += 1
                continue
            last = seq
            if now - sent > DELTA_MAX_AGE:
                self.stale += 1
                continue
            self.merge(delta)
            self.lag_ms.append(max(0.0, (now - sent) * 1000))
            applied += 1
        self.links[origin] = (epoch, last)
        self.received += len(deltas)
        return applied

    async def _pull_snapshot(self) -> None:
        """Before serving: a snapshot from the first live peer; none up: start empty; up but failing: retry."""
        loop = asyncio.get_running_loop()
        deadline, pause = loop.time() + STARTUP_TIMEOUT, 0.2
        while True:
            failed = []
            for peer in self.peers:
                try:
                    response = await self._post(peer, "/_replication/snapshot", b"", SNAPSHOT_TIMEOUT)
                    response.raise_for_status()
                    count = self.merge_snapshot(response.json())
                except PeerDown:
                    continue  # not up
                except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
                    failed.append(f"{peer.url}: {type(error).__name__}: {error}")
                    continue
                self.snapshot_from = peer.url
                log.info("pulled %d sessions from %s", count, peer.url)
                return
            if not failed:
                log.info("no peer is up: starting with no sessions")
                return
            if loop.time() + pause > deadline:
                raise RuntimeError(
                    f"replication: no snapshot from the peers that are up within {STARTUP_TIMEOUT:g} s"
                    f" ({'; '.join(failed)})"
                )
            log.warning("no snapshot yet, retrying: %s", "; ".join(failed))
            await asyncio.sleep(pause)
            pause = min(pause * 2, 2.0)

    # -- observing ----------------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        lags = sorted(self.lag_ms)

        def pct(p: float) -> float | None:
            return round(lags[min(len(lags) - 1, int(p * len(lags)))], 3) if lags else None

        return {
            "node": self.node,
            "mode": self.mode,
            "sessions": len(self.sessions),
            "received": self.received,
            "duplicates": self.duplicates,
            "stale": self.stale,
            "replays_refused": self.guard.refused,
            "tombstones": len(self.tombstones),
            "early": len(self.early),
            "snapshot_from": self.snapshot_from,
            "lag_ms": {
                "samples": len(lags),
                "last": round(self.lag_ms[-1], 3) if lags else None,
                "p50": pct(0.5),
                "p99": pct(0.99),
                "max": round(lags[-1], 3) if lags else None,
            },
            "peers": {peer.url: peer.status() for peer in self.peers},
        }

    async def _log_forever(self) -> None:
        seen = 0
        while True:
            await asyncio.sleep(10)
            if self.received != seen:
                lag = self.status()["lag_ms"]
                log.info(
                    "replication: %d deltas received, lag p50 %s ms p99 %s ms max %s ms",
                    self.received - seen,
                    lag["p50"],
                    lag["p99"],
                    lag["max"],
                )
                seen = self.received
