"""host-loss: a host of the cluster cut off the network under load (its link down: a dead host, a pulled cable; on
the lab, `python -m lab cut`), kept away CUT_SECONDS, then connected again; each host whose roles the strategy
uses, in turn. Unlike a stopped service, a cut host answers nothing at all: its peers wait for timeouts, and what it
held (the floating address, a Redis primary, PostgreSQL) must be taken over by the others, with no failover code of
the kit's own.

Per host: failed requests, the longest time with no answered request, sessions lost, answered increments lost,
seconds until writes succeed again, and the time from its return until the cluster is whole (every app node
healthy, one balancer holding the address, every Redis replica connected, every PostgreSQL answering)."""

from __future__ import annotations

import time
from typing import Any

from .balancing import holder, silence_goal
from .cluster import DrillError, Target
from .crash import losses
from .load import Load, longest_silence, seconds_until_writes
from .measure import ATOMIC, SHARED, Params, goal, outage_errors_goal, under_load, without_load
from .stores import redis_cli, sentinel_primary

CUT_SECONDS = 30.0
# A store's primary lost: writes answered again within this long (the failover engines decide, then the app follows).
WRITES_BACK_GOAL = 15.0
WHOLE_WITHIN = 180.0


def matters(target: Target) -> list[Any]:
    """The hosts whose roles the strategy uses: every balancer and app node, and its store's hosts."""
    used = {"lb", "app", *target.deployment.strategy.needs}
    return [node for node in target.deployment.nodes if used & set(node.roles)]


def _store_primary_here(target: Target, node) -> str | None:
    """What primary this host holds for the strategy's store, named; None when none."""
    needs = target.deployment.strategy.needs
    if "db" in needs and target.role("db")[0].name == node.name:
        return "PostgreSQL"
    if "redis" not in needs or "redis" not in node.roles:
        return None
    mode = target.deployment.vars["redis_mode"]
    if mode == "sentinel":
        return "the Redis primary" if sentinel_primary(target).node.name == node.name else None
    if mode == "cluster":
        return (
            "Redis Cluster primaries"
            if any(n.name == node.name for n, _ in target.deployment.cluster_instances())
            else None
        )
    return "Redis" if target.role("redis")[0].name == node.name else None


def whole(target: Target) -> bool:
    """Every app node healthy; one balancer holding lb_vip; every Redis replica connected to its primary; every
    PostgreSQL answering."""
    if not all(target.healthy(node) for node in target.role("app")):
        return False
    if target.deployment.vars.get("lb_vip") and holder(target) is None:
        return False
    needs = target.deployment.strategy.needs
    if "redis" in needs:
        mode = target.deployment.vars["redis_mode"]
        if mode == "sentinel":
            primary = sentinel_primary(target)
            info = redis_cli(target, primary.node, "INFO replication", check=False)
            if f"connected_slaves:{len(target.role('redis')) - 1}" not in info:
                return False
        elif mode == "cluster":
            node, port = target.deployment.cluster_instances()[0]
            rows = redis_cli(target, node, "CLUSTER NODES", port=port, check=False).splitlines()
            if not rows or any("fail" in row.split()[2] or "disconnected" in row for row in rows if row.split()):
                return False
        elif redis_cli(target, target.role("redis")[0], "PING", check=False).strip() != "PONG":
            return False
    if "db" in needs:
        port = target.deployment.vars["postgres_port"]
        for node in target.role("db"):
            probe = f"pg_isready -q -h {node.ip} -p {port} && echo ok || true"
            if target.ssh(node, probe, timeout=30, check=False).strip() != "ok":
                return False
    return True


def _cut_one(target: Target, params: Params, node, seconds: float) -> tuple[dict[str, Any], dict[str, Any]]:
    from lab import control
    from lab.sh import LabError

    held_address = bool(target.deployment.vars.get("lb_vip")) and getattr(holder(target), "name", None) == node.name
    primary = _store_primary_here(target, node)

    def action(mark):
        mark("cut")
        try:
            control.link(node.name, up=False)
        except LabError as error:
            raise DrillError(f"host-loss needs the lab as root (python -m lab up): {error}") from None
        try:
            time.sleep(seconds)
        finally:
            control.link(node.name, up=True)
        mark("back")
        started = time.monotonic()
        while not whole(target):
            if time.monotonic() - started > WHOLE_WITHIN:
                raise DrillError(f"the cluster was not whole {WHOLE_WITHIN:g} s after {node.name} came back")
            time.sleep(0.5)
        mark("whole")
        return {}

    figures = under_load(target, params, action)
    load: Load = figures["_load"]
    cut, back, done = (figures["events"][k] for k in ("cut", "back", "whole"))
    figures.update(
        {
            "host": node.name,
            "roles": list(node.roles),
            "held_address": held_address,
            "store_primary": primary,
            "longest_silence_seconds": longest_silence(load.outcomes, since=cut),
            "seconds_until_writes": seconds_until_writes(load.outcomes, cut),
            "whole_after_return_seconds": round(done - back, 2),
            **losses(load, cut),
        }
    )
    goals = {"errors_are_503_or_refused": outage_errors_goal(figures)}
    if held_address:
        goals["longest_silence_seconds"] = silence_goal(figures)
    if target.strategy in SHARED or "app" not in node.roles:  # sticky's sessions on a lost app node go with it
        goals["sessions_lost"] = goal(0, figures["sessions_lost"], figures["sessions_lost"] == 0)
    if target.strategy in ATOMIC:
        goals["answered_increments_lost"] = goal(0, figures["increments_lost"], figures["increments_lost"] == 0)
    if primary:
        goals["writes_back_within"] = goal(
            f"<= {WRITES_BACK_GOAL:g} s",
            figures["seconds_until_writes"],
            figures["seconds_until_writes"] <= WRITES_BACK_GOAL,
        )
    return without_load(figures), goals


def host_loss(
    target: Target, params: Params, hosts: list[str] | None = None, cut_seconds: float = CUT_SECONDS
) -> dict[str, Any]:
    """Each host that matters (or those named), cut off for cut_seconds under load, in turn."""
    chosen = [node for node in matters(target) if hosts is None or node.name in hosts]
    if not chosen:
        raise DrillError(f"host-loss: none of {hosts} is a host this strategy uses")
    per_host, goals = {}, {}
    for node in chosen:
        target.wait_settled()
        figures, own = _cut_one(target, params, node, cut_seconds)
        per_host[node.name] = figures
        goals.update({f"{node.name}: {name}": value for name, value in own.items()})
    worst = lambda key: max(f[key] for f in per_host.values())  # noqa: E731
    figures = {
        "hosts": per_host,
        "cut_seconds": cut_seconds,
        "requests": sum(f["requests"] for f in per_host.values()),
        "failed": sum(f["failed"] for f in per_host.values()),
        "sessions_lost": sum(f["sessions_lost"] for f in per_host.values()),
        "increments_lost": sum(f["increments_lost"] for f in per_host.values()),
        "longest_silence_seconds": worst("longest_silence_seconds"),
        "seconds_until_writes": worst("seconds_until_writes"),
        "whole_after_return_seconds": worst("whole_after_return_seconds"),
    }
    return {"figures": figures, "goals": goals, "restored": f"{', '.join(per_host)} connected again, the cluster whole"}
