"""The replication link (sample_app/stores/peer_link.py) against real sockets on loopback: pipelined requests answered
in order, a peer that is not up, one that does not answer, one that closes, and the idle connection let go of."""

from __future__ import annotations

import asyncio
import socket

import pytest

from sample_app.stores.peer_link import LinkError, PeerDown, PeerLink, Response


class Server:
    """A tiny HTTP/1.1 server: answers each request with its own path as the body, after `delay` seconds (none:
    never), closing the connection after answering when `close` is set. Records connections opened and closed."""

    def __init__(self, delay: float | None = 0.0, close: bool = False):
        self.delay, self.close = delay, close
        self.opened = self.closed = 0
        self.server: asyncio.base_events.Server | None = None

    async def __aenter__(self) -> Server:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.opened += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                length = next(
                    (int(line.split(":")[1]) for line in lines if line.lower().startswith("content-length")), 0
                )
                await reader.readexactly(length)
                path = lines[0].split()[1].encode()
                if self.delay is None:
                    await asyncio.sleep(3600)
                await asyncio.sleep(self.delay)
                extra = b"Connection: close\r\n" if self.close else b""
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(path), extra, path))
                if self.close:
                    await writer.drain()
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.closed += 1
            writer.close()


def test_pipelined_requests_come_back_in_order_on_one_connection(run):
    async def main():
        async with Server() as server:
            link = PeerLink(f"http://127.0.0.1:{server.port}")
            responses = await asyncio.gather(*(link.request("POST", f"/r{i}", b"x" * i) for i in range(50)))
            assert [r.body for r in responses] == [f"/r{i}".encode() for i in range(50)]
            assert all(r.status == 200 for r in responses)
            assert server.opened == 1, "the requests were not pipelined on one kept-alive connection"
            link.close()

    run(main())


def test_a_peer_that_is_not_up_is_peer_down(run):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, not listening: refused

        async def main():
            link = PeerLink(f"http://127.0.0.1:{port}")
            for _ in range(2):  # and again: a failed connect is not remembered
                with pytest.raises(PeerDown):
                    await link.request("GET", "/")

        run(main())


def test_no_answer_in_time_fails_the_request_and_those_behind_it(run):
    async def main():
        async with Server(delay=None) as server:
            link = PeerLink(f"http://127.0.0.1:{server.port}", timeout=0.3)
            results = await asyncio.gather(link.request("GET", "/a"), link.request("GET", "/b"), return_exceptions=True)
            assert all(isinstance(r, LinkError) and not isinstance(r, PeerDown) for r in results), results
            assert "within 0.3 s" in str(results[0])

    run(main())


def test_a_peer_closing_after_its_answer_fails_what_was_pipelined_behind_then_reconnects(run):
    async def main():
        async with Server(close=True) as server:
            link = PeerLink(f"http://127.0.0.1:{server.port}")
            first, second = await asyncio.gather(
                link.request("GET", "/a"), link.request("GET", "/b"), return_exceptions=True
            )
            assert first.body == b"/a"
            assert isinstance(second, LinkError)
            assert (await link.request("GET", "/c")).body == b"/c"  # a new connection
            assert server.opened == 2

    run(main())


def test_an_idle_connection_is_let_go_of_and_a_busy_one_is_not(run):
    async def wait_closed(server, seconds):
        for _ in range(int(seconds / 0.02)):
            if server.closed:
                return True
            await asyncio.sleep(0.02)
        return False

    async def main():
        async with Server() as server:
            link = PeerLink(f"http://127.0.0.1:{server.port}", idle=0.3)
            assert (await link.request("GET", "/a")).status == 200
            await asyncio.sleep(0.2)
            assert (await link.request("GET", "/b")).status == 200  # the idle timer starts again from here
            assert not await wait_closed(server, 0.2), "closed before it had been idle for `idle` seconds"
            assert await wait_closed(server, 1.0), "the idle connection was not closed"
            assert server.opened == 1
            server.delay = 0.6  # an answer slower than `idle`: the connection is busy, not idle
            assert (await link.request("GET", "/c")).body == b"/c"
            assert server.opened == 2 and server.closed == 1

    run(main())


def test_a_cancelled_request_closes_its_connection_and_the_next_one_reconnects(run):
    async def main():
        async with Server(delay=0.5) as server:
            link = PeerLink(f"http://127.0.0.1:{server.port}")
            slow = asyncio.ensure_future(link.request("GET", "/slow"))
            await asyncio.sleep(0.1)
            slow.cancel()
            with pytest.raises(asyncio.CancelledError):
                await slow
            server.delay = 0.0
            assert (await link.request("GET", "/next")).body == b"/next"
            assert server.opened == 2, "the cancelled request's connection was used again"
            link.close()

    run(main())


def test_an_error_status_raises_with_the_body():
    with pytest.raises(LinkError, match="HTTP 401: refused"):
        Response(401, b"refused").raise_for_status()
    Response(204, b"").raise_for_status()  # no exception
