"""database: one PostgreSQL row per session, through psycopg 3 and psycopg_pool.

- The counter is incremented in SQL (counter = counter + 1 ... RETURNING counter): no read-modify-write race.
- Data values live in one jsonb column and are changed key by key (jsonb_set, the - operator), in SQL as well.
- Expiry is a timestamp with an index; reads and increments slide it only when more than a tenth of SESSION_TTL has
  passed since the last slide (a write per read would double the cost of every read; an increment that leaves the
  indexed column alone is a cheap HOT update), every other change slides it.
- Expired rows are invisible to every query and purged by one node at a time (an advisory lock) every
  min(60 s, TTL/4).
- The schema is created on first use, under an advisory lock so that nodes starting together do not collide, unless
  the table exists: the kit's deploy creates it and gives it to the app's role, which owns only that table and may
  create nothing (deploys/postgres.py).
- Reads and increments, the hot paths, are batched (batching.py) and each kind has a connection of its own, a
  "lane", on which one prepared statement (generic plan) answers a whole batch with one row: a JSON object built by
  PostgreSQL, parsed with one json.loads. psycopg's cursor machinery (about 85 us of client CPU per statement here,
  plus a few per row) is skipped there, and so is psycopg's wait: the lane sends the prepared statement through the
  libpq wrapper, nonblocking, and the event loop watches its socket (postgres_lane.py). Everything else goes
  through the pool and cursors as usual.
- A server that accepts and acknowledges but answers nothing (a hung host, a frozen VM) fails requests within
  STORE_TIMEOUT (2 s), as Redis does: a lane's tick fails a statement out that long and cancels it on the server in
  the background, and the requests that waited behind it fail with it (not 2 s more per batch); the pool's work is
  given up after as long, psycopg's own cancel (up to 10 s against such a server) left to the background. The
  purge, which no request waits for, waits as long as it takes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import psycopg
import psycopg_pool
from psycopg.types.json import Jsonb

from .base import (
    SLIDE_AFTER,
    STORE_TIMEOUT,
    Change,
    Limits,
    Session,
    StoreUnavailable,
    is_valid_id,
    new_id,
    stopped,
    too_many_keys,
)
from .batching import Batcher, BatchingStore
from .postgres_lane import CONNECT, UNAVAILABLE, Hopeless, Lane, no_answer

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
ALTER TABLE sessions SET (fillfactor = 70);
"""

_TTL = "make_interval(secs => %(ttl)s)"
_LIVE = "id = %(id)s AND expires_at > now()"

# Reads and increments are batched (batching.py) and sent on their lanes (postgres_lane.py): one prepared statement
# answers every request that arrived while the previous statement of its kind was out, with one JSON object.
# $1: the handles, a text[] literal (ids are [A-Za-z0-9_-], nothing to quote); $2: SESSION_TTL in seconds.
_LANE_TTL = "make_interval(secs => $2::int)"
_SLIDE_DUE = f"now() + {_LANE_TTL} * {1 - SLIDE_AFTER}"  # an expiry before this is due a slide (base.SLIDE_AFTER)
# A read slides the expiry of the sessions due for it in the same statement (a data-modifying CTE runs whether or
# not the outer query reads it): one round trip per batch, never two. The slide skips rows that another transaction
# holds (SKIP LOCKED): that one is a change, which slides them itself, and a read that never waits for a row lock
# can never be part of a deadlock. Answer: {id: [username, counter, data, created]}, NULL when none is live.
LOAD_MANY = f"""WITH found AS (SELECT id, username, counter, data, created, expires_at < {_SLIDE_DUE} AS stale
                               FROM sessions WHERE id = ANY($1::text[]) AND expires_at > now()),
                     due AS (SELECT s.id FROM sessions s JOIN found f ON s.id = f.id
                             WHERE f.stale AND s.expires_at > now() FOR UPDATE OF s SKIP LOCKED),
                     slid AS (UPDATE sessions s SET expires_at = now() + {_LANE_TTL} FROM due WHERE s.id = due.id)
                SELECT json_object_agg(id, json_build_array(username, counter, data, created))::text FROM found"""
# A session asked to increment n times in one batch is incremented by n in one atomic UPDATE; its requests then get
# the n consecutive values, in the order they arrived. The expiry slides as on reads, when a tenth of the TTL has
# passed: an UPDATE that changes no indexed column is a HOT update (no new index entries), about half the server's
# work. Answer: {id: counter after the batch}, NULL when none is live.
INCREMENT_MANY = f"""WITH wanted AS (SELECT id, count(*) AS n FROM unnest($1::text[]) AS id GROUP BY id),
                          done AS (UPDATE sessions s SET counter = s.counter + w.n,
                                          expires_at = CASE WHEN s.expires_at < {_SLIDE_DUE}
                                                            THEN now() + {_LANE_TTL} ELSE s.expires_at END
                                   FROM wanted w WHERE s.id = w.id AND s.expires_at > now() RETURNING s.id, s.counter)
                     SELECT json_object_agg(id, counter)::text FROM done"""
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


