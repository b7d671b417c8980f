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

Several workers (WORKERS=N>1; with WORKERS=1 the node is the one process above, no parent): a parent binds
APP_HOST:APP_PORT once and forks N workers that share that one listening socket (pre-fork), each a whole app with its
own event loop and its own store connections (DATABASE_POOL_SIZE is per worker). Pre-fork rather than SO_REUSEPORT
per worker, because:
- the drain stays what it is: with one shared socket the node refuses new connections once every worker has closed
  it, and a connection the kernel queued for the node is taken by whichever worker still accepts; with
  SO_REUSEPORT each worker's socket has its own queue, and the connections the kernel had hashed into it are reset
  when that worker closes it (or dies), some of them with a request already sent, which a balancer must not retry;
- a worker that dies takes only its open connections with it: what waits to be accepted stays in the shared queue
  for the other workers, and its replacement accepts from the same socket (it binds nothing, so it cannot fail to);
- the port is bound once, by the parent, so a port in use fails the node at once with one line, and no other
  process can join the port (SO_REUSEPORT lets any process of the same user bind it too and take a share).
The cost: the kernel does not balance connections between the workers (whichever accepts first takes one), so a
balancer's long-lived keep-alive connections may sit unevenly on the workers; each worker serves many at once.

The socket is bound in the parent but listens only when the first worker has started (its store ready), as one
process listens only then. The parent:
- on SIGTERM or SIGINT closes its own copy of the socket, sends SIGTERM to every worker (each drains as above; again
  every second, for a worker still starting), and waits for them at most DRAIN_SECONDS + STOP_MARGIN seconds, then
  kills what is left (exit 1; 0 when every worker stopped by itself); a second SIGINT is passed on as SIGINT, which
  ends a worker's drain at once, as it does for one process;
- restarts a worker that dies while the node serves, at most RESTART_LIMIT times in RESTART_WINDOW seconds; past
  that it stops the node (exit 1), and systemd's Restart=on-failure takes over;
- exits with the worker's status (3, as uvicorn does when the app cannot start) if one of the first N workers dies
  before it serves, after stopping the others.
A worker whose parent is gone (killed) drains and stops by itself. Under systemd, the unit's KillMode=mixed sends
`systemctl stop`'s SIGTERM to the parent alone, so that the parent orders the stop, and its final SIGKILL to all.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import os
import select
import signal
import socket
import time
from collections.abc import Callable

import uvicorn

from .settings import Settings

log = logging.getLogger("sample_app.serve")

KEEP_ALIVE_SECONDS = 30  # idle keep-alive connections the app closes itself: longer than any balancer's timeout
CLOSE = (b"connection", b"close")


# The cyclic garbage collector, measured on the session endpoints (redis, 32 connections): a request that
# waits for its store keeps its objects (frames, scope, Request, ...) alive across the collector's young-generation
# threshold (700 allocations), so they were scanned, promoted, and then full collections of the whole heap (every
# module, class and function of uvicorn, Starlette, redis-py, psycopg) ran about 3 times a second: 12-20 us of CPU
# per request (a third of a no-session request) and 15-25 ms p99 stalls, while a no-session request, which never
# waits, triggered none. The requests make no garbage cycles (the collector found none to free), so:
# - gc.freeze() once serving: what was loaded at start is never scanned again (for workers, after the fork);
# - a young generation of 20000 allocations instead of 700: requests in flight no longer reach it. A cycle that an
#   error path makes (an exception's traceback) is still freed, by a later collection.
GC_YOUNG_THRESHOLD = 20_000


def tune_gc() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


