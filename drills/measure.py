"""What every drill shares: its parameters, the load driven around the event it causes, and its goals.

A drill's figures come from under_load (or under_load_from); its goals are goal(expected, measured, met) entries,
and without_load takes out what the figures carry only for the drill itself before they are written.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

from .cluster import DrillError, Target
from .load import Load, failure_window, summarize

# How aiohttp names a connection refused (ClientConnectorError) or reset (the others): an answer from the network.
# A request the client gave up on is a TimeoutError: a hang.
REFUSED = ("ClientConnectorError", "ServerDisconnectedError", "ClientOSError")
SHARED = ("cookie", "database", "replication", "redis", "token")
ATOMIC = ("database", "redis", "token")


@dataclasses.dataclass
class Params:
    clients: int = 200
    seconds: float = 9.0  # of load around the event (a third before it, the rest after)
    think: float = 0.1  # pause between one client's requests (seconds, randomised +-50%)


def goal(expected: Any, measured: Any, met: bool) -> dict[str, Any]:
    return {"expected": expected, "measured": measured, "met": bool(met)}


# -- the load around an event ---------------------------------------------------------------------------------------


def pool_load(target: Target, params: Params, addresses: list[str] | None, limit_seconds: float) -> Load:
    """The load generator for the drill's pool of clients on the balancer (addresses: their source addresses, None:
    this machine's own), not opened yet."""
    return Load(
        target.lb_url,
        clients=params.clients,
        bearer=target.deployment.strategy.bearer,
        think=params.think,
        limit_seconds=limit_seconds,
        local_addresses=addresses,
        ssl_context=target.ssl_context(),
    )


def under_load(target: Target, params: Params, action: Callable[[Callable[[str], None]], Any]) -> dict[str, Any]:
    """Log in the pool, drive it, run `action(mark)` in a thread a third of the way in (mark(name) records the instant
    of an event), keep the load on for the rest, then check every session once more."""
    return under_load_from(target, params, action, None)


def under_load_from(
    target: Target, params: Params, action: Callable[[Callable[[str], None]], Any], addresses: list[str] | None
) -> dict[str, Any]:
    """under_load, with the clients spread over these source addresses (None: this machine's own)."""

    async def main():
        load = pool_load(target, params, addresses, limit_seconds=params.seconds * 20 + 300)
        await load.open()
        try:
            logged_in = await load.log_in_all()
            if logged_in < params.clients:
                raise DrillError(f"only {logged_in} of {params.clients} clients could log in before the drill")
            runner = asyncio.create_task(load.run())
            await asyncio.sleep(params.seconds / 3)
            events: dict[str, float] = {}
            try:
                extra = await asyncio.to_thread(action, lambda name: events.setdefault(name, load.now()))
            finally:
                events.setdefault("action_done", load.now())
            await asyncio.sleep(params.seconds * 2 / 3)
            load.stop()
            await runner
            checked = await load.check_all()
        finally:
            await load.close()
        return load, events, extra, checked

    load, events, extra, checked = asyncio.run(main())
    figures = summarize([o for o in load.outcomes if o.op != "check"], events)
    figures.update(checked)
    figures["clients"] = params.clients
    figures["sessions_lost"] = sum(1 for c in load.clients if c.lost)
    figures["failure_window_seconds"] = failure_window(load.outcomes)
    figures["events"] = {name: round(at, 3) for name, at in events.items()}
    figures["_load"] = load  # taken out before the figures are written
    if isinstance(extra, dict):
        figures.update(extra)
    return figures


def without_load(figures: dict[str, Any]) -> dict[str, Any]:
    figures.pop("_load", None)
    return figures


def json_503_goal(figures: dict[str, Any]) -> dict[str, Any]:
    """Every failed request the app's JSON 503 (a store away): counts the others into figures["failed_not_503"]."""
    not_503 = figures["failed_not_503"] = sum(
        count for error, count in figures["errors"].items() if not error.startswith("503")
    )
    return goal(0, not_503 + figures["failed_not_json"], not_503 == 0 and figures["failed_not_json"] == 0)


def outage_errors_goal(figures: dict[str, Any]) -> dict[str, Any]:
    """Every request that failed while a host was down: the app's JSON 503 (a store away), or a connection refused or
    reset (its balancer down with it, or the floating address moved to a balancer that does not know the
    connection). Never a hang until the client gave up (a timeout), never another error. Counts the others into
    figures["failed_not_503_or_refused"]."""
    other: dict[str, int] = {}
    for o in figures["_load"].outcomes:
        if o.op == "check" or not o.failed:
            continue
        if (o.status == 503 and o.json_error) or (o.status == 0 and o.error in REFUSED):
            continue
        key = f"{o.status or 'no answer'} {o.error}".strip()
        other[key] = other.get(key, 0) + 1
    figures["failed_not_503_or_refused"] = sum(other.values())
    return goal("503 or refused", other or "none other", not other)


def zero_loss_goals(target: Target, figures: dict[str, Any]) -> dict[str, Any]:
    if target.strategy not in SHARED:
        return {}
    return {
        "failed_requests": goal(0, figures["failed"], figures["failed"] == 0),
        "sessions_lost": goal(0, figures["sessions_lost"], figures["sessions_lost"] == 0),
    }


def lab_client_addresses(target: Target) -> list[str]:
    if not target.inventory.endswith("inventories/lab.py"):
        raise DrillError("this drill needs the lab (clients in many /24s come from the lab's bridge)")
    from lab.config import CLIENT_NETWORKS
    from lab.network import client_addresses

    return client_addresses(CLIENT_NETWORKS)