class _ServerRestarted(StoreUnavailable):
    """A pooled connection of the server's previous run: its goodbye (AdminShutdown) came before anything else."""


def _is_hopeless(error: BaseException) -> bool:
    return isinstance(error, Hopeless)


def _settle(future: asyncio.Future, _: Any) -> None:
    if not future.done():
        future.set_result(None)


# psycopg_pool retries a lost connection after 1, 2, 4, 8 ... s. After PostgreSQL was down a few seconds (a crash and
# systemd's restart), the pool stayed empty for about as long again while PostgreSQL answered: the app answered 503
# for 10 s more on the lab. A retry every RECONNECT_DELAY instead: a refused connect costs next to nothing, and the
# app serves within a retry of PostgreSQL's return. And it never gives up: a pool that gave up after its
# reconnect_timeout would stay short of connections after a long outage.
RECONNECT_DELAY = 0.25
NEVER = 10 * 365 * 86400.0


def _steady_retries() -> None:
    """psycopg_pool's own knobs for its retries (class attributes; this process has one pool)."""
    attempt = psycopg_pool.base.AttemptWithBackoff
    attempt.INITIAL_DELAY, attempt.DELAY_BACKOFF = RECONNECT_DELAY, 1.0


class PostgresStore(BatchingStore):
    def __init__(self, limits: Limits, url: str, pool_size: int, poll: float = 0.0):
        super().__init__(limits)
        self.url = url
        self.pool = psycopg_pool.AsyncConnectionPool(
            url,
            min_size=pool_size,
            max_size=pool_size,
            open=False,
            timeout=STORE_TIMEOUT,
            reconnect_timeout=NEVER,
            kwargs=dict(CONNECT),
        )
        self._schema_ready = False
        self._pool_check = asyncio.Lock()
        self.pool_checked_after: float | None = None  # monotonic time of the last test of the idle connections
        self._purger: asyncio.Task | None = None
        self._background: set[asyncio.Future] = set()  # _in_background
        self._load_lane = Lane(self, b"session_kit_load_many", LOAD_MANY)
        self._increment_lane = Lane(self, b"session_kit_increment_many", INCREMENT_MANY)
        # One statement of each kind in flight: the requests that arrive meanwhile make the next batch.
        # A statement that got no answer in time fails the requests that waited behind it too: each batch would
        # wait as long again, one after another.
        self._loads = Batcher(self._load_many, concurrency=1, poll=poll, shares=_is_hopeless)
        self._increments = Batcher(self._increment_many, concurrency=1, poll=poll, shares=_is_hopeless)

    async def start(self) -> None:
        _steady_retries()
        await self.pool.open(wait=False)
        self._purger = asyncio.create_task(self._purge_forever())

    async def close(self) -> None:
        await stopped(self._purger)
        await self._load_lane.close()
        await self._increment_lane.close()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.pool.close()

    def _in_background(self, work: Awaitable[Any]) -> asyncio.Future:
        """Work that must end but that no request waits for, kept referenced until it does (cancelled by close())."""
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._done_in_background)
        return task

    def _done_in_background(self, task: asyncio.Future) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("background work failed: %r", task.exception())

    async def _bounded(
        self, work: Awaitable[Any], timeout: float | None = None, dispose: Callable[[Any], Awaitable[Any]] | None = None
    ) -> Any:
        """work's result, or Hopeless after `timeout` seconds. The work runs as a task of its own, so that the
        request can leave it without waiting for it (a task, a future and a timer: about 9 us of CPU, where
        asyncio.wait took 20). Work left behind (timed out, or its request cancelled) is cancelled in the
        background: psycopg's cancel of a statement in progress waits for the server (up to 10 s, then it closes
        the connection), so that a statement given up is not applied later when the server can still say so; a
        result that came all the same goes to `dispose` (a lane's new connection: closed)."""
        timeout = STORE_TIMEOUT if timeout is None else timeout
        loop = asyncio.get_running_loop()
        task = loop.create_task(work)
        settled = loop.create_future()
        task.add_done_callback(functools.partial(_settle, settled))
        timer = loop.call_later(timeout, _settle, settled, None)
        try:
            await settled
        except asyncio.CancelledError:
            self._leave(task, dispose)
            raise
        finally:
            timer.cancel()
        if not task.done():
            self._leave(task, dispose)
            raise no_answer(timeout)
        return task.result()

    def _leave(self, task: asyncio.Task, dispose: Callable[[Any], Awaitable[Any]] | None) -> None:
        task.cancel()
        if dispose is None:
            self._in_background(task)
            return

        async def disposed() -> None:
            try:
                result = await task
            except BaseException:
                return
            await dispose(result)

        self._in_background(disposed())

    @contextlib.asynccontextmanager
    async def _cursor(self, transaction: bool = False):
        try:
            async with self.pool.connection() as conn:
                await self._ensure_schema(conn)
                async with conn.transaction() if transaction else contextlib.nullcontext():
                    async with conn.cursor() as cur:
                        yield cur
        except psycopg.errors.AdminShutdown as error:
            raise _ServerRestarted(f"postgresql: {str(error).strip()}") from None
        except UNAVAILABLE as error:
            raise StoreUnavailable(f"postgresql: {str(error).strip() or type(error).__name__}") from None

    async def _pooled(self, work: Callable[[psycopg.AsyncCursor], Awaitable[Any]], transaction: bool = False) -> Any:
        """work(cursor) on a pooled connection, each try within STORE_TIMEOUT. Every idle connection of the pool dies
        with a server restart and would fail one request each: at the first such failure, the pool tests its idle
        connections and replaces the dead ones (one test at a time), and the work goes again once. The pool's
        statements may go twice: each sets or deletes what it names, or inserts a new random id (at worst an orphan
        row the purge removes)."""
        try:
            return await self._bounded(self._on_cursor(work, transaction))
        except _ServerRestarted:
            async with self._pool_check:
                if self.pool_checked_after is None or self.pool_checked_after < time.monotonic() - 1:
                    # set first: the requests queued behind a check that failed do not run one each
                    self.pool_checked_after = time.monotonic()
                    await self._bounded(self.pool.check())
            return await self._bounded(self._on_cursor(work, transaction))

    async def _on_cursor(self, work: Callable[[psycopg.AsyncCursor], Awaitable[Any]], transaction: bool) -> Any:
        async with self._cursor(transaction) as cur:
            return await work(cur)

    async def _ensure_schema(self, conn: psycopg.AsyncConnection) -> None:
        if not self._schema_ready:
            exists = await (await conn.execute("SELECT to_regclass('sessions') IS NOT NULL")).fetchone()
            if not (exists and exists[0]):
                await conn.execute(SCHEMA)
            self._schema_ready = True

    def _args(self, handle: str, **extra: Any) -> dict[str, Any]:
        return {"id": handle, "ttl": self.limits.ttl, **extra}

    async def _execute(self, query: str, args: dict[str, Any]) -> None:
        async def work(cur):
            await cur.execute(query, args)

        await self._pooled(work)

    async def _one(self, query: str, args: dict[str, Any]) -> tuple | None:
        async def work(cur):
            await cur.execute(query, args)
            return await cur.fetchone()

        return await self._pooled(work)

    async def _all(self, query: str, args: dict[str, Any]) -> list[tuple]:
        async def work(cur):
            await cur.execute(query, args)
            return await cur.fetchall()

        return await self._pooled(work)

    async def ping(self) -> None:
        await self._one("SELECT 1", {})

    def _row(self, handle: str, session: Session) -> dict[str, Any]:
        return self._args(
            handle, user=session.user, counter=session.counter, data=Jsonb(session.data), created=session.created
        )

    async def create(self, session: Session) -> str:
        handle = new_id()
        await self._execute(INSERT, self._row(handle, session))
        return handle

    async def _load_many(self, handles: Sequence[str]) -> list[Session | None]:
        wanted = list(set(handles))
        # After a server restart the lane's connection is dead and fails once before a new one is opened; a read is
        # safe to try again (a change is not: it may have been applied).
        try:
            found = await self._load_lane.run(wanted)
        except Hopeless:
            raise
        except StoreUnavailable:
            found = await self._load_lane.run(wanted)
        found = found or {}
        return [
            None
            if (row := found.get(handle)) is None
            else Session(user=row[0], counter=row[1], data=row[2], created=row[3])
            for handle in handles
        ]

    async def _increment_many(self, handles: Sequence[str]) -> list[Change[int] | None]:
        counters = await self._increment_lane.run(handles) or {}
        # handle -> the first of the n values its requests get
        next_value = {
            handle: counters[handle] - n + 1 for handle, n in collections.Counter(handles).items() if handle in counters
        }
        results: list[Change[int] | None] = []
        for handle in handles:
            if handle in next_value:
                results.append(Change(next_value[handle]))
                next_value[handle] += 1
            else:
                results.append(None)
        return results

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

        async def work(cur):  # one transaction: a restart halfway through rolls it back, and it may go again
            await cur.execute(TAKE, self._args(handle))
            row = await cur.fetchone()
            if row is None or row[0] != user:
                return None
            new = new_id()
            await cur.execute(INSERT, self._row(new, Session(user=row[0], counter=row[1], data=row[2], created=row[3])))
            return new

        return await self._pooled(work, transaction=True)

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
