"""The drills on the sessions themselves, no failure involved: parallel writes to one session (contention), the
cookie strategy's size limit and a replayed cookie (cookie-limits), and what a session costs in its store
(footprint)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import secrets
import shlex
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from session_kit.strategies import ONE_WORKER

from .cluster import DrillError, Target
from .load import Load, summarize
from .measure import ATOMIC, Params, goal
from .stores import redis_cli

# -- contention -----------------------------------------------------------------------------------------------------


def contention(target: Target, params: Params, parallel: int = 200) -> dict[str, Any]:
    """`parallel` increments of ONE session at once through the balancer: how many updates were lost."""

    async def main():
        load = Load(
            target.lb_url, clients=1, bearer=target.deployment.strategy.bearer, ssl_context=target.ssl_context()
        )
        await load.open()
        try:
            client = load.clients[0]
            if not await load.login(client):
                raise DrillError("could not log in")
            handle = client.handle
            copies = [dataclasses.replace(client, handle=handle) for _ in range(parallel)]
            results = await asyncio.gather(
                *(load.request(copy, "increment", "POST", "/session/counter") for copy in copies)
            )
            # The client keeps what the last answer gave it (the cookie strategy re-issues its cookie on change).
            last = max(range(parallel), key=lambda i: results[i][0].end)
            client.handle = copies[last].handle or handle
            outcome, payload = await load.request(client, "read", "GET", "/session")
        finally:
            await load.close()
        ok = sum(1 for o, _ in results if o.status == 200)
        return ok, (payload or {}).get("counter"), load.outcomes

    ok, counter, outcomes = asyncio.run(main())
    figures = {
        "parallel": parallel,
        "accepted": ok,
        "final_counter": counter,
        "lost_updates": ok - (counter or 0),
        "per_node": summarize(outcomes)["per_node"],
    }
    goals = {}
    if target.strategy in ATOMIC or (
        target.strategy == "replication" and target.deployment.vars.get("replication_mode", "sync") == "sync"
    ):
        goals["lost_updates"] = goal(0, figures["lost_updates"], figures["lost_updates"] == 0)
    return {"figures": figures, "goals": goals, "restored": "nothing to restore"}


# -- cookie-limits --------------------------------------------------------------------------------------------------


def cookie_limits(target: Target, params: Params) -> dict[str, Any]:
    """The session size at which the 4 KB cookie limit is reached; replay of a copied cookie after logout."""

    async def main():
        load = Load(target.lb_url, clients=1, ssl_context=target.ssl_context())
        await load.open()
        try:
            client = load.clients[0]
            await load.login(client)
            stored, refused_at, step = 0, None, 256
            for i in range(64):
                value = secrets.token_urlsafe(step * 3 // 4)  # incompressible: the cookie is zlib-compressed
                outcome, _ = await load.request(client, "write", "PUT", f"/session/data/k{i}", value)
                if outcome.status == 413:
                    refused_at = outcome
                    break
                stored += len(json.dumps(value))
            cookie_bytes = len(client.handle or "")
            copy = client.handle
            await load.request(client, "logout", "POST", "/logout")
            replayer = dataclasses.replace(client, handle=copy)
            replay, _ = await load.request(replayer, "read", "GET", "/session")
        finally:
            await load.close()
        return stored, refused_at, cookie_bytes, replay

    stored, refused_at, cookie_bytes, replay = asyncio.run(main())
    figures = {
        "data_bytes_at_limit": stored,
        "cookie_bytes_at_limit": cookie_bytes,
        "refused_with": f"{refused_at.status} {refused_at.error}" if refused_at else None,
        "replay_after_logout_status": replay.status,
        "replay_after_logout_accepted": replay.status == 200,
    }
    goals = {"oversize_refused_413": goal(413, refused_at.status if refused_at else None, refused_at is not None)}
    return {"figures": figures, "goals": goals, "restored": "nothing to restore (the drill's own session)"}


# -- footprint ------------------------------------------------------------------------------------------------------


def footprint(target: Target, params: Params, sessions: int = 10_000, value_bytes: int = 200) -> dict[str, Any]:
    """Bytes per session in the store with `sessions` sessions of one data value of `value_bytes`."""
    strategy = target.strategy
    measure = _store_bytes(target)
    _compact_store(target)
    before = measure()

    async def main():
        semaphore = asyncio.Semaphore(64)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(
            timeout=timeout,
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
            connector=aiohttp.TCPConnector(ssl=target.ssl_context()),
        ) as http:
            handles: list[str] = []

            async def one(i: int) -> None:
                async with semaphore:
                    async with http.post(target.lb_url + "/login", json={"username": f"fp{i}"}) as response:
                        body = await response.json()
                        cookie = response.cookies.get("SESSION")
                        handle = body.get("token") or (cookie.value if cookie else None)
                    headers = (
                        {"Authorization": f"Bearer {handle}"}
                        if target.deployment.strategy.bearer
                        else {"Cookie": f"SESSION={handle}"}
                    )
                    async with http.put(
                        target.lb_url + "/session/data/v", json="x" * value_bytes, headers=headers
                    ) as response:
                        if response.status == 200:
                            handles.append(handle)

            await asyncio.gather(*(one(i) for i in range(sessions)))
            return handles

    started = time.monotonic()
    handles = asyncio.run(main())
    took = time.monotonic() - started
    after = measure()
    if strategy == "cookie":
        figures = {
            "sessions": len(handles),
            "store": "the client's cookie",
            "bytes_per_session": round(sum(len(h) for h in handles) / max(1, len(handles)), 1),
        }
    else:
        grown = after - before
        figures = {
            "sessions": len(handles),
            "store": _STORE_NAME.get(strategy, strategy),
            "bytes_per_session": round(grown / max(1, len(handles)), 1),
        }
    per = figures["bytes_per_session"]
    if strategy != "cookie" and handles and per < value_bytes:
        # each session holds a value of value_bytes: a smaller growth means the store's free space took them in
        raise DrillError(
            f"the store grew by {per} bytes per session, less than the {value_bytes} bytes of data each "
            f"holds: the measurement is not believable (free space in the store took the sessions in)"
        )
    figures["sessions_per_gib"] = int(2**30 / per) if per > 0 else None
    figures["value_bytes"] = value_bytes
    figures["create_seconds"] = round(took, 2)
    return {"figures": figures, "goals": {}, "restored": "the drill's sessions expire with the TTL"}


_STORE_NAME = {
    "redis": "Redis used_memory",
    "token": "Redis used_memory",
    "database": "PostgreSQL table + indexes",
    "sticky": "app RSS, summed over nodes",
    "replication": "app RSS per node (every node holds every session)",
}


def _compact_store(target: Target) -> None:
    """PostgreSQL: give the sessions table back its free space first (VACUUM FULL), so that new sessions grow it
    instead of filling the room that earlier drills' deleted rows left (a full report once measured 4.9 bytes per
    session that way). No load runs during the footprint drill; the table is locked for the moment it takes."""
    if target.strategy == "database":
        _psql(target, "VACUUM FULL sessions")


def _psql(target: Target, sql: str) -> str:
    """One SQL statement as postgres in the sessions database, on the first db host; its output, unaligned."""
    database = target.deployment.vars["postgres_database"]
    return target.ssh(target.role("db")[0], f"cd / && sudo -u postgres psql -qtAc {shlex.quote(sql)} {database}")


def _store_bytes(target: Target) -> Callable[[], float]:
    strategy = target.strategy
    if strategy in ("redis", "token"):
        node = target.role("redis")[0]

        def redis_bytes() -> float:
            out = redis_cli(target, node, "INFO memory")  # standalone (footprint runs in the plain configuration)
            return float(next(line.split(":")[1] for line in out.splitlines() if line.startswith("used_memory:")))

        return redis_bytes
    if strategy == "database":

        def table_bytes() -> float:
            return float(_psql(target, "SELECT coalesce(pg_total_relation_size('sessions'), 0)").strip() or 0)

        return table_bytes
    if strategy in ONE_WORKER:  # sessions in the app's one process: its memory
        nodes = target.role("app")

        def rss_bytes() -> float:
            total = 0.0
            for node in nodes:
                out = target.ssh(node, "ps -o rss= -p $(systemctl show -p MainPID --value session-kit-app)")
                total += float(out.strip() or 0) * 1024
            # replication: every node holds every session, so one node's growth is the cost of a session
            return total / len(nodes) if strategy == "replication" else total

        return rss_bytes
    return lambda: 0.0
