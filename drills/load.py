"""The drills' load generator: a pool of logged-in clients, each its own session, reading and writing through the load
balancer, with every request's outcome and time recorded, so that failed requests and lost sessions are counted, not
estimated.

Each client carries its session the way a browser (the SESSION cookie, taken from Set-Cookie) or a mobile app (a
bearer token) would, sends one request at a time, and mixes reads (`GET /session`) and increments
(`POST /session/counter`). It knows how many of its increments succeeded, so that at the end its session's counter
tells whether an update was lost. A 401 on a session it holds is a lost session: it is counted once, and the client
logs in again so that the load goes on. A 5xx or a broken connection is a failed request.

An HTTPS balancer (lb_tls) is verified with the ssl.SSLContext the caller gives (Deployment.ssl_context(): the
inventory's certificate as the only CA); none: the system's CAs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import ssl
import time
from http.cookies import SimpleCookie
from typing import Any

import aiohttp

COOKIE = "SESSION"


@dataclasses.dataclass
class Outcome:
    client: int
    op: str  # login | read | increment | check
    start: float  # seconds since the load began
    end: float
    status: int  # 0: no HTTP answer (connection refused, reset, timeout)
    node: str  # X-Served-By, "" when none
    error: str = ""  # the JSON error code, or the exception's name
    json_error: bool = True  # a failed answer was JSON with {"error", "message"}
    rid: str = ""  # the X-Request-Id it was sent with: the balancer's access log names the node(s) it went to

    @property
    def failed(self) -> bool:
        return self.status == 0 or self.status >= 500


@dataclasses.dataclass
class Client:
    index: int
    user: str
    handle: str | None = None
    increments: int = 0  # successful increments since this session began
    answered: list[float] = dataclasses.field(default_factory=list)  # when each of them was answered (Load.now())
    counter_final: int | None = None  # the counter the last check read
    counter_seen: int | None = None
    lost: int = 0  # sessions this client lost (401 on a session it held)
    logins: int = 0
    sent: int = 0


class Load:
    """Drive `base_url` with `clients` sessions until stop() is called (or `limit_seconds` pass)."""

    def __init__(
        self,
        base_url: str,
        clients: int = 200,
        bearer: bool = False,
        write_share: float = 0.3,
        think: float = 0.05,
        timeout: float = 10.0,
        limit_seconds: float = 600.0,
        seed: int = 1,
        local_addresses: list[str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ):
        self.base_url, self.bearer = base_url.rstrip("/"), bearer
        self.ssl_context = ssl_context
        self.clients = [Client(i, f"drill{i}") for i in range(clients)]
        self.write_share, self.think, self.timeout, self.limit_seconds = write_share, think, timeout, limit_seconds
        self.random = random.Random(seed)
        self.run_id = f"{random.getrandbits(32):08x}"
        self.local_addresses = local_addresses or []
        self.outcomes: list[Outcome] = []
        self.t0 = 0.0
        self._stop = asyncio.Event()
        self._http: list[aiohttp.ClientSession] = []

    def now(self) -> float:
        return time.monotonic() - self.t0

    # -- one request --------------------------------------------------------------------------------------------

    def _headers(self, client: Client) -> dict[str, str]:
        if client.handle is None:
            return {}
        return {"Authorization": f"Bearer {client.handle}"} if self.bearer else {"Cookie": f"{COOKIE}={client.handle}"}

    def _session_for(self, client: Client) -> aiohttp.ClientSession:
        return self._http[client.index % len(self._http)]

    async def request(self, client: Client, op: str, method: str, path: str, body: Any = None) -> tuple[Outcome, Any]:
        start = self.now()
        data = json.dumps(body).encode() if body is not None else None
        headers = self._headers(client)
        client.sent += 1
        rid = f"{self.run_id}-{client.index}-{client.sent}"
        headers["X-Request-Id"] = rid
        if data is not None:
            headers["Content-Type"] = "application/json"
        try:
            async with self._session_for(client).request(
                method, self.base_url + path, data=data, headers=headers
            ) as response:
                raw = await response.read()
                status, node = response.status, response.headers.get("X-Served-By", "")
                for header in response.headers.getall("Set-Cookie", []):
                    cookie = SimpleCookie(header).get(COOKIE)
                    if cookie is not None:
                        client.handle = None if cookie["max-age"] == "0" or not cookie.value else cookie.value
        except (TimeoutError, aiohttp.ClientError, OSError) as error:
            outcome = Outcome(
                client.index, op, start, self.now(), 0, "", type(error).__name__, json_error=False, rid=rid
            )
            self.outcomes.append(outcome)
            return outcome, None
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = None
        outcome = Outcome(client.index, op, start, self.now(), status, node, rid=rid)
        if status >= 400:
            is_json = isinstance(payload, dict) and isinstance(payload.get("error"), str) and "message" in payload
            outcome.error = payload["error"] if is_json else raw[:80].decode(errors="replace")
            outcome.json_error = is_json
        self.outcomes.append(outcome)
        return outcome, payload

    # -- one client ---------------------------------------------------------------------------------------------

    async def login(self, client: Client) -> bool:
        client.handle = None
        outcome, payload = await self.request(client, "login", "POST", "/login", {"username": client.user})
        if outcome.status != 200:
            return False
        if self.bearer:
            client.handle = payload.get("token")
        client.increments, client.counter_seen, client.logins = 0, None, client.logins + 1
        client.answered = []
        return client.handle is not None

    def _lost(self, client: Client) -> None:
        client.lost += 1
        client.handle = None

    async def step(self, client: Client) -> None:
        if client.handle is None:
            await self.login(client)
            return
        if self.random.random() < self.write_share:
            outcome, payload = await self.request(client, "increment", "POST", "/session/counter")
            if outcome.status == 200:
                client.increments += 1
                client.answered.append(outcome.end)
                client.counter_seen = payload.get("counter")
        else:
            outcome, payload = await self.request(client, "read", "GET", "/session")
            if outcome.status == 200:
                client.counter_seen = payload.get("counter")
        if outcome.status == 401:
            self._lost(client)

    async def _run_client(self, client: Client) -> None:
        await asyncio.sleep(self.random.random() * self.think)  # spread the clients' first requests
        while not self._stop.is_set() and self.now() < self.limit_seconds:
            await self.step(client)
            if self.think:
                await asyncio.sleep(self.think * (0.5 + self.random.random()))

    # -- the whole pool -----------------------------------------------------------------------------------------

    async def open(self) -> None:
        self.t0 = time.monotonic()
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        for address in self.local_addresses or [None]:
            connector = aiohttp.TCPConnector(
                limit=0,
                local_addr=(address, 0) if address else None,
                ssl=self.ssl_context if self.ssl_context is not None else True,
            )
            self._http.append(
                aiohttp.ClientSession(
                    connector=connector, timeout=timeout, cookie_jar=aiohttp.DummyCookieJar(), trust_env=False
                )
            )

    async def close(self) -> None:
        for http in self._http:
            await http.close()

    async def log_in_all(self, tries: int = 5) -> int:
        """Log every client in (a few at a time, each tried up to `tries` times half a second apart, as a user would
        after a 503 while a balancer takes a restarted node back); returns how many succeeded. What this setup
        sends is not part of what a drill measures: its outcomes are dropped."""
        semaphore = asyncio.Semaphore(32)

        async def one(client: Client) -> bool:
            for _attempt in range(tries):
                async with semaphore:
                    if await self.login(client):
                        return True
                await asyncio.sleep(0.5)
            return False

        logged_in = sum(await asyncio.gather(*(one(c) for c in self.clients)))
        self.outcomes.clear()
        for client in self.clients:
            client.logins = 0
        return logged_in

    async def run(self, until: asyncio.Future | None = None) -> None:
        """Run the pool until stop() (or the given future completes, or the time limit)."""
        tasks = [asyncio.create_task(self._run_client(c)) for c in self.clients]
        if until is not None:
            until.add_done_callback(lambda _: self._stop.set())
        await asyncio.gather(*tasks)

    def stop(self) -> None:
        self._stop.set()

    async def check_all(self) -> dict[str, int]:
        """Read every client's session once more, quietly: how many are gone, and how many lost an update."""
        semaphore = asyncio.Semaphore(32)
        gone = lower = higher = 0

        async def one(client: Client) -> None:
            nonlocal gone, lower, higher
            if client.handle is None:
                return
            async with semaphore:
                outcome, payload = await self.request(client, "check", "GET", "/session")
            if outcome.status == 401:
                gone += 1
                self._lost(client)
            elif outcome.status == 200:
                client.counter_final = payload.get("counter")
                lower += payload.get("counter") < client.increments
                higher += payload.get("counter") > client.increments

        await asyncio.gather(*(one(c) for c in self.clients))
        # lower: an increment the client was told succeeded is missing (a lost update); higher: one it was told failed
        # (a 503, a broken connection) was applied all the same, which a client cannot tell from its answer
        return {
            "gone_at_end": gone,
            "counter_mismatch": lower + higher,
            "counter_lower": lower,
            "counter_higher": higher,
        }


