"""database: one PostgreSQL row per session, through psycopg 3 and psycopg_pool.

- The counter is incremented in SQL (counter = counter + 1 ... RETURNING counter): no read-modify-write race.
- Data values live in one jsonb column and are changed key by key (jsonb_set, the - operator), in SQL as well.
- Expiry is a timestamp with an index; reads slide it only when more than a tenth of SESSION_TTL has passed since the
  last slide (a write per read would double the cost of every read), every change slides it.
- Expired rows are invisible to every query and purged by one node at a time (an advisory lock) every
  min(60 s, TTL/4).
- The schema is created on first use, under an advisory lock so that nodes starting together do not collide.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Sequence

import psycopg
import psycopg_pool
from psycopg.types.json import Jsonb

from .batching import Batcher
from .base import Change, Limits, Session, SessionStore, StoreUnavailable, is_valid_id, new_id, too_many_keys

log = logging.getLogger("sample_app.database")

_LOCK_SCHEMA, _LOCK_PURGE = 7_201_001, 7_201_002

SCHEMA = f"""
SELECT pg_advisory_xact_lock({_LOCK_SCHEMA});
CREATE TABLE IF NOT EXISTS sessions (
    id          text PRIMARY KEY,
    username    text NOT NULL,
    counter     bigint NOT NULL DEFAULT 0,
    data        jsonb NOT NULL DEFAULT '{{}}',
    created     double precision NOT NULL,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_expires_at ON sessions (expires_at);
"""

_TTL = "make_interval(secs => %(ttl)s)"
_LIVE = "id = %(id)s AND expires_at > now()"

# Reads and increments are batched (batching.py): one statement answers every request of one event-loop turn.
LOAD_MANY = f"""SELECT id, username, counter, data, created, expires_at < now() + {_TTL} * 0.9 AS stale
                FROM sessions WHERE id = ANY(%(ids)s) AND expires_at > now()"""
SLIDE_MANY = f"UPDATE sessions SET expires_at = now() + {_TTL} WHERE id = ANY(%(ids)s) AND expires_at > now()"
# A session asked to increment n times in one batch is incremented by n in one atomic UPDATE; its requests then get
# the n consecutive values, in the order they arrived.
INCREMENT_MANY = f"""WITH wanted AS (SELECT id, count(*) AS n FROM unnest(%(ids)s::text[]) AS id GROUP BY id)
                     UPDATE sessions s SET counter = s.counter + w.n, expires_at = now() + {_TTL}
                     FROM wanted w WHERE s.id = w.id AND s.expires_at > now()
                     RETURNING s.id, s.counter, w.n"""
INSERT = f"""INSERT INTO sessions (id, username, counter, data, created, expires_at)
             VALUES (%(id)s, %(user)s, %(counter)s, %(data)s, %(created)s, now() + {_TTL})"""
SET_DATA = f"""UPDATE sessions SET data = jsonb_set(data, ARRAY[%(key)s], %(value)s), expires_at = now() + {_TTL}
               WHERE {_LIVE} AND (data ? %(key)s OR (SELECT count(*) FROM jsonb_object_keys(data)) < %(max)s)
               RETURNING 1"""
EXISTS = f"SELECT 1 FROM sessions WHERE {_LIVE}"
DELETE_DATA = f"""UPDATE sessions s SET data = s.data - %(key)s, expires_at = now() + {_TTL}
                  FROM (SELECT id, data ? %(key)s AS had FROM sessions WHERE {_LIVE} FOR UPDATE) old
                  WHERE s.id = old.id RETURNING old.had"""
DESTROY = "DELETE FROM sessions WHERE id = %(id)s"
TAKE = f"DELETE FROM sessions WHERE {_LIVE} RETURNING username, counter, data, created"
PURGE = f"""SELECT pg_try_advisory_xact_lock({_LOCK_PURGE}) AS mine"""
PURGE_ROWS = "DELETE FROM sessions WHERE expires_at <= now()"

_UNAVAILABLE = (psycopg.OperationalError, psycopg_pool.PoolTimeout, psycopg.errors.AdminShutdown)


class PostgresStore(SessionStore):
    def __init__(self, limits: Limits, url: str, pool_size: int):
        super().__init__(limits)
        self.pool = psycopg_pool.AsyncConnectionPool(
            url, min_size=pool_size, max_size=pool_size, open=False, timeout=2.0,
            kwargs={"autocommit": True, "connect_timeout": 2})
        self._schema_ready = False
        self._purger: asyncio.Task | None = None
        self._loads = Batcher(self._load_many)
        self._increments = Batcher(self._increment_many)

    async def start(self) -> None:
        await self.pool.open(wait=False)
        self._purger = asyncio.create_task(self._purge_forever())

    async def close(self) -> None:
        if self._purger:
            self._purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purger
        await self.pool.close()

    @contextlib.asynccontextmanager
    async def _cursor(self, transaction: bool = False):
        try:
            async with self.pool.connection() as conn:
                if not self._schema_ready:
                    await conn.execute(SCHEMA)
                    self._schema_ready = True
                async with (conn.transaction() if transaction else contextlib.nullcontext()):
                    async with conn.cursor() as cur:
                        yield cur
        except _UNAVAILABLE as error:
            raise StoreUnavailable(f"postgresql: {str(error).strip() or type(error).__name__}") from None

    def _args(self, handle: str, **extra: Any) -> dict[str, Any]:
        return {"id": handle, "ttl": self.limits.ttl, **extra}

    async def _execute(self, query: str, args: dict[str, Any]) -> None:
        async with self._cursor() as cur:
            await cur.execute(query, args)

    async def _one(self, query: str, args: dict[str, Any]) -> tuple | None:
        async with self._cursor() as cur:
            await cur.execute(query, args)
            return await cur.fetchone()

    async def _all(self, query: str, args: dict[str, Any]) -> list[tuple]:
        async with self._cursor() as cur:
            await cur.execute(query, args)
            return await cur.fetchall()

    async def ping(self) -> None:
        await self._one("SELECT 1", {})

    def _row(self, handle: str, session: Session) -> dict[str, Any]:
        return self._args(handle, user=session.user, counter=session.counter, data=Jsonb(session.data),
                          created=session.created)

    async def create(self, session: Session) -> str:
        handle = new_id()
        await self._execute(INSERT, self._row(handle, session))
        return handle

    async def _load_many(self, handles: Sequence[str]) -> list[Session | None]:
        args = {"ids": list(set(handles)), "ttl": self.limits.ttl}
        # After a server restart every pooled connection is dead and fails once before the pool replaces it.
        # A read is safe to try again, past each dead connection; a change is not (it may have been applied).
        for attempt in range(self.pool.max_size + 1):
            try:
                found = await self._all(LOAD_MANY, args)
                break
            except StoreUnavailable:
                if attempt == self.pool.max_size:
                    raise
        rows = {row[0]: row for row in found}
        stale = [handle for handle, row in rows.items() if row[5]]
        if stale:
            await self._execute(SLIDE_MANY, {**args, "ids": stale})
        return [None if (row := rows.get(handle)) is None else
                Session(user=row[1], counter=row[2], data=row[3], created=row[4]) for handle in handles]

    async def _increment_many(self, handles: Sequence[str]) -> list[Change[int] | None]:
        rows = await self._all(INCREMENT_MANY, {"ids": list(handles), "ttl": self.limits.ttl})
        # handle -> the first of the n values its requests get
        next_value = {handle: counter - n + 1 for handle, counter, n in rows}
        results: list[Change[int] | None] = []
        for handle in handles:
            if handle in next_value:
                results.append(Change(next_value[handle]))
                next_value[handle] += 1
            else:
                results.append(None)
        return results

    async def load(self, handle: str) -> Session | None:
        if not is_valid_id(handle):
            return None
        return await self._loads.submit(handle)

    async def increment(self, handle: str) -> Change[int] | None:
        if not is_valid_id(handle):
            return None
        return await self._increments.submit(handle)

    async def set_data(self, handle: str, key: str, value: Any) -> Change[None] | None:
        if not is_valid_id(handle):
            return None
        args = self._args(handle, key=key, value=Jsonb(value), max=self.limits.max_data_keys)
        if await self._one(SET_DATA, args) is not None:
            return Change(None)
        if await self._one(EXISTS, args) is not None:
            raise too_many_keys(self.limits.max_data_keys)
        return None

    async def delete_data(self, handle: str, key: str) -> Change[bool] | None:
        if not is_valid_id(handle):
            return None
        row = await self._one(DELETE_DATA, self._args(handle, key=key))
        return None if row is None else Change(bool(row[0]))

    async def destroy(self, handle: str) -> None:
        if is_valid_id(handle):
            await self._execute(DESTROY, self._args(handle))

    async def rotate(self, handle: str, user: str) -> str | None:
        if not is_valid_id(handle):
            return None
        async with self._cursor(transaction=True) as cur:
            await cur.execute(TAKE, self._args(handle))
            row = await cur.fetchone()
            if row is None or row[0] != user:
                return None
            new = new_id()
            await cur.execute(INSERT, self._row(new, Session(user=row[0], counter=row[1], data=row[2], created=row[3])))
            return new

    async def purge_expired(self) -> int:
        async with self._cursor(transaction=True) as cur:
            await cur.execute(PURGE)
            if not (await cur.fetchone())[0]:
                return 0  # another node is purging
            await cur.execute(PURGE_ROWS)
            return cur.rowcount

    async def _purge_forever(self) -> None:
        interval = max(1.0, min(60.0, self.limits.ttl / 4))
        while True:
            await asyncio.sleep(interval)
            try:
                purged = await self.purge_expired()
            except StoreUnavailable as error:
                log.warning("purge skipped: %s", error)
                continue
            if purged:
                log.info("purged %d expired sessions", purged)