class DrainingServer(uvicorn.Server):
    draining = False
    drain_seconds = 8.0  # the DRAIN_SECONDS setting
    parent_pid = 0  # a worker: its parent's pid (a worker whose parent is gone stops)
    on_started: Callable[[], None] | None = None  # a worker: tells its parent it serves

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        if self.started:
            tune_gc()  # the app and its store are ready: what exists now lives as long as the process
        if self.started and self.on_started:
            self.on_started()

    async def on_tick(self, counter: int) -> bool:
        if self.parent_pid and counter % 10 == 0 and not self.should_exit and os.getppid() != self.parent_pid:
            log.warning("worker %d: its parent %d is gone: stopping", os.getpid(), self.parent_pid)
            self.should_exit = True
        return await super().on_tick(counter)

    async def shutdown(self, sockets=None) -> None:
        self.draining = True
        loop = asyncio.get_running_loop()
        pending: list[socket.socket] = []
        for server in self.servers:
            listeners = [socket.socket(fileno=os.dup(s.fileno())) for s in server.sockets or ()]
            server.close()  # refuse new connections from now on (the copies above still hold the listeners)
            for listener in listeners:
                pending += take_pending(listener)
        for conn in pending:  # served like any other, answered with Connection: close as the drain does
            await loop.connect_accepted_socket(self._protocol, conn)
        deadline = loop.time() + self.drain_seconds
        busy_at_start = len(self.server_state.connections)
        while self.server_state.connections and loop.time() < deadline and not self.force_exit:
            await asyncio.sleep(0.05)
        left = len(self.server_state.connections)
        log.info(
            "drained: %d connections at stop, %d left after %.1f s",
            busy_at_start,
            left,
            self.drain_seconds - max(0.0, deadline - loop.time()),
        )
        await super().shutdown(sockets)

    def _protocol(self, _loop=None):
        """uvicorn's protocol for one connection, as its startup() makes it for the listeners."""
        return self.config.http_protocol_class(
            config=self.config, server_state=self.server_state, app_state=self.lifespan.state, _loop=_loop
        )


def take_pending(listener: socket.socket) -> list[socket.socket]:
    """Accept every connection waiting in a listener's queue, then close it, with nothing in between that could
    wait. Closing a listener resets the connections the kernel had queued but the loop had not accepted yet; the
    balancer has already sent a request on each (a POST it must not send twice), so each would fail. Taken here,
    they are served; only one arriving in the microseconds between the last accept and the close is reset."""
    taken = []
    listener.setblocking(False)
    try:
        while True:
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # the listener is gone (another worker's close, a reset): nothing left to take
                break
            conn.setblocking(False)
            taken.append(conn)
    finally:
        listener.close()
    return taken


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


def draining_server(app, settings: Settings) -> DrainingServer:
    config = uvicorn.Config(
        None,
        host=settings.app_host,
        port=settings.app_port,
        workers=1,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        log_level=settings.log_level,
        server_header=False,
        date_header=False,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
    )
    server = DrainingServer(config)
    server.drain_seconds = settings.drain_seconds
    config.app = CloseWhileDraining(app, server)
    return server


def serve(app, settings: Settings) -> None:
    """WORKERS=1: this process serves."""
    draining_server(app, settings).run()


# -- several workers (WORKERS > 1): see the module's docstring ----------------------------------------------------

STOP_MARGIN = 5.0  # seconds past DRAIN_SECONDS a stopping worker gets to close its store and exit
RESTART_LIMIT, RESTART_WINDOW = 5, 60.0  # at most this many restarts of dead workers within this many seconds
STARTUP_FAILURE = 3  # uvicorn's exit status when the app cannot start


@dataclasses.dataclass
class Worker:
    slot: int
    pid: int
    ready_fd: int  # read end of the pipe on which the worker says it serves; -1 once read
    ready: bool = False


