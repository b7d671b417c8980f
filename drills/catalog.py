"""The drills: each breaks (or grows, or fills) the deployed cluster on purpose while the load generator drives the
balancer, measures what the clients saw, puts the cluster back as it found it, and returns its figures as data.

A drill returns {"figures": {...}, "goals": {name: {"expected": ..., "measured": ..., "met": bool}}, "restored": str}.
Goals are what the strategy promises its clients (no failed request, no lost session, no lost update...); a goal that
does not apply to a strategy is not listed (sticky keeps its sessions in one node's memory, so losing them with the
node is what it does: measured and reported, not a goal).

This module is the registry (DRILLS, and the configurations a set of drills runs in); the drills themselves live by
family: app_nodes.py, stores.py, sessions.py, replication.py, balancing.py, with what they share in measure.py.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

from .app_nodes import node_kill, node_stop, rolling, scale_out
from .balancing import ip_hash_spread, lb_failover
from .cluster import Target
from .crash import power_off, store_kill
from .host_loss import CUT_SECONDS, host_loss
from .measure import ATOMIC, SHARED, Params
from .replication import lag
from .sessions import contention, cookie_limits, footprint
from .stores import FREEZE_SECONDS, FREEZE_UNIT, STORE_SERVICE, failover, store_freeze, store_restart

__all__ = ["ATOMIC", "DRILLS", "LAB_INVENTORY", "SHARED", "Drill", "Params", "configurations"]

LAB_INVENTORY = "inventories/lab.py"
# Redis Sentinel and Cluster want Redis on three hosts: the lab's inventory with them.
HA_LAB = {"sentinel": "inventories/lab_ha.py", "cluster": "inventories/lab_ha.py"}
REDIS_MODES = {"sentinel": {"redis_mode": "sentinel"}, "cluster": {"redis_mode": "cluster"}}
# Redis syncing its append-only file on every write: a crash loses no answered write at all.
STRICT_AOF = {"always": {"redis_appendfsync": "always"}}


@dataclasses.dataclass
class Drill:
    name: str
    doc: str
    measure: Callable[[Target, Params], dict[str, Any]]
    applies: Callable[[str], bool] = lambda strategy: True
    # Second runs in another configuration, per strategy: {variant: inventory overrides}. The plain run (variant "")
    # uses the inventory as it is; a variant's result file is NAME--STRATEGY--VARIANT.json.
    extra_variants: Callable[[str], dict[str, dict[str, Any]]] = lambda strategy: {}
    plain: bool = True  # False: the drill runs only in its variants (its subject exists only there)
    # On the lab, the inventory a variant runs on instead of inventories/lab.py (its hosts, other groups):
    # {variant: inventory}.
    lab_inventories: dict[str, str] = dataclasses.field(default_factory=dict)

    def variants(self, strategy: str) -> dict[str, dict[str, Any]]:
        """{"": {}, variant: overrides, ...}: every configuration this drill runs in on this strategy."""
        if not self.applies(strategy):
            return {}
        return {**({"": {}} if self.plain else {}), **self.extra_variants(strategy)}

    def inventory(self, given: str, variant: str = "") -> str:
        """The inventory to run on: the given one, or on the lab (given is the lab's own) the variant's own."""
        own = self.lab_inventories.get(variant)
        return own if own and os.path.normpath(given) == LAB_INVENTORY else given

    def run(self, target: Target, params: Params, **options: Any) -> dict[str, Any]:
        """The drill, once the cluster has settled from whatever came before (every node and the balancer healthy)."""
        target.wait_settled()
        return self.measure(target, params, **options)


def configurations(names: list[str], strategy: str) -> list[tuple[str, dict[str, Any], list[str]]]:
    """(variant, inventory overrides, drills) for each configuration these drills run in on a strategy: the plain
    one ("", the inventory as it is) first, then each variant (Drill.variants) once, with every drill it covers.
    `./kit drill` and `./kit report` both plan from this, so that each configuration is deployed once."""
    found: dict[str, tuple[dict[str, Any], list[str]]] = {}
    for name in names:
        for variant, overrides in DRILLS[name].variants(strategy).items():
            merged, covered = found.setdefault(variant, ({}, []))
            merged.update(overrides)
            covered.append(name)
    return [(variant, *found[variant]) for variant in sorted(found)]


DRILLS: dict[str, Drill] = {
    d.name: d
    for d in (
        Drill("node-stop", "a clean stop of one app node under load (systemctl stop), then start", node_stop),
        Drill("node-kill", "SIGKILL of one app node under load; systemd brings it back", node_kill),
        Drill("rolling", "a deploy that restarts every app node, under load", rolling),
        Drill(
            "store-restart",
            "Redis (redis, token) or PostgreSQL (database) restarted under load",
            store_restart,
            lambda s: s in STORE_SERVICE,
        ),
        Drill(
            "store-freeze",
            f"Redis (redis, token) or PostgreSQL (database) frozen (SIGSTOP) for {FREEZE_SECONDS:g} s "
            "under load, then resumed",
            store_freeze,
            lambda s: s in FREEZE_UNIT,
        ),
        Drill(
            "failover",
            "redis_mode=sentinel and cluster: a Redis primary killed under load; its replica takes over",
            failover,
            lambda s: s in ("redis", "token"),
            plain=False,
            extra_variants=lambda s: REDIS_MODES,
            lab_inventories=HA_LAB,
        ),
        Drill(
            "store-kill",
            "Redis (standalone, the Sentinel primary, a Cluster primary) or PostgreSQL killed (SIGKILL) under load; "
            "systemd starts it again",
            store_kill,
            lambda s: s in STORE_SERVICE,
            extra_variants=lambda s: {**REDIS_MODES, **STRICT_AOF} if s in ("redis", "token") else {},
            lab_inventories=HA_LAB,
        ),
        Drill(
            "power-off",
            "the store's host loses power under load (every process killed at once, on the lab), then boots again",
            power_off,
            lambda s: s in STORE_SERVICE,
        ),
        Drill("contention", "200 parallel increments of one session through the balancer", contention),
        Drill(
            "cookie-limits",
            "the session size at the 4 KB cookie limit; replay of a cookie after logout",
            cookie_limits,
            lambda s: s == "cookie",
        ),
        Drill("footprint", "bytes per session in the store, 10,000 sessions", footprint),
        Drill(
            "ip-hash-spread",
            "sticky (ip_hash): each node's share of requests, clients in one /24 and in 16",
            ip_hash_spread,
            lambda s: s == "sticky",
        ),
        Drill(
            "lb-failover",
            "the balancer holding the floating address (lb_vip) loses its Nginx under load; keepalived moves the "
            "address, which stays put when that Nginx is back",
            lb_failover,
            lab_inventories={"": "inventories/lab_ha.py"},
        ),
        Drill(
            "host-loss",
            f"each host the strategy uses cut off the network under load (a dead host; on the lab), {CUT_SECONDS:g} s, "
            "then connected again",
            host_loss,
            lab_inventories={"": "inventories/lab_ha.py"},
        ),
        Drill(
            "scale-out",
            "an app node added and applied under load: clients moved, sessions lost",
            scale_out,
            # sticky pins by the client's address (ip_hash, its default) or by a cookie naming the node
            extra_variants=lambda s: {"hash_cookie": {"lb_method": "hash_cookie"}} if s == "sticky" else {},
        ),
        Drill(
            "lag",
            "replication: a write on one node seen by the others (ms); a rejoining node's snapshot (s)",
            lag,
            lambda s: s == "replication",
            # the inventory's default mode is sync: async's lag distribution beside it
            extra_variants=lambda s: {"async": {"replication_mode": "async"}},
        ),
    )
}
