"""replication's state, and how it converges: the sessions of a MemoryStore, every field versioned, so that any two
nodes that received the same changes hold the same state (replicated.py sends and receives the changes).

- A session is a set of fields (user, created, counter, and one per data key), each a last-writer-wins register with a
  Lamport version (clock, node). A change travels as a delta: the fields it changed, with their versions, and the
  session's expiry. A snapshot is the whole state in the same form. A node merges either by keeping, field by field,
  the higher version, so nodes that received the same changes hold the same state, whatever the order, duplicates
  or delays (tests/unit/test_replication_convergence.py).
- The counter is not one register but a sum of parts (a grow-only counter): the value it had when the session was
  created or moved ("counter"), plus one part per node ("c:NODE"), which only that node writes: its own increments.
  Concurrent increments of one session on several nodes therefore all count, once replicated (none is overwritten).
- A deletion (logout, the old id of a rotation) leaves a tombstone, and a deleted id stays deleted whatever arrives
  later (ids are random and never reused, so deletion wins). A tombstone is kept for `tombstone_keep` seconds
  (replicated.py: the session TTL plus DELTA_MAX_AGE plus twice MAX_SKEW): longer than a delta may travel (an older
  delta is dropped on arrival, and a peer that fails is sent a snapshot instead of its queue) and than an unused copy
  on a node that missed the deletion can live.
- A change for a session this node does not have yet (its creation is still on the way) is kept, not dropped, and
  joins the session when the creation arrives.
"""

from __future__ import annotations

import time
from typing import Any

from .base import Limits, Session
from .memory import MemoryStore

Version = tuple[int, str]
ZERO: Version = (0, "")


class ConvergentStore(MemoryStore):
    """The sessions, their fields' versions, the counters' parts, the changes that came before their session's
    creation, and the tombstones: what a change made here becomes (`_delta`), and how a change or a snapshot from a
    peer is merged (`merge`, `merge_snapshot`)."""

    def __init__(self, limits: Limits, node: str, tombstone_keep: float):
        super().__init__(limits)
        self.node = node
        self.clock = 0  # Lamport clock: above every version this node has made or seen
        self.versions: dict[str, dict[str, Version]] = {}  # handle -> field -> version
        self.early: dict[str, dict[str, list]] = {}  # changes to sessions whose creation has not arrived yet
        self.parts: dict[str, dict[str, int]] = {}  # handle -> counter part ("counter", "c:NODE") -> value
        self.tombstones: dict[str, float] = {}  # deleted handle -> when
        self.tombstone_keep = tombstone_keep

    def _forget(self, handle: str) -> None:
        super()._forget(handle)
        self.versions.pop(handle, None)
        self.early.pop(handle, None)
        self.parts.pop(handle, None)

    def _delta(self, op: str, handle: str, **fields: Any) -> dict[str, Any]:
        """A local change (MemoryStore._changed's arguments), versioned: the session's partial state to send."""
        if op == "del":
            self.tombstones[handle] = time.time()
            return {"sid": handle, "del": self.tombstones[handle]}
        self.clock += 1
        version = (self.clock, self.node)
        if op == "put":
            session: Session = fields["session"]
            values = {
                "user": session.user,
                "created": session.created,
                "counter": session.counter,
                **{"d:" + key: value for key, value in session.data.items()},
            }
            changed = {name: [*version, value] for name, value in values.items()}
            self.parts[handle] = {"counter": session.counter}
        elif op == "set" and fields["field"] == "counter":  # an increment: this node's own part grows by one
            parts, mine = self.parts.setdefault(handle, {}), "c:" + self.node
            parts[mine] = parts.get(mine, 0) + 1
            changed = {mine: [*version, parts[mine]]}
        elif op == "set":
            changed = {fields["field"]: [*version, fields["value"]]}
        elif op == "data_set":
            changed = {"d:" + fields["key"]: [*version, fields["value"]]}
        else:  # data_del: a version without a value
            changed = {"d:" + fields["key"]: [*version]}
        held = self.versions.setdefault(handle, {})
        for name in changed:
            held[name] = version
        return {"sid": handle, "exp": self.expires[handle], "f": changed}

    def merge(self, state: dict[str, Any]) -> None:
        """Merge one session's partial state (a delta, or an entry of a snapshot): per field, the higher version."""
        handle = state["sid"]
        if not isinstance(handle, str):
            raise TypeError("sid must be a string")
        if "del" in state:
            deleted = float(state["del"])
            if handle not in self.tombstones and time.time() - deleted < self.tombstone_keep:
                self._forget(handle)
                self.tombstones[handle] = deleted
            return
        if handle in self.tombstones:
            return
        session = self.sessions.get(handle)
        held = self.versions.get(handle, {})
        early = self.early.get(handle, {}) if session is None else None
        for name, entry in state.get("f", {}).items():
            version = (int(entry[0]), str(entry[1]))
            self.clock = max(self.clock, version[0])
            if version <= held.get(name, ZERO):
                continue
            held[name] = version
            if session is not None:
                self._assign(handle, session, name, entry)
            else:
                early[name] = entry
        if not held:  # nothing known about this session (a touch for a session this node never had)
            return
        self.versions[handle] = held
        if session is None:
            if "user" in early:  # its creation has arrived: the session exists from now on
                self.early.pop(handle, None)
                session = Session(user=str(early["user"][2]), created=float(early.get("created", [0, "", 0])[2]))
                for name, entry in early.items():
                    self._assign(handle, session, name, entry)
                self.sessions[handle] = session
            else:
                self.early[handle] = early
        self.expires[handle] = max(self.expires.get(handle, 0.0), float(state["exp"]))

    def _assign(self, handle: str, session: Session, name: str, entry: list) -> None:
        if name == "counter" or name.startswith("c:"):
            parts = self.parts.setdefault(handle, {})
            parts[name] = int(entry[2])
            session.counter = sum(parts.values())
        elif name.startswith("d:"):
            if len(entry) > 2:
                session.data[name[2:]] = entry[2]
            else:
                session.data.pop(name[2:], None)
        # user and created are set once, by the session's creation

    def _entries(self, handle: str, session: Session) -> dict[str, list]:
        values = {"user": session.user, "created": session.created, **self.parts.get(handle, {})}
        entries = {}
        for name, version in self.versions.get(handle, {}).items():
            if name.startswith("d:"):
                key = name[2:]
                entries[name] = [*version, session.data[key]] if key in session.data else [*version]
            else:
                entries[name] = [*version, values[name]]
        return entries

    def snapshot(self) -> dict[str, Any]:
        """The whole state: every session (and early change) with its versions, and the tombstones."""
        self.purge_expired()
        states = [
            {"sid": handle, "exp": self.expires[handle], "f": self._entries(handle, session)}
            for handle, session in self.sessions.items()
        ]
        states += [{"sid": handle, "exp": self.expires[handle], "f": entries} for handle, entries in self.early.items()]
        return {"node": self.node, "sessions": states, "tombstones": self.tombstones}

    def merge_snapshot(self, snapshot: dict[str, Any]) -> int:
        for handle, deleted in snapshot["tombstones"].items():
            self.merge({"sid": handle, "del": deleted})
        for state in snapshot["sessions"]:
            self.merge(state)
        return len(snapshot["sessions"])

    def purge_expired(self) -> int:
        dead = super().purge_expired()
        now = time.time()
        for handle in [h for h, deleted in self.tombstones.items() if now - deleted >= self.tombstone_keep]:
            del self.tombstones[handle]
        return dead