def summarize(outcomes: list[Outcome], events: dict[str, float] | None = None) -> dict[str, Any]:
    """Counts over outcomes: total, failed, failed while an event happened (a request in flight at that instant)."""
    failed = [o for o in outcomes if o.failed]
    result: dict[str, Any] = {
        "requests": len(outcomes),
        "ok": sum(1 for o in outcomes if 200 <= o.status < 300),
        "failed": len(failed),
        "failed_not_json": sum(1 for o in failed if not o.json_error),
        "unauthorized": sum(1 for o in outcomes if o.status == 401),
        "errors": _count(f"{o.status or 'no answer'} {o.error}".strip() for o in failed),
        "per_node": _count(o.node for o in outcomes if o.node),
    }
    for name, instant in (events or {}).items():
        result[f"failed_in_flight_at_{name}"] = sum(1 for o in failed if o.start <= instant <= o.end)
    # when the failures ended, on the clock of `events` (the first 100): to set beside an apply's stages
    result["failed_at_seconds"] = sorted(round(o.end, 3) for o in failed)[:100]
    if outcomes:
        duration = max(o.end for o in outcomes) - min(o.start for o in outcomes)
        result["seconds"] = round(duration, 2)
        result["requests_per_second"] = round(len(outcomes) / duration, 1) if duration > 0 else None
        latencies = sorted((o.end - o.start) * 1000 for o in outcomes if not o.failed)
        if latencies:
            result["latency_ms"] = {
                p: round(latencies[min(len(latencies) - 1, int(q * len(latencies)))], 2)
                for p, q in (("p50", 0.5), ("p99", 0.99))
            }
    return result


