"""The balancer's drill (ip-hash-spread): each app node's share of requests under ip_hash, with every client in one
/24 and with clients in many (the lab's)."""

from __future__ import annotations

import asyncio
from typing import Any

from .cluster import Target
from .load import summarize
from .measure import Params, lab_client_addresses, pool_load


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
