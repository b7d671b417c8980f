"""The replication strategy's drill (lag): how soon the other nodes see a write, the stale reads a client meets
through the balancer, and how long a rejoining node takes to pull its snapshot."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from .cluster import Target
from .measure import Params, goal

# -- lag (replication) ------------------------------------------------------------------------------------------------


def lag(
    target: Target, params: Params, writes: int = 200, rejoin_sessions: tuple[int, ...] = (1_000, 10_000)
) -> dict[str, Any]:
    """Write on one node, poll the others straight (not through the balancer) until they see it: the lag, in the mode
    deployed; and a write then a read through the balancer, as a client does them: the stale reads. Then, for each
    pool size, the time a restarted node takes to pull its snapshot and serve again."""
    apps = target.role("app")
    writer, readers = apps[0], apps[1:]
    mode = target.deployment.vars.get("replication_mode", "sync")

    async def measure_lag() -> tuple[list[float], int]:
        async with aiohttp.ClientSession(
            cookie_jar=aiohttp.DummyCookieJar(), trust_env=False, timeout=aiohttp.ClientTimeout(total=10)
        ) as http:
            async with http.post(target.node_url(writer) + "/login", json={"username": "lag"}) as response:
                handle = response.cookies["SESSION"].value
            headers = {"Cookie": f"SESSION={handle}"}
            lags, stale = [], 0
            for _ in range(writes):
                async with http.post(target.node_url(writer) + "/session/counter", headers=headers) as response:
                    written_at, counter = time.monotonic(), (await response.json())["counter"]
                for reader in readers:
                    for attempt in range(2000):  # bounded: 2000 polls
                        async with http.get(target.node_url(reader) + "/session", headers=headers) as response:
                            body = await response.json() if response.status == 200 else {}
                        if body.get("counter") == counter:
                            break
                        stale += attempt == 0
                        await asyncio.sleep(0.0005)
                    lags.append((time.monotonic() - written_at) * 1000)
            return lags, stale

    async def stale_through_balancer() -> dict[str, Any]:
        """As a client sees it: a write through the balancer, then at once a read through it (round robin sends it
        to another node, mostly): the reads that showed the value before the write."""
        bearer = target.deployment.strategy.bearer
        async with aiohttp.ClientSession(
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
            timeout=aiohttp.ClientTimeout(total=10),
            connector=aiohttp.TCPConnector(ssl=target.ssl_context()),
        ) as http:
            async with http.post(target.lb_url + "/login", json={"username": "lag-rr"}) as response:
                body = await response.json()
                headers = (
                    {"Authorization": f"Bearer {body['token']}"}
                    if bearer
                    else {"Cookie": f"SESSION={response.cookies['SESSION'].value}"}
                )
            reads = cross = stale = refused = 0
            for _ in range(writes):
                async with http.post(target.lb_url + "/session/counter", headers=headers) as response:
                    body = await response.json() if response.status == 200 else {}
                    wrote_on = response.headers.get("X-Served-By")
                if "counter" not in body:  # async: the node had not heard of the session (or of its last write) yet
                    refused += 1
                    continue
                counter = body["counter"]
                async with http.get(target.lb_url + "/session", headers=headers) as response:
                    body = await response.json() if response.status == 200 else {}
                    read_on = response.headers.get("X-Served-By")
                reads += 1
                cross += read_on != wrote_on
                stale += body.get("counter") != counter
            return {
                "lb_method": target.deployment.lb_method,
                "writes": writes,
                "writes_refused": refused,
                "reads": reads,
                "read_on_another_node": cross,
                "stale": stale,
                "stale_share": round(stale / max(1, reads), 4),
            }

    lags, stale = asyncio.run(measure_lag())
    through_balancer = asyncio.run(stale_through_balancer())
    lags.sort()
    pct = lambda q: round(lags[min(len(lags) - 1, int(q * len(lags)))], 2)
    figures: dict[str, Any] = {
        "mode": mode,
        "writes": writes,
        "reads": len(lags),
        "lag_ms": {"p50": pct(0.5), "p99": pct(0.99), "max": round(lags[-1], 2)},
        "lag_ms_samples": [round(x, 3) for x in lags],
        "stale_first_reads": stale,
        "stale_first_read_share": round(stale / max(1, len(lags)), 4),
        "through_balancer": through_balancer,
    }
    rejoin = {}
    node = apps[-1]
    held = _session_count(target, node)
    if held > min(rejoin_sessions):
        # sessions of drills before (footprint's 10,000) would make the smallest pool a larger one: every node
        # stopped, then started, begins empty (replication keeps sessions in memory only)
        for app in apps:
            target.ssh(app, "systemctl stop session-kit-app")
        for app in apps:
            target.ssh(app, "systemctl start session-kit-app")
        for app in apps:
            target.wait_healthy(app, within=120)
    figures["sessions_before_rejoin"] = {"held": held, "after_clearing": _session_count(target, node)}
    for count in rejoin_sessions:
        asyncio.run(_log_in_many(target.lb_url, count - _session_count(target, node), target.ssl_context()))
        target.ssh(node, "systemctl stop session-kit-app")  # the drain is not part of the rejoin
        started = time.monotonic()
        target.ssh(node, "systemctl start session-kit-app")
        target.wait_healthy(node, within=120)
        rejoin[str(count)] = {
            "seconds": round(time.monotonic() - started, 2),
            "sessions_pulled": _session_count(target, node),
        }
    figures["rejoin"] = rejoin
    goals = {}
    if mode == "sync":
        goals["no_stale_read_after_an_answered_write"] = goal(0, stale, stale == 0)
        goals["no_stale_read_through_the_balancer"] = goal(0, through_balancer["stale"], through_balancer["stale"] == 0)
    return {"figures": figures, "goals": goals, "restored": f"{node.name} restarted and healthy"}


def _session_count(target: Target, node) -> int:
    try:
        return int(requests_json(target.node_url(node) + "/_replication/status").get("sessions", 0))
    except (OSError, ValueError):
        return 0


def requests_json(url: str) -> dict[str, Any]:
    import requests

    return requests.get(url, timeout=5).json()


async def _log_in_many(base_url: str, count: int, ssl_context) -> None:
    if count <= 0:
        return
    semaphore = asyncio.Semaphore(64)
    async with aiohttp.ClientSession(
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
        timeout=aiohttp.ClientTimeout(total=30),
        connector=aiohttp.TCPConnector(ssl=ssl_context),
    ) as http:

        async def one(i: int) -> None:
            async with semaphore:
                async with http.post(base_url + "/login", json={"username": f"many{i}"}) as response:
                    await response.read()

        await asyncio.gather(*(one(i) for i in range(count)))