class Workers:
    """The parent of WORKERS processes sharing one listening socket."""

    def __init__(self, make_app: Callable[[], object], settings: Settings):
        self.make_app, self.settings, self.count = make_app, settings, settings.workers
        self.workers: dict[int, Worker] = {}  # by pid
        self.served: set[int] = set()  # the slots whose worker has served once
        self.restarts: list[float] = []  # when dead workers were replaced (monotonic)
        self.stopping = False
        self.status = 0  # the node's exit status
        self.sock: socket.socket | None = None

    # -- the parent ---------------------------------------------------------------------------------------------

    def run(self) -> int:
        host, port = self.settings.app_host, self.settings.app_port
        try:
            self.sock = bind(host, port)
        except OSError as error:
            log.error("cannot bind %s:%d: %s", host, port, error.strerror or error)
            return STARTUP_FAILURE
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self.on_signal)
        log.info("node %d: %d workers on %s:%d", os.getpid(), self.count, host, port)
        for slot in range(self.count):
            self.spawn(slot)
        while not self.stopping:
            self.wait_ready(0.2)
            self.reap()
        return self.finish()

    def on_signal(self, sig: int, frame) -> None:
        if not self.stopping:
            log.info("node %d: %s: the workers drain", os.getpid(), signal.Signals(sig).name)
            self.stop()
        elif sig == signal.SIGINT:  # a second Ctrl-C: the workers stop at once, as one process does
            self.signal_workers(signal.SIGINT)

    def stop(self, status: int = 0) -> None:
        self.stopping, self.status = True, self.status or status
        if self.sock is not None:
            self.sock.close()  # the workers' copies are the node's only listeners now; they close them as they drain
            self.sock = None
        self.signal_workers(signal.SIGTERM)

    def signal_workers(self, sig: int) -> None:
        for pid in list(self.workers):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def spawn(self, slot: int) -> None:
        # Signals wait until the child has its own handlers and the parent knows the child's pid.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        try:
            if self.stopping:
                return
            read_fd, write_fd = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(read_fd)
                self.work(write_fd, mask)  # never returns
            os.close(write_fd)
            self.workers[pid] = Worker(slot, pid, read_fd)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)

    def wait_ready(self, timeout: float) -> None:
        fds = [worker.ready_fd for worker in self.workers.values() if worker.ready_fd >= 0]
        if not fds:
            time.sleep(timeout)
            return
        readable = select.select(fds, [], [], timeout)[0]
        for worker in list(self.workers.values()):
            if worker.ready_fd in readable:
                self.read_ready(worker)

    def read_ready(self, worker: Worker) -> None:
        """Whether the worker said it serves (it wrote "1"; EOF: it exited before)."""
        if worker.ready_fd < 0:
            return
        worker.ready = os.read(worker.ready_fd, 1) == b"1"
        os.close(worker.ready_fd)
        worker.ready_fd = -1
        if worker.ready:
            self.served.add(worker.slot)
            log.info("worker %d (%d of %d) serves", worker.pid, worker.slot + 1, self.count)

    def reap(self) -> None:
        """Collect the workers that exited; while the node serves, replace them, or stop the node."""
        while self.workers:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = self.workers.pop(pid, None)
            if worker is None:
                continue
            self.read_ready(worker)
            if self.stopping:
                continue
            how = describe_status(status)
            if worker.slot not in self.served:
                code = os.waitstatus_to_exitcode(status)
                log.error("worker %d could not start (%s): the node stops", pid, how)
                self.stop(code if code > 0 else 1)
                continue
            now = time.monotonic()
            self.restarts = [at for at in self.restarts if now - at < RESTART_WINDOW] + [now]
            if len(self.restarts) > RESTART_LIMIT:
                log.error(
                    "worker %d died (%s), more than %d restarts within %.0f s: the node stops",
                    pid,
                    how,
                    RESTART_LIMIT,
                    RESTART_WINDOW,
                )
                self.stop(1)
                continue
            log.warning("worker %d died (%s): starting another", pid, how)
            self.spawn(worker.slot)

    def finish(self) -> int:
        """Wait for the stopping workers (bounded), kill what is left; the node's exit status."""
        bound = self.settings.drain_seconds + STOP_MARGIN
        deadline, resend = time.monotonic() + bound, time.monotonic() + 1.0
        while self.workers and time.monotonic() < deadline:
            time.sleep(0.05)
            self.reap()
            if time.monotonic() >= resend:  # for a worker still starting when the first SIGTERM came: it ignored it
                self.signal_workers(signal.SIGTERM)
                resend += 1.0
        if self.workers:
            log.error("workers %s still running %.0f s after the stop: killed", sorted(self.workers), bound)
            self.signal_workers(signal.SIGKILL)
            for pid in list(self.workers):
                os.waitpid(pid, 0)
            self.status = self.status or 1
        log.info("node %d: stopped", os.getpid())
        return self.status

    # -- a worker -----------------------------------------------------------------------------------------------

    def work(self, ready_fd: int, mask) -> None:
        """In the forked child: serve until told to stop, then exit (never return into the parent's code)."""
        code = 1
        try:
            for worker in self.workers.values():
                if worker.ready_fd >= 0:
                    os.close(worker.ready_fd)
            # Ignored until uvicorn takes them over while it serves (and after, when it raises again the signal it
            # caught); one that comes before is sent again by the parent every second while it stops.
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            server = draining_server(self.make_app(), self.settings)
            server.parent_pid = os.getppid()

            def started() -> None:
                os.write(ready_fd, b"1")
                os.close(ready_fd)

            server.on_started = started
            server.run(sockets=[self.sock])
            code = 0 if server.started else STARTUP_FAILURE
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else int(exit.code is not None)
        except BaseException:
            log.exception("worker %d failed", os.getpid())
        finally:
            logging.shutdown()
            os._exit(code)


def bind(host: str, port: int) -> socket.socket:
    """Bound, not listening: the first worker that starts listens (until then, connections are refused)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


def serve_workers(make_app: Callable[[], object], settings: Settings) -> int:
    """WORKERS > 1: this process is the parent of the workers; returns the node's exit status."""
    return Workers(make_app, settings).run()
