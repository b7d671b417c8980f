"""A lean HTTP/1.1 link to one replication peer: one kept-alive connection, requests written at once and answered
in order (pipelined), parsed by httptools (uvicorn's parser).

Why not httpx on this path: in sync mode every change waits for a batch of deltas to be acknowledged by each peer,
and one httpx POST cost about 1 ms of the sending node's CPU here (anyio streams, h11, its pool; by py-spy),
as much as a dozen increments. A POST here is one write and one parse.

What a caller relies on:
- `request` returns a Response (status, body) or raises LinkError (an OSError): PeerDown when no connection could be
  made within connect_timeout (the peer is not up: nothing was sent), LinkError for everything after (the request may
  have arrived: lost connection, no answer within timeout, a response that does not parse). A failed request closes
  the connection, and with it every request pipelined behind it (they fail too, in order).
- The connection is closed after `idle` seconds without a request in flight: a peer that is draining waits for the
  connections it holds to go away, and an idle link lets go of it within that time.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
from typing import Any
from urllib.parse import urlsplit

import httptools


class LinkError(OSError):
    """The request failed after a connection was made (it may have reached the peer)."""


class PeerDown(LinkError):
    """No connection could be made: nothing was sent."""


@dataclasses.dataclass
class Response:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def raise_for_status(self) -> None:
        if not 200 <= self.status < 300:
            raise LinkError(f"HTTP {self.status}: {self.body[:200].decode(errors='replace')}")


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiters: collections.deque[asyncio.Future] = collections.deque()
        self.parser = httptools.HttpResponseParser(self)
        self.body: list[bytes] = []
        self.closed = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            self.fail(LinkError(f"unreadable response: {error}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail_waiters(LinkError(f"connection lost: {exc or 'closed by the peer'}"))

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.body = []

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        response = Response(self.parser.get_status_code(), b"".join(self.body))
        keep_alive = self.parser.should_keep_alive()
        if self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(response)
        if not keep_alive:
            self.fail(LinkError("the peer closed the connection"))

    def fail(self, error: LinkError) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()
        self._fail_waiters(error)

    def _fail_waiters(self, error: LinkError) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(error)


class PeerLink:
    def __init__(self, url: str, *, connect_timeout: float = 2.0, timeout: float = 5.0, idle: float = 1.0):
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"a peer is http://HOST:PORT, not {url!r}")
        self.host, self.port = parts.hostname, parts.port or 80
        self.prefix = parts.path.rstrip("/")
        self.host_header = f"{parts.hostname}:{self.port}".encode()
        self.connect_timeout, self.timeout, self.idle = connect_timeout, timeout, idle
        self._connection: _Connection | None = None
        self._connecting: asyncio.Future | None = None
        self._idle_timer: asyncio.TimerHandle | None = None

    async def _connected(self) -> _Connection:
        if self._connection is not None and not self._connection.closed:
            return self._connection
        if self._connecting is None:  # one connection attempt at a time; concurrent requests wait for it
            self._connecting = asyncio.ensure_future(self._connect())
        return await asyncio.shield(self._connecting)

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, connection = await asyncio.wait_for(
                loop.create_connection(_Connection, self.host, self.port), self.connect_timeout
            )
        except (TimeoutError, OSError) as error:
            raise PeerDown(f"cannot connect to {self.host}:{self.port}: {type(error).__name__}: {error}") from None
        finally:
            self._connecting = None  # done, whoever waited for it (all of them may have been cancelled)
        self._connection = connection
        return connection

    async def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Response:
        """timeout: for the whole exchange (sending, the peer's work, the answer); the link's own by default."""
        connection = await self._connected()
        if connection.closed:  # lost between its connect and now
            raise LinkError(f"connection to {self.host}:{self.port} lost before the request was sent")
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        connection.waiters.append(waiter)
        head = [
            f"{method} {self.prefix}{path} HTTP/1.1".encode(),
            b"Host: " + self.host_header,
            b"Content-Length: " + str(len(body)).encode(),
        ]
        head += [f"{name}: {value}".encode() for name, value in (headers or {}).items()]
        assert connection.transport is not None
        try:
            connection.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        except RuntimeError as error:  # uvloop: the transport's handle is closed
            connection.fail(LinkError(f"connection to {self.host}:{self.port} lost: {error}"))
            raise LinkError(f"connection to {self.host}:{self.port} lost: {error}") from None
        timeout = self.timeout if timeout is None else timeout
        timer = loop.call_later(timeout, self._timed_out, connection, waiter, timeout)
        try:
            return await waiter
        except asyncio.CancelledError:
            # Its answer may still come, and would hold the connection busy: the connection goes (with what was
            # pipelined behind it), so that the idle close and the answers' order stay simple.
            connection.fail(LinkError("a request on this connection was cancelled"))
            raise
        finally:
            timer.cancel()
            if not connection.waiters and not connection.closed:
                if self._idle_timer is not None:
                    self._idle_timer.cancel()
                self._idle_timer = loop.call_later(self.idle, self._close_if_idle, connection)

    def _timed_out(self, connection: _Connection, waiter: asyncio.Future, timeout: float) -> None:
        if not waiter.done():  # the responses behind it can no longer be told apart: the connection goes
            connection.fail(LinkError(f"no answer from {self.host}:{self.port} within {timeout:g} s"))

    def _close_if_idle(self, connection: _Connection) -> None:
        if not connection.waiters and not connection.closed:
            connection.fail(LinkError("idle"))

    def close(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        if self._connection is not None and not self._connection.closed:
            self._connection.fail(LinkError("closed"))
        if self._connecting is not None:
            self._connecting.cancel()
