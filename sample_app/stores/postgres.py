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
  libpq wrapper, nonblocking, and the event loop watches its socket (_Lane). Everything else goes through the pool and
  cursors as usual.
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
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import psycopg
import psycopg_pool
from psycopg import pq
from psycopg.generators import execute as _execute_generator
from psycopg.generators import send as _send_generator
from psycopg.types.json import Jsonb

from .base import (
    SLIDE_AFTER,
    STORE_TIMEOUT,
    Change,
    Limits,
    Session,
    SessionStore,
    StoreUnavailable,
    is_valid_id,
    new_id,
    too_many_keys,
)
from .batching import Batcher

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

# Reads and increments are batched (batching.py) and sent on their lanes (_Lane): one prepared statement answers
# every request that arrived while the previous statement of its kind was out, with one JSON object.
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

# Every connection of the store, the lanes' and the pool's. A server that stops answering without closing (a network
# cut, a host gone) sends no reset: the kernel gives the connection up after 10 s of unacknowledged data, or 5 s idle
# plus 3 unanswered keepalives 2 s apart, instead of TCP's 15 minutes. (A frozen process on a live host is another
# matter: its kernel acknowledges everything; STORE_TIMEOUT bounds what a request waits for it.)
_CONNECT = {
    "autocommit": True,
    "connect_timeout": 2,
    "tcp_user_timeout": 10_000,
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
}

_UNAVAILABLE = (psycopg.OperationalError, psycopg_pool.PoolTimeout, psycopg.errors.AdminShutdown)


def _before_command_complete(error: psycopg.Error) -> bool:
    """The error came with no result before it: the server never completed the statement (so never committed it)."""
    return getattr(error, "results_before", None) == 0


class _ServerRestarted(StoreUnavailable):
    """A pooled connection of the server's previous run: its goodbye (AdminShutdown) came before anything else."""


class _Hopeless(StoreUnavailable):
    """A failure that a second try at once would meet again: no answer within STORE_TIMEOUT (a server that accepts
    and acknowledges but answers nothing: a hung host, a frozen VM), or no new connection."""


def _is_hopeless(error: BaseException) -> bool:
    return isinstance(error, _Hopeless)


async def _close(conn: psycopg.AsyncConnection) -> None:
    await conn.close()


def _settle(future: asyncio.Future, _: Any) -> None:
    if not future.done():
        future.set_result(None)


def _no_answer(seconds: float) -> _Hopeless:
    return _Hopeless(f"postgresql: no answer within {seconds:g} s")


_ROLLBACK_RETRIES = 2


