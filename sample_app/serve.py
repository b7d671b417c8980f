"""Serving the app with uvicorn, and stopping it without failing a request (a drain).

A node that is stopped (`systemctl stop`, a rolling deploy's restart) must not fail the requests a load balancer
is sending it. uvicorn's own graceful shutdown finishes requests in progress but closes idle keep-alive connections
at once; a balancer that picked one of those an instant earlier has already sent a request on it, and a POST sent is
never retried (it may have been applied), so it fails. The drain instead:

1. stops listening: new connections are refused, which a balancer passes on to another node (nothing was sent);
2. answers every request still arriving on open connections, each with `Connection: close`, so the balancer drops
   the connection after that answer instead of sending another request on it;
3. leaves idle keep-alive connections to the balancer, which closes them itself after its own keepalive timeout
   (the kit's Nginx: `keepalive_timeout` in the upstream, shorter than the DRAIN_SECONDS setting, 8 s);
4. after DRAIN_SECONDS, or as soon as no connection is left, shuts down as uvicorn does (the store's close included).

The app's own idle timeout (KEEP_ALIVE_SECONDS) is longer than the balancer's for the same reason: the side that
closes an idle connection must be the one that would send on it.
"""

from __future__ import annotations

import asyncio
import logging

import uvicorn

from .settings import Settings

log = logging.getLogger("sample_app.serve")

KEEP_ALIVE_SECONDS = 30  # idle keep-alive connections the app closes itself: longer than any balancer's timeout
CLOSE = (b"connection", b"close")


class DrainingServer(uvicorn.Server):
    draining = False
    drain_seconds = 8.0  # the DRAIN_SECONDS setting

    async def shutdown(self, sockets=None) -> None:
        self.draining = True
        for server in self.servers:
            server.close()  # refuse new connections from now on
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.drain_seconds
        busy_at_start = len(self.server_state.connections)
        while self.server_state.connections and loop.time() < deadline and not self.force_exit:
            await asyncio.sleep(0.05)
        left = len(self.server_state.connections)
        log.info("drained: %d connections at stop, %d left after %.1f s", busy_at_start, left,
                 self.drain_seconds - max(0.0, deadline - loop.time()))
        await super().shutdown(sockets)


class CloseWhileDraining:
    """ASGI wrapper: while the server drains, every answer asks the client (the balancer) to close the connection."""

    def __init__(self, app, server: DrainingServer):
        self.app, self.server = app, server

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_closing(message):
            if message["type"] == "http.response.start" and self.server.draining:
                message["headers"] = [*message.get("headers", []), CLOSE]
            await send(message)

        await self.app(scope, receive, send_closing if self.server.draining else send)


def serve(app, settings: Settings) -> None:
    config = uvicorn.Config(None, host=settings.app_host, port=settings.app_port, workers=1,
                            loop="uvloop", http="httptools", lifespan="on", access_log=False, proxy_headers=True,
                            forwarded_allow_ips=settings.forwarded_allow_ips, log_level=settings.log_level,
                            server_header=False, date_header=False, timeout_keep_alive=KEEP_ALIVE_SECONDS)
    server = DrainingServer(config)
    server.drain_seconds = settings.drain_seconds
    config.app = CloseWhileDraining(app, server)
    server.run()
