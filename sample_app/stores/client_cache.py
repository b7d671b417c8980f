"""A node's own copies of the sessions it read, kept fresh by Redis (client-side caching, RESP3 CLIENT TRACKING).

Reads of the redis and token strategies go over a connection of their own that speaks RESP3 with tracking on: Redis
remembers every key read on it and, when any client changes or deletes one of them (or it expires), pushes an
invalidation on that same connection, in order with the replies. The node keeps what it read (REDIS_CACHE_SESSIONS
sessions at most) and answers from it. Why that is safe with many nodes:

- Read your writes on any node. A client changes its session on node A, gets the answer, then reads on node B. Redis
  queued the invalidation for B's connection when it ran the change, before A answered. B does not answer from its
  copy at once: every batch of reads sends one command on the tracking connection first (a PING when every session
  of the batch is held; otherwise the reads of those it lacks) and answers only once the reply is in. That reply
  comes after the invalidation, and replies and pushes are handled in the order they arrive, so by then the copy is
  gone and the session is read from Redis. The cost: one round trip per batch, as without the copies; what the copy
  saves is the reading, Redis's work and the parsing.
- A read racing a change. The reply to a read may come in just before the invalidation of a change made after it,
  and both may be handled before the waiting request resumes to keep its copy. Every key being read is counted in
  `filling`; an invalidation of such a key spoils the read, which then answers its request but is not kept.
- A lost connection (Redis restarted, a Sentinel failover, a timeout) may have carried invalidations that will never
  come: every copy is dropped with it, and in-flight reads are spoiled. The same for Redis's "invalidate everything"
  (FLUSHALL). The tracking connection connects where the store's own connection is, and moves with it (resp.py,
  `follows`): after a Sentinel failover a node never reads from one server and writes to another.
- Redis's side: it remembers every key read on a tracking connection (sessions that do not exist too) until the key
  changes, in a table of at most `tracking-table-max-keys` keys (the kit's redis.conf sets it); past it, Redis
  invalidates keys at random to make room, which costs copies, never correctness.
- Expiry: a copy holds the session's deadline (its PTTL when read). A copy is served only while more than the
  reads' slide threshold remains; past it the session is read again from Redis, and slid there, as without copies.
  Redis's own expiry of the key invalidates it too.

Not on Redis Cluster (reads there go as one script per slot); REDIS_CACHE_SESSIONS=0 turns it off.
"""

from __future__ import annotations

from typing import Generic, TypeVar

Value = TypeVar("Value")


class ClientCache(Generic[Value]):
    """Copies by key (str), each with its deadline in the event loop's clock; a resp.Tracker for its connection."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.copies: dict[str, tuple[Value, float]] = {}
        self.filling: dict[str, int] = {}  # key -> reads of it sent and not yet kept (or dropped)
        self.spoiled: set[str] = set()  # keys invalidated while a read of them was out: that read is not kept
        self.invalidations = 0  # keys Redis said changed (a drop of everything counts as one)

    def get(self, key: str, fresh_until: float) -> Value | None:
        """The copy of key, if there is one whose deadline is after fresh_until."""
        copy = self.copies.get(key)
        if copy is None or copy[1] <= fresh_until:
            return None
        return copy[0]

    def reading(self, key: str) -> None:
        """A read of key is about to be sent (on the tracking connection): changes from now on spoil it."""
        self.filling[key] = self.filling.get(key, 0) + 1

    def read(self, key: str, value: Value | None, deadline: float) -> None:
        """The read of key answered (value None: do not keep it, no session or one due for a slide, or it failed)."""
        count = self.filling.get(key, 0)
        if count <= 1:
            self.filling.pop(key, None)
            spoiled = key in self.spoiled
            self.spoiled.discard(key)
        else:
            self.filling[key] = count - 1
            spoiled = key in self.spoiled  # kept spoiled until the last read of it that was out is in
        if value is None or spoiled:
            return
        if len(self.copies) >= self.capacity and key not in self.copies:
            if self.capacity <= 0:
                return
            del self.copies[next(iter(self.copies))]  # the oldest kept
        self.copies[key] = (value, deadline)

    # resp.Tracker
    def invalidated(self, keys: list[bytes] | None) -> None:
        if keys is None:
            self.lost()
            return
        for raw in keys:
            key = raw.decode()
            self.copies.pop(key, None)
            if key in self.filling:
                self.spoiled.add(key)
        self.invalidations += len(keys)

    def lost(self) -> None:
        self.copies.clear()
        self.spoiled.update(self.filling)
        self.invalidations += 1