class _Lane:
    """A connection of its own for one batched statement, prepared once, used by one batch at a time (the Batcher's
    concurrency is 1). It is opened on first use and dropped on any connection error; the next batch opens another.

    The statement's round trip is libpq's, nonblocking, with the connection's socket watched by the event loop from
    the first statement on (one registration for the connection's life while the server says nothing unasked), not
    psycopg's wait, which registers the socket, unregisters it, arms a timer and polls once per statement: about 40 us
    less of the app's CPU per statement, a statement answering 8-11 requests under wrk -c32 (`python -m
    benchmarks.postgres_lane`; README, the database section under "Benchmark"; issue 13).

    A server that has gone: its goodbye (a FATAL error) ends the statement at once, as the closed connection would.
    uvloop closes its watch of a socket in error after one last callback; a tick every TICK seconds while statements
    are out reads the socket of a statement out since the previous tick and watches it anew, so that no statement can
    wait on a watch that is gone."""

    TICK = 0.1  # seconds (_tick)

    def __init__(self, store: PostgresStore, name: bytes, sql: str):
        self.store, self.name, self.sql = store, name, sql.encode()
        self.conn: psycopg.AsyncConnection | None = None
        self.loop: asyncio.AbstractEventLoop | None = None  # the loop watching the connection's socket
        self.fd = -1
        self.watching = False
        self.waiter: asyncio.Future | None = None  # the statement out, answered by _readable
        self.results: list[pq.abc.PGresult] = []
        self.ticking = False  # a tick is due on self.loop
        self.ticked: asyncio.Future | None = None  # the statement out at the last tick
        self.closed = False  # by close(): no connection is opened again
        self.sent_at = 0.0  # loop time the statement out was sent (_tick fails it after STORE_TIMEOUT)

    async def _open(self) -> psycopg.AsyncConnection:
        conn = await psycopg.AsyncConnection.connect(self.store.url, **_CONNECT)
        try:
            await self.store._ensure_schema(conn)
            # A generic plan, made once: PostgreSQL would otherwise plan these statements anew on every execution
            # (a custom plan costs it more than running the statement: 130 us against 10 us for a batch of one).
            await conn.execute("SET plan_cache_mode = force_generic_plan")
            conn.pgconn.send_prepare(self.name, self.sql)
            self._check(await conn.wait(_execute_generator(conn.pgconn)), conn, pq.ExecStatus.COMMAND_OK)
        except BaseException:
            await conn.close()
            raise
        if self.closed:  # closed while this one was being opened
            await conn.close()
            raise StoreUnavailable("postgresql: the store is closed")
        conn.pgconn.nonblocking = 1
        loop = asyncio.get_running_loop()
        if loop is not self.loop:  # a tick due on another loop never comes
            self.ticking, self.ticked = False, None
        self.loop, self.fd, self.watching, self.waiter = loop, conn.pgconn.socket, False, None
        return conn

    def _watch(self) -> None:
        if not self.watching:
            self.loop.add_reader(self.fd, self._readable)
            self.watching = True

    def _unwatch(self) -> None:
        if self.watching:
            self.watching = False
            if not self.loop.is_closed():
                with contextlib.suppress(OSError, ValueError):  # a socket libpq closed on a protocol error
                    self.loop.remove_reader(self.fd)

    def _answer(self, outcome: list | BaseException) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done() and not waiter.get_loop().is_closed():
            if isinstance(outcome, BaseException):
                waiter.set_exception(outcome)
            else:
                waiter.set_result(outcome)

    def _let_go(self) -> psycopg.AsyncConnection | None:
        """The lane's connection, taken off the lane: unwatched, and a statement out on it failed."""
        conn, self.conn = self.conn, None
        if conn is not None:
            self._unwatch()
            self._answer(psycopg.OperationalError("the connection was dropped"))
        return conn

    async def _drop(self, cancel: bool = False) -> None:
        """Closes the lane's connection; with `cancel`, a statement the server is still running is cancelled there
        first (shielded). The connection is off the lane before anything is awaited: a second cancel of the caller
        must not leave it there."""
        conn = self._let_go()
        if conn is not None:
            await self._end(conn, cancel)

    @staticmethod
    async def _end(conn: psycopg.AsyncConnection, cancel: bool) -> None:
        try:
            if cancel and conn.pgconn.transaction_status == pq.TransactionStatus.ACTIVE:
                with contextlib.suppress(Exception):
                    await asyncio.shield(conn.cancel_safe(timeout=STORE_TIMEOUT))
        finally:
            with contextlib.suppress(Exception):
                await conn.close()

    def _readable(self) -> None:
        if self.waiter is None or self.conn is None:
            # The server spoke with no statement out: its goodbye before a restart, most likely. It stays unread, for
            # the next statement to find before its own answer (how run() tells that nothing was applied); unwatched
            # until then, or the loop would call this again on every turn.
            self._unwatch()
            return
        pgconn = self.conn.pgconn
        try:
            pgconn.consume_input()
            while not pgconn.is_busy():
                result = pgconn.get_result()
                if result is None:  # the statement's results are all in
                    break
                self.results.append(result)
                if (
                    result.status == pq.ExecStatus.FATAL_ERROR
                    and result.error_field(pq.DiagnosticField.SEVERITY_NONLOCALIZED) == b"FATAL"
                ):
                    break  # the server's goodbye: it closes the connection, nothing more comes
            else:
                return  # more to come
        except psycopg.Error as error:
            # The connection ended. If the server said why first (a FATAL_ERROR result), that is the answer, as
            # psycopg's own fetch has it; otherwise the loss is.
            if not any(result.status == pq.ExecStatus.FATAL_ERROR for result in self.results):
                self._unwatch()
                self._answer(error)
                return
        if pgconn.status != pq.ConnStatus.OK:
            self._unwatch()  # libpq closed the socket (or will): no watch on its number, which a new socket may take
        self._answer(self.results)

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        if loop is not self.loop or loop.is_closed():
            return  # a tick of a loop gone by: _open let go of it
        if self.waiter is None:
            self.ticking, self.ticked = False, None
            return
        try:
            # Out since the last tick, and watched (not while psycopg's wait sends a large batch): the watch may be
            # gone, so a new one (for this statement and the next), then read what has come.
            if self.waiter is self.ticked and self.watching:
                self._unwatch()
                self._watch()
                self._readable()
            if self.waiter is not None and loop.time() - self.sent_at > STORE_TIMEOUT:
                if self.watching:
                    self._readable()  # an answer that came while the loop was held up, on a loop running timers first
                if self.waiter is not None:
                    self._answer(_no_answer(STORE_TIMEOUT))  # run() lets the connection go, cancels in the background
        finally:
            self.ticked = self.waiter
            loop.call_later(self.TICK, self._tick, loop)

    async def _round_trip(self, conn: psycopg.AsyncConnection, params: list[bytes]) -> list:
        pgconn = conn.pgconn
        self.results = []
        waiter = self.waiter = self.loop.create_future()
        self.sent_at = self.loop.time()
        try:
            if not self.ticking:
                self.ticking, self.ticked = True, None
                self.loop.call_later(self.TICK, self._tick, self.loop)
            pgconn.send_query_prepared(self.name, params)
            if pgconn.flush():  # the socket's buffer is full (a very large batch): psycopg's wait sends the rest
                self._unwatch()  # its wait takes the socket for itself, and lets go of it when done
                await conn.wait(_send_generator(pgconn), timeout=STORE_TIMEOUT)
            self._watch()
            return await waiter
        finally:
            if self.waiter is waiter:
                self.waiter = None
            if waiter.done() and not waiter.cancelled():
                waiter.exception()  # retrieved: a failure nobody awaited (a cancel meanwhile) is not logged as lost

    @staticmethod
    def _check(results: list, conn: psycopg.AsyncConnection, status: pq.ExecStatus) -> Any:
        result = results[-1] if results else None
        if result is None or result.status != status:
            if result is not None and result.status == pq.ExecStatus.FATAL_ERROR:
                error = psycopg.errors.error_from_result(result, encoding=conn.pgconn._encoding)
                error.results_before = len(results) - 1  # results (a CommandComplete) that came before the error
                raise error
            raise psycopg.OperationalError(f"unexpected result: {result and result.status}")
        return result

    async def run(self, handles: Sequence[str]) -> Any:
        """The statement's one value, parsed (None: SQL NULL)."""
        params = [("{" + ",".join(handles) + "}").encode(), str(self.store.limits.ttl).encode()]
        loop = asyncio.get_running_loop()  # once per batch (a getpid() on Python 3.11: see batching.py)
        for attempt in range(_ROLLBACK_RETRIES + 1):
            if self.closed:
                raise StoreUnavailable("postgresql: the store is closed")
            try:
                if self.conn is None or self.conn.closed or self.loop is not loop:
                    await self._drop()
                    try:  # connect_timeout bounds the connection; the statements that prepare it, the bound here
                        self.conn = await self.store._bounded(self._open(), 2 * STORE_TIMEOUT, dispose=_close)
                    except StoreUnavailable as error:
                        raise _Hopeless(str(error)) from None
                    except _UNAVAILABLE as error:
                        raise _Hopeless(f"postgresql: {str(error).strip() or type(error).__name__}") from None
                conn = self.conn
                result = self._check(await self._round_trip(conn, params), conn, pq.ExecStatus.TUPLES_OK)
                break
            except psycopg.errors.AdminShutdown as error:
                # The server's goodbye was waiting on a connection of its previous run (a restart): if it came before
                # the statement's CommandComplete, which PostgreSQL sends before it commits, nothing was applied and
                # even a change may go again, once, on a new connection.
                await self._drop()
                if attempt or not _before_command_complete(error):
                    raise StoreUnavailable(f"postgresql: {str(error).strip()}") from None
            except psycopg.errors.TransactionRollback as error:
                # A deadlock or serialization failure rolled the whole statement back: nothing was applied, so even a
                # change may go again. (Increment batches of several nodes that share sessions can deadlock; one
                # node never deadlocks with itself: one batch of a kind at a time.) The connection is still good.
                if attempt == _ROLLBACK_RETRIES:
                    raise StoreUnavailable(f"postgresql: {str(error).strip()}") from None
            except _Hopeless:
                # No answer in time: the statement is cancelled on the server (so that it is not applied after its
                # requests were failed, if the server ever answers) in the background, where no request waits.
                conn = self._let_go()
                if conn is not None:
                    self.store._in_background(self._end(conn, cancel=True))
                raise
            except BaseException as error:
                # Whatever else happened (a dead server, a cancelled task halfway through a round trip), the
                # connection's state is unknown: the next batch starts from a new one. A statement cancelled while
                # the server runs it (an increment waiting for a row lock) is cancelled there too, as psycopg's wait
                # did, so that it is not applied after its requests were failed.
                await self._drop(cancel=isinstance(error, asyncio.CancelledError))
                if isinstance(error, (*_UNAVAILABLE, OSError)):
                    raise StoreUnavailable(f"postgresql: {str(error).strip() or type(error).__name__}") from None
                raise
        value = result.get_value(0, 0)
        return None if value is None else json.loads(value)

    async def close(self) -> None:
        self.closed = True
        conn = self._let_go()
        if conn is not None:
            await conn.close()