def upstreams_of_failures(outcomes: list[Outcome], access_log: str) -> dict[str, list[str]]:
    """For each failed request, the app nodes (address:port) the balancer sent it to, from its access log.

    The kit's Nginx logs `$upstream_addr` and `$http_x_request_id` last on each line (templates/etc/nginx/...)."""
    failed = {o.rid for o in outcomes if o.failed and o.rid}
    found: dict[str, list[str]] = {}
    for line in access_log.splitlines():
        fields = line.split(" ")
        if len(fields) >= 2 and fields[-1] in failed:
            found[fields[-1]] = [
                a.strip()
                for a in line.split(" upstream=", 1)[-1].rsplit(" ", 1)[0].split(",")
                if a.strip() and a.strip() != "-"
            ]
    return found


def failure_window(outcomes: list[Outcome]) -> float:
    """Seconds from the first failed request's start to the last one's end (0 when none failed)."""
    failed = [o for o in outcomes if o.failed]
    return round(max(o.end for o in failed) - min(o.start for o in failed), 2) if failed else 0.0


def seconds_until_writes(outcomes: list[Outcome], since: float) -> float:
    """Seconds from `since` until the last increment sent after it that failed had ended (0 when none failed): when
    writes were answered again (the first success says nothing where other writes kept working meanwhile)."""
    failed = [o.end for o in outcomes if o.op == "increment" and o.start >= since and o.failed]
    return round(max(failed) - since, 2) if failed else 0.0


def longest_silence(outcomes: list[Outcome], since: float = 0.0) -> float:
    """The longest time, from `since` on, in which no request was answered (a 2xx-4xx answer ends a silence): what a
    user waits through while the cluster has no way to serve anyone."""
    answered = sorted(o.end for o in outcomes if not o.failed and o.op != "check" and o.end >= since)
    marks = [since, *answered]
    return round(max((b - a for a, b in zip(marks, marks[1:])), default=0.0), 2)


def _count(items) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))
