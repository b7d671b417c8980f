"""sticky: sessions in this process's memory only. Another node does not know them; Nginx ip_hash keeps a client here.

One process per node, one event loop: every change is made without awaiting (replication's sync mode awaits its
peers only after it), so increments on one node are exact. A node restart loses its sessions, and a client moved
to another node (node down, or its address hashed elsewhere) must log in again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable
from typing import Any

from .base import Change, Limits, Session, SessionStore, new_id, stopped, too_many_keys


class MemoryStore(SessionStore):
    def __init__(self, limits: Limits):
        super().__init__(limits)
        self.sessions: dict[str, Session] = {}
        self.expires: dict[str, float] = {}
        self._purger: asyncio.Task | None = None

    async def start(self) -> None:
        self._purger = asyncio.create_task(self._purge_forever())

    async def close(self) -> None:
        await stopped(self._purger)

    async def ping(self) -> None:
        return None

    # -- the store's own state; replication hooks in by overriding _changed ---------------------------------------

    def _live(self, handle: str) -> Session | None:
        session = self.sessions.get(handle)
        if session is None:
            return None
        if self.expires[handle] <= time.time():
            self._forget(handle)
            return None
        self.expires[handle] = time.time() + self.limits.ttl
        return session

    def _forget(self, handle: str) -> None:
        self.sessions.pop(handle, None)
        self.expires.pop(handle, None)

    def _put(self, handle: str, session: Session, expires: float | None = None) -> None:
        self.sessions[handle] = session
        self.expires[handle] = expires if expires is not None else time.time() + self.limits.ttl

    def _changed(self, op: str, handle: str, **fields: Any) -> Awaitable[None] | None:
        """Called after every local change; the replicated store sends it to its peers and, in sync mode, returns
        what to await before answering (the peers' acknowledgement). The change itself is done before any await."""
        return None

    def purge_expired(self) -> int:
        now = time.time()
        dead = [handle for handle, expires in self.expires.items() if expires <= now]
        for handle in dead:
            self._forget(handle)
        return len(dead)

    async def _purge_forever(self) -> None:
        interval = max(1.0, min(60.0, self.limits.ttl / 4))
        while True:
            await asyncio.sleep(interval)
            self.purge_expired()

    # -- the interface ------------------------------------------------------------------------------------------

    async def create(self, session: Session) -> str:
        handle = new_id()
        self._put(handle, session)
        if (acked := self._changed("put", handle, session=session)) is not None:
            await acked
        return handle

    async def load(self, handle: str) -> Session | None:
        session = self._live(handle)
        return self._copy(session) if session is not None else None

    @staticmethod
    def _copy(session: Session) -> Session:
        # A copy the caller may read at leisure; data values are replaced, never changed in place, so one level
        # suffices (copy.deepcopy cost 13% of a request's time here).
        return dataclasses.replace(session, data=dict(session.data))

    async def increment(self, handle: str) -> Change[int] | None:
        session = self._live(handle)
        if session is None:
            return None
        session.counter += 1
        counter = session.counter  # this increment's value, whatever happens while waiting for the peers
        if (acked := self._changed("set", handle, field="counter", value=counter)) is not None:
            await acked
        return Change(counter)

    async def set_data(self, handle: str, key: str, value: Any) -> Change[None] | None:
        session = self._live(handle)
        if session is None:
            return None
        if key not in session.data and len(session.data) >= self.limits.max_data_keys:
            raise too_many_keys(self.limits.max_data_keys)
        session.data[key] = value
        if (acked := self._changed("data_set", handle, key=key, value=value)) is not None:
            await acked
        return Change(None)

    async def delete_data(self, handle: str, key: str) -> Change[bool] | None:
        session = self._live(handle)
        if session is None:
            return None
        existed = key in session.data
        session.data.pop(key, None)
        if (acked := self._changed("data_del", handle, key=key)) is not None:
            await acked
        return Change(existed)

    async def destroy(self, handle: str) -> None:
        self._forget(handle)
        if (acked := self._changed("del", handle)) is not None:
            await acked

    async def rotate(self, handle: str, user: str) -> str | None:
        session = self._live(handle)
        if session is None:
            return None
        self._forget(handle)
        acked = self._changed("del", handle)
        if session.user != user:
            if acked is not None:
                await acked
            return None
        # Each peer receives the deletion before the creation: the creation's acknowledgement covers both.
        return await self.create(session)
