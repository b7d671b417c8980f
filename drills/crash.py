"""store-kill: the session store's every process killed at once (SIGKILL: the OOM killer, a segfault) under load, and
systemd starting it again, as it does for Redis (Debian's unit) and for PostgreSQL (the kit's drop-in). Unlike
store-restart, nothing is saved on the way down: what comes back is what the store had made durable (Redis: its
append-only file; PostgreSQL: its write-ahead log). Under Sentinel or Cluster the primary is killed and comes back
before the others would fail it over: it must not come back with less than its replicas hold."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .cluster import DrillError, Target
from .load import Load, seconds_until_writes
from .measure import Params, goal, json_503_goal, outage_errors_goal, under_load, without_load
from .stores import FREEZE_UNIT, cluster_primary, redis_cli, sentinel_primary

# Writes answered this long before the crash must survive it whatever the setting (Redis' appendfsync everysec may
# lose the last second on a crash of the host); with appendfsync always, and on PostgreSQL, every answered write.
DURABLE_AFTER = 1.0
# From the store answering again to the app serving again.
SERVES_AFTER_STORE_GOAL = 2.0
BACK_WITHIN = 60.0
# power-off: how long the host stays off before it boots again
POWERED_OFF = 2.0


def _victim(target: Target) -> tuple[Any, str, str, Any]:
    """(host, systemd unit, label, answers()): the store process to kill, and how to tell it answers again."""
    vars_ = target.deployment.vars
    if target.strategy == "database":
        node = target.role("db")[0]
        probe = f"pg_isready -q -h {node.ip} -p {vars_['postgres_port']}"
        return node, FREEZE_UNIT["database"], f"PostgreSQL on {node.name}", lambda: _ok(target, node, probe)
    mode = vars_["redis_mode"]
    if mode == "sentinel":
        primary = sentinel_primary(target)
    elif mode == "cluster":
        primary = cluster_primary(target)
    else:
        node = target.role("redis")[0]
        port = vars_["redis_port"]
        return node, "redis-server.service", f"Redis on {node.name}", lambda: _pong(target, node, port)
    label = f"the {mode} primary {primary.label}"
    if mode == "cluster":
        # A restarted Cluster primary answers PING at once but refuses commands (CLUSTERDOWN) until it has its
        # view of the cluster again, 2 s at least (Redis' CLUSTER_WRITABLE_DELAY): it answers when its state is ok.
        return primary.node, primary.unit, label, lambda: _cluster_ok(target, primary.node, primary.port)
    return primary.node, primary.unit, label, lambda: _pong(target, primary.node, primary.port)


def _ok(target: Target, node, command: str) -> bool:
    # check=False: while its host boots, ssh itself fails
    return target.ssh(node, f"{command} && echo ok || true", timeout=30, check=False).strip() == "ok"


def _cluster_ok(target: Target, node, port: int) -> bool:
    return "cluster_state:ok" in redis_cli(target, node, "CLUSTER INFO", port=port, check=False)


def _pong(target: Target, node, port: int) -> bool:
    return redis_cli(target, node, "PING", port=port, check=False).strip() == "PONG"


def store_kill(target: Target, params: Params) -> dict[str, Any]:
    node, unit, label, answers = _victim(target)

    def kill() -> None:
        target.ssh(node, f"systemctl kill --signal=SIGKILL '{unit}'")
        time.sleep(0.2)  # systemd has seen the unit die: what answers from here on is the restarted store

    result = _crash(target, params, kill, label, answers, {"store": label, "unit": unit}, host_down=False)
    result["restored"] = f"{label} started again by systemd"
    return result


def power_off(target: Target, params: Params) -> dict[str, Any]:
    """The store's host loses power: every process on it killed at once (its balancer too, on the lab's default
    layout), kept off POWERED_OFF seconds, booted again; its services start as at any boot."""
    from lab import control
    from lab.sh import LabError

    node, _unit, label, answers = _victim(target)
    times: dict[str, float] = {}

    def kill() -> None:
        try:
            times.update(control.power_cycle(node.name, POWERED_OFF, wait=False))
        except LabError as error:
            raise DrillError(f"power-off needs the lab as root (python -m lab up): {error}") from None

    result = _crash(
        target, params, kill, f"{label} (its host powered off)", answers, {"host": node.name}, host_down=True
    )
    figures = result["figures"]
    figures.update({"powered_off_seconds": times.get("off_seconds")})
    # not a store goal here: the host's balancer and every other service boot along with the store
    result["goals"].pop("serving_after_store_seconds")
    try:
        control.wait_booted(node.name)
    except LabError as error:
        raise DrillError(f"{node.name} did not boot again: {error}") from None
    result["restored"] = f"{node.name} booted again, every unit running"
    return result


def _crash(
    target: Target,
    params: Params,
    kill: Callable[[], None],
    label: str,
    answers: Callable[[], bool],
    extra: dict[str, Any],
    host_down: bool,
) -> dict[str, Any]:
    """Under load: kill(), then wait for the store to answer; the figures and goals of a crash. With host_down the
    crash took the whole host, so a refused connection is an answer too (its balancer may be gone with it); without,
    every failure must be the app's JSON 503."""

    def action(mark):
        mark("kill")
        kill()
        started = time.monotonic()
        while not answers():
            if time.monotonic() - started > BACK_WITHIN:
                raise DrillError(f"{label}: not answering {BACK_WITHIN:g} s after the crash")
            time.sleep(0.1)
        mark("store_back")
        return extra

    figures = under_load(target, params, action)
    load: Load = figures["_load"]
    kill_at, back = figures["events"]["kill"], figures["events"]["store_back"]
    failed_after = [o.end for o in load.outcomes if o.op != "check" and o.failed and o.end >= kill_at]
    figures["store_back_seconds"] = round(back - kill_at, 2)
    # the app serves again when the last failure ends: how long after the store answered
    figures["serving_after_store_seconds"] = round(max(0.0, max(failed_after, default=kill_at) - back), 2)
    figures["seconds_until_writes"] = seconds_until_writes(load.outcomes, kill_at)
    figures.update(losses(load, kill_at))
    strict = target.strategy == "database" or target.deployment.vars["redis_appendfsync"] == "always"
    goals = {
        **(
            {"errors_are_503_or_refused": outage_errors_goal(figures)}
            if host_down
            else {"errors_are_json_503": json_503_goal(figures)}
        ),
        "sessions_lost": goal(0, figures["sessions_lost"], figures["sessions_lost"] == 0),
        "answered_increments_lost": (
            goal(0, figures["increments_lost"], figures["increments_lost"] == 0)
            if strict
            else goal(
                f"0 answered {DURABLE_AFTER:g} s before the crash",
                figures["increments_lost_answered_before"],
                figures["increments_lost_answered_before"] == 0,
            )
        ),
        "serving_after_store_seconds": goal(
            f"<= {SERVES_AFTER_STORE_GOAL:g}",
            figures["serving_after_store_seconds"],
            figures["serving_after_store_seconds"] <= SERVES_AFTER_STORE_GOAL,
        ),
    }
    return {"figures": without_load(figures), "goals": goals}


def losses(load: Load, crash: float) -> dict[str, int]:
    """Answered increments missing from the sessions' final counters: all of them, and those answered more than
    DURABLE_AFTER before the crash (a client's loss beyond the increments it had answered in that last window)."""
    lost = lost_before = 0
    for client in load.clients:
        if client.counter_final is None:
            continue
        missing = max(0, client.increments - client.counter_final)
        recent = sum(1 for at in client.answered if crash - DURABLE_AFTER <= at <= crash)
        lost += missing
        lost_before += max(0, missing - recent)
    return {"increments_lost": lost, "increments_lost_answered_before": lost_before}
