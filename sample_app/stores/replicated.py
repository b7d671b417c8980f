"""replication: every node keeps every session in memory and sends each change to all peers (like Tomcat's DeltaManager).

- A change is applied locally, answered, and queued as a delta for every peer; one sender task per peer posts
  batches of deltas to the peer's /_replication/deltas, so replication is asynchronous: a peer may briefly serve an
  older copy (the lag is measured on arrival and shown on /_replication/status and in the log).
- Deltas carry the resulting value, not the operation (Tomcat's attribute semantics): concurrent increments of one
  session on two nodes overwrite each other (last writer wins). That is the cost of this strategy; the test suite
  measures it. Each value carries a Lamport version (clock, node), and a node applies a delta only when it is newer
  than what it holds, so that whatever the order deltas arrive in, every node ends with the same value.
- Requests between peers are authenticated with HMAC-SHA256 under REPLICATION_KEY, over a timestamp, the method,
  the path and the body; a request older than MAX_SKEW seconds is refused.
- A starting node pulls the full state from the first peer that answers (/_replication/snapshot).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import hmac
import json
import logging
import time
from typing import Any

import httpx

from .base import Limits, Session
from .memory import MemoryStore

log = logging.getLogger("sample_app.replication")

AUTH_HEADER = "X-Replication-Auth"
MAX_SKEW = 30.0
BATCH = 500
QUEUE_LIMIT = 100_000
LAG_SAMPLES = 2048


def sign(key: bytes, method: str, path: str, body: bytes, now: float | None = None) -> str:
    stamp = f"{time.time() if now is None else now:.3f}"
    mac = hmac.new(key, f"{stamp}\n{method}\n{path}\n".encode() + body, hashlib.sha256).hexdigest()
    return f"{stamp}:{mac}"


def verify(key: bytes, method: str, path: str, body: bytes, header: str) -> bool:
    stamp, _, mac = header.partition(":")
    try:
        age = abs(time.time() - float(stamp))
    except ValueError:
        return False
    if age > MAX_SKEW:
        return False
    expected = hmac.new(key, f"{stamp}\n{method}\n{path}\n".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, mac)


class Peer:
    """One outgoing link: a queue of deltas and a task that sends them in batches."""

    def __init__(self, url: str):
        self.url = url
        self.queue: collections.deque[dict[str, Any]] = collections.deque()
        self.wakeup = asyncio.Event()
        self.sent = 0
        self.failures = 0
        self.dropped = 0
        self.last_error = ""

    def push(self, delta: dict[str, Any]) -> None:
        if len(self.queue) >= QUEUE_LIMIT:
            self.queue.popleft()
            self.dropped += 1
        self.queue.append(delta)
        self.wakeup.set()

    def status(self) -> dict[str, Any]:
        return {"queued": len(self.queue), "sent": self.sent, "failures": self.failures, "dropped": self.dropped,
                "last_error": self.last_error}


class ReplicatedStore(MemoryStore):
    def __init__(self, limits: Limits, node: str, peers: tuple[str, ...], key: str):
        super().__init__(limits)
        self.node = node
        self.key = key.encode()
        self.peers = [Peer(url) for url in peers]
        self.seq = 0
        self.clock = 0  # Lamport clock: above every version this node has made or seen
        self.versions: dict[str, dict[str, tuple[int, str]]] = {}  # handle -> field -> (clock, node)
        self.received = 0
        self.lag_ms: collections.deque[float] = collections.deque(maxlen=LAG_SAMPLES)
        self.snapshot_from = ""
        self._client: httpx.AsyncClient | None = None
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        await super().start()
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(5.0, connect=2.0))
        await self._pull_snapshot()
        self._tasks = [asyncio.create_task(self._send_forever(peer)) for peer in self.peers]
        self._tasks.append(asyncio.create_task(self._log_forever()))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._client:
            await self._client.aclose()
        await super().close()

    # -- outgoing -----------------------------------------------------------------------------------------------

    @staticmethod
    def _field(delta: dict[str, Any]) -> str:
        return delta["field"] if delta["op"] == "set" else "d:" + delta["key"]

    def _forget(self, handle: str) -> None:
        super()._forget(handle)
        self.versions.pop(handle, None)

    def _changed(self, op: str, handle: str, **fields: Any) -> None:
        self.seq += 1
        self.clock += 1
        delta = {"origin": self.node, "seq": self.seq, "ts": time.time(), "clock": self.clock, "op": op,
                 "sid": handle, **fields}
        if op in ("set", "data_set", "data_del"):
            self.versions.setdefault(handle, {})[self._field(delta)] = (self.clock, self.node)
        for peer in self.peers:
            peer.push(delta)

    async def _post(self, url: str, path: str, body: bytes) -> httpx.Response:
        assert self._client is not None
        headers = {AUTH_HEADER: sign(self.key, "POST", path, body), "Content-Type": "application/json"}
        return await self._client.post(url + path, content=body, headers=headers)

    async def _send_forever(self, peer: Peer) -> None:
        backoff = 0.2
        while True:
            if not peer.queue:
                peer.wakeup.clear()
                await peer.wakeup.wait()
            batch = [peer.queue[i] for i in range(min(BATCH, len(peer.queue)))]
            try:
                response = await self._post(peer.url, "/_replication/deltas", json.dumps(batch).encode())
                response.raise_for_status()
            except (httpx.HTTPError, OSError) as error:
                peer.failures += 1
                if peer.last_error != str(error):
                    log.warning("replication to %s failed: %s (retrying, %d queued)", peer.url, error, len(peer.queue))
                peer.last_error = str(error)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            for _ in batch:
                peer.queue.popleft()
            peer.sent += len(batch)
            peer.last_error = ""
            backoff = 0.2

    # -- incoming -----------------------------------------------------------------------------------------------

    def apply(self, deltas: list[dict[str, Any]]) -> None:
        now = time.time()
        for delta in deltas:
            self.clock = max(self.clock, int(delta["clock"]))
            self._apply_one(delta)
            self.lag_ms.append(max(0.0, (now - float(delta["ts"])) * 1000))
        self.received += len(deltas)

    def _apply_one(self, delta: dict[str, Any]) -> None:
        op, handle = delta["op"], delta["sid"]
        if op == "put":
            self._put(handle, Session.from_json(delta["session"]))
            return
        if op == "del":
            self._forget(handle)
            return
        session = self._live(handle)
        if session is None:
            return
        # Apply only what is newer than what this node holds: all nodes converge on the highest version.
        version, field = (int(delta["clock"]), delta["origin"]), self._field(delta)
        held = self.versions.setdefault(handle, {})
        if version <= held.get(field, (0, "")):
            return
        held[field] = version
        if op == "set":
            setattr(session, delta["field"], delta["value"])
        elif op == "data_set":
            session.data[delta["key"]] = delta["value"]
        elif op == "data_del":
            session.data.pop(delta["key"], None)

    def snapshot(self) -> dict[str, Any]:
        self.purge_expired()
        return {"node": self.node, "sessions": {
            handle: {"session": session.as_json(), "expires": self.expires[handle]}
            for handle, session in self.sessions.items()}}

    async def _pull_snapshot(self) -> None:
        for peer in self.peers:
            try:
                response = await self._post(peer.url, "/_replication/snapshot", b"")
                response.raise_for_status()
                state = response.json()
            except (httpx.HTTPError, OSError, ValueError) as error:
                log.info("no snapshot from %s: %s", peer.url, error)
                continue
            for handle, entry in state["sessions"].items():
                if handle not in self.sessions:  # a delta that arrived meanwhile is newer
                    self._put(handle, Session.from_json(entry["session"]), float(entry["expires"]))
            self.snapshot_from = peer.url
            log.info("pulled %d sessions from %s", len(state["sessions"]), peer.url)
            return
        log.info("no peer answered: starting with no sessions")

    # -- observing ----------------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        lags = sorted(self.lag_ms)

        def pct(p: float) -> float | None:
            return round(lags[min(len(lags) - 1, int(p * len(lags)))], 3) if lags else None

        return {"node": self.node, "sessions": len(self.sessions), "received": self.received,
                "snapshot_from": self.snapshot_from,
                "lag_ms": {"samples": len(lags), "last": round(self.lag_ms[-1], 3) if lags else None,
                           "p50": pct(0.5), "p99": pct(0.99), "max": round(lags[-1], 3) if lags else None},
                "peers": {peer.url: peer.status() for peer in self.peers}}

    async def _log_forever(self) -> None:
        seen = 0
        while True:
            await asyncio.sleep(10)
            if self.received != seen:
                lag = self.status()["lag_ms"]
                log.info("replication: %d deltas received, lag p50 %s ms p99 %s ms max %s ms",
                         self.received - seen, lag["p50"], lag["p99"], lag["max"])
                seen = self.received