class PostgresStore(SessionStore):
    def __init__(self, limits: Limits, url: str, pool_size: int, poll: float = 0.0):
        super().__init__(limits)
        self.url = url
        self.pool = psycopg_pool.AsyncConnectionPool(
            url, min_size=pool_size, max_size=pool_size, open=False, timeout=STORE_TIMEOUT, kwargs=dict(_CONNECT)
        )
        self._schema_ready = False
        self._pool_check = asyncio.Lock()
        self.pool_checked_after: float | None = None  # monotonic time of the last test of the idle connections
        self._purger: asyncio.Task | None = None
        self._background: set[asyncio.Future] = set()  # _in_background
        self._load_lane = _Lane(self, b"session_kit_load_many", LOAD_MANY)
        self._increment_lane = _Lane(self, b"session_kit_increment_many", INCREMENT_MANY)
        # One statement of each kind in flight: the requests that arrive meanwhile make the next batch.
        # A statement that got no answer in time fails the requests that waited behind it too: each batch would
        # wait as long again, one after another.
        self._loads = Batcher(self._load_many, concurrency=1, poll=poll, shares=_is_hopeless)
        self._increments = Batcher(self._increment_many, concurrency=1, poll=poll, shares=_is_hopeless)

    async def start(self) -> None:
        await self.pool.open(wait=False)
        self._purger = asyncio.create_task(self._purge_forever())

    async def close(self) -> None:
        if self._purger:
            self._purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purger
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
        """work's result, or _Hopeless after `timeout` seconds. The work runs as a task of its own, so that the
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
            raise _no_answer(timeout)
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
        except _UNAVAILABLE as error:
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
        except _Hopeless:
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
