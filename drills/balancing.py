"""The balancers' drills. ip-hash-spread: each app node's share of requests under ip_hash, with every client in one
/24 and with clients in many (the lab's). lb-failover: the balancer holding the floating address (lb_vip) loses its
Nginx; keepalived moves the address to another balancer, and it stays there when the first comes back."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from .cluster import DrillError, Target
from .load import Load, longest_silence, summarize
from .measure import (
    SHARED,
    Params,
    goal,
    lab_client_addresses,
    outage_errors_goal,
    pool_load,
    under_load,
    without_load,
)

# The longest a client may wait with no answer while the address moves; keepalived: the holder's Nginx check
# fails twice (interval 1 s), then the peer takes over at once.
SILENCE_GOAL = 5.0
MOVE_WITHIN = 30.0
# After the old holder's Nginx is back: this long with the address staying where it went (no flapping back).
STAYS_FOR = 5.0


def _load_once(target: Target, params: Params, addresses: list[str] | None, seconds: float) -> dict[str, Any]:
    async def main():
        load = pool_load(target, params, addresses, limit_seconds=seconds)
        await load.open()
        try:
            await load.log_in_all()
            await load.run()
        finally:
            await load.close()
        return summarize(load.outcomes)

    return asyncio.run(main())


def _shares(per_node: dict[str, int], nodes: list[str]) -> dict[str, float]:
    total = sum(per_node.values()) or 1
    return {node: round(per_node.get(node, 0) / total, 3) for node in nodes}


def ip_hash_spread(target: Target, params: Params) -> dict[str, Any]:
    """The share of requests each app node receives with every client in one /24, and with clients in many /24s."""
    nodes = [node.name for node in target.role("app")]
    addresses = lab_client_addresses(target)
    seconds = max(4.0, params.seconds / 2)
    one = _load_once(target, params, None, seconds)
    many = _load_once(target, params, addresses, seconds)
    figures = {
        "lb_method": target.deployment.lb_method,
        "app_nodes": len(nodes),
        "one_24": {"clients": params.clients, "networks": 1, "share": _shares(one["per_node"], nodes)},
        "many_24": {"clients": params.clients, "networks": len(addresses), "share": _shares(many["per_node"], nodes)},
    }
    for key in ("one_24", "many_24"):
        shares = figures[key]["share"].values()
        figures[key]["max_share"] = max(shares)
        figures[key]["nodes_used"] = sum(1 for share in shares if share > 0)
    figures["per_node"] = many["per_node"]
    return {"figures": figures, "goals": {}, "restored": "nothing to restore (client addresses stay on the bridge)"}


def holder(target: Target) -> Any:
    """The lb host that holds lb_vip now (None: no one)."""
    vip = target.deployment.vars["lb_vip"]
    for node in target.role("lb"):
        held = target.ssh(node, f"ip -o -4 addr show | grep -qF ' {vip}/' && echo yes || true", timeout=30, check=False)
        if held.strip() == "yes":
            return node
    return None


def silence_goal(figures: dict[str, Any]) -> dict[str, Any]:
    """The longest time with no answered request while the floating address moved: at most SILENCE_GOAL."""
    silence = figures["longest_silence_seconds"]
    return goal(f"<= {SILENCE_GOAL:g}", silence, silence <= SILENCE_GOAL)


def lb_failover(target: Target, params: Params) -> dict[str, Any]:
    """Under load through the floating address: SIGKILL of the holder's Nginx (it stays down: Debian's unit does not
    restart it). Its keepalived check fails and the address moves; then Nginx is started again on the old holder,
    and the address must stay where it went."""
    if not target.deployment.vars.get("lb_vip") or len(target.role("lb")) < 2:
        raise DrillError("lb-failover needs two or more lb hosts and lb_vip (on the lab: inventories/lab_ha.py)")
    first = holder(target)
    if first is None:
        raise DrillError(f"no balancer holds {target.deployment.vars['lb_vip']}")
    moved_to: dict[str, Any] = {}

    def action(mark):
        mark("kill")
        target.ssh(first, "systemctl kill --signal=SIGKILL nginx")
        started = time.monotonic()
        while True:
            now = holder(target)
            if now is not None and now.name != first.name:
                moved_to["node"] = now
                break
            if time.monotonic() - started > MOVE_WITHIN:
                raise DrillError(f"the floating address stayed on {first.name} {MOVE_WITHIN:g} s after its Nginx died")
            time.sleep(0.2)
        mark("moved")
        return {"held_by": first.name, "moved_to": now.name}

    try:
        figures = under_load(target, params, action)
    finally:
        target.ssh(first, "systemctl start nginx", check=False)
    load: Load = figures["_load"]
    kill = figures["events"]["kill"]
    figures["address_moved_seconds"] = round(figures["events"]["moved"] - kill, 2)
    figures["longest_silence_seconds"] = longest_silence(load.outcomes, since=kill)
    time.sleep(STAYS_FOR)
    after = holder(target)
    figures["held_after_return"] = after.name if after else None
    goals = {
        "errors_are_503_or_refused": outage_errors_goal(figures),
        "longest_silence_seconds": silence_goal(figures),
        # sticky too: its sessions live on the app nodes, which both balancers route to alike
        "sessions_lost": goal(0, figures["sessions_lost"], figures["sessions_lost"] == 0),
        "no_flap_back": goal(
            moved_to["node"].name, figures["held_after_return"], figures["held_after_return"] == moved_to["node"].name
        ),
    }
    if target.strategy in SHARED:
        goals["answered_increments_lost"] = goal(0, figures["counter_lower"], figures["counter_lower"] == 0)
    return {
        "figures": without_load(figures),
        "goals": goals,
        "restored": f"nginx started again on {first.name}; the address stays on {figures['held_after_return']}",
    }
