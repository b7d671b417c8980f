"""The database store's lanes: one connection per batched statement (reads, increments), driven through libpq
without psycopg's cursors and wait (postgres.py: PostgresStore; why below, in Lane).

Also what the store's pool shares with them: the connection options (CONNECT), the errors that mean the server cannot
be reached (UNAVAILABLE), and the failure that a second try at once would meet again (Hopeless).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import psycopg
import psycopg_pool
from psycopg import pq
from psycopg.generators import execute as _execute_generator
from psycopg.generators import send as _send_generator

from .base import STORE_TIMEOUT, StoreUnavailable

if TYPE_CHECKING:
    from .postgres import PostgresStore

# Every connection of the store, the lanes' and the pool's. A server that stops answering without closing (a network
# cut, a host gone) sends no reset: the kernel gives the connection up after 10 s of unacknowledged data, or 5 s idle
# plus 3 unanswered keepalives 2 s apart, instead of TCP's 15 minutes. (A frozen process on a live host is another
# matter: its kernel acknowledges everything; STORE_TIMEOUT bounds what a request waits for it.)
CONNECT = {
    "autocommit": True,
    "connect_timeout": 2,
    "tcp_user_timeout": 10_000,
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
}

UNAVAILABLE = (psycopg.OperationalError, psycopg_pool.PoolTimeout, psycopg.errors.AdminShutdown)


def _before_command_complete(error: psycopg.Error) -> bool:
    """The error came with no result before it: the server never completed the statement (so never committed it)."""
    return getattr(error, "results_before", None) == 0


class Hopeless(StoreUnavailable):
    """A failure that a second try at once would meet again: no answer within STORE_TIMEOUT (a server that accepts
    and acknowledges but answers nothing: a hung host, a frozen VM), or no new connection."""


async def _close(conn: psycopg.AsyncConnection) -> None:
    await conn.close()


def no_answer(seconds: float) -> Hopeless:
    return Hopeless(f"postgresql: no answer within {seconds:g} s")


_ROLLBACK_RETRIES = 2


class Lane:
    """A connection of its own for one batched statement, prepared once, used by one batch at a time (the Batcher's
    concurrency is 1). It is opened on first use and dropped on any connection error; the next batch opens another.

    The statement's round trip is libpq's, nonblocking, with the connection's socket watched by the event loop from
    the first statement on (one registration for the connection's life while the server says nothing unasked), not
    psycopg's wait, which registers the socket, unregisters it, arms a timer and polls once per statement: about 40 us
    less of the app's CPU per statement, a statement answering 8-11 requests under wrk -c32 (`python -m
    benchmarks.postgres_lane`; README, the database section under "Benchmark").

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
        conn = await psycopg.AsyncConnection.connect(self.store.url, **CONNECT)
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
                    self._answer(no_answer(STORE_TIMEOUT))  # run() lets the connection go, cancels in the background
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
                        raise Hopeless(str(error)) from None
                    except UNAVAILABLE as error:
                        raise Hopeless(f"postgresql: {str(error).strip() or type(error).__name__}") from None
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
            except Hopeless:
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
                if isinstance(error, (*UNAVAILABLE, OSError)):
                    raise StoreUnavailable(f"postgresql: {str(error).strip() or type(error).__name__}") from None
                raise
        value = result.get_value(0, 0)
        return None if value is None else json.loads(value)

    async def close(self) -> None:
        self.closed = True
        conn = self._let_go()
        if conn is not None:
            await conn.close()
