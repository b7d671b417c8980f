"""The drills on the session store: Redis or PostgreSQL restarted (store-restart) or frozen (store-freeze) under
load, and a Redis primary killed under Sentinel or Cluster (failover)."""

from __future__ import annotations

import dataclasses
import shlex
import subprocess
import time
from collections.abc import Callable
from typing import Any

from session_kit.variables import Duration

from .cluster import DrillError, Target
from .load import Load, seconds_until_writes
from .measure import Params, goal, json_503_goal, under_load, without_load

# -- store-restart --------------------------------------------------------------------------------------------------

STORE_SERVICE = {
    "redis": ("redis", "redis-server"),
    "token": ("redis", "redis-server"),
    "database": ("db", "postgresql"),
}


def store_restart(target: Target, params: Params) -> dict[str, Any]:
    role, service = STORE_SERVICE[target.strategy]
    node = target.role(role)[0]

    def action(mark):
        mark("restart")
        target.ssh(node, f"systemctl restart {service}")
        mark("restarted")
        return {"store": f"{service} on {node.name}"}

    figures = under_load(target, params, action)
    goals = {
        "errors_are_json_503": json_503_goal(figures),
        "sessions_lost": goal(0, figures["sessions_lost"], figures["sessions_lost"] == 0),
    }
    return {"figures": without_load(figures), "goals": goals, "restored": f"{service} running again"}


# -- store-freeze ---------------------------------------------------------------------------------------------------

FREEZE_SECONDS = 5.0
# The app fails a request whose store does not answer within STORE_TIMEOUT (2 s, sample_app/stores/base.py); the
# slowest request may take that, a reconnection (its connect timeout, 2 s more at most) and the balancer's hop.
LONGEST_REQUEST_GOAL = 5.0
# Every process of the store's unit: the Debian package's postgresql.service starts nothing itself (the cluster is
# postgresql@VERSION-main), so the frozen unit is found by pattern.
FREEZE_UNIT = {"redis": "redis-server.service", "token": "redis-server.service", "database": "postgresql@*.service"}


def store_freeze(target: Target, params: Params) -> dict[str, Any]:
    """SIGSTOP to every process of the store for FREEZE_SECONDS, under load, then SIGCONT: a hung host or a frozen VM,
    which accepts connections and acknowledges what is sent but answers nothing, unlike a restart, which refuses or
    resets at once. The app must fail its requests with a JSON 503 within seconds, not hold them until the balancer
    gives up, and serve again as soon as the store answers."""
    role, _ = STORE_SERVICE[target.strategy]
    node, unit = target.role(role)[0], FREEZE_UNIT[target.strategy]

    running = target.ssh(node, f"systemctl list-units --state=running --plain --no-legend '{unit}'").split()
    if not running:
        raise DrillError(f"{node.name}: no running unit matches {unit}: nothing to freeze")
    thaw = f"systemctl kill --signal=SIGCONT '{unit}'"

    def action(mark):
        # The host thaws the store itself 30 s on, whatever becomes of this process or its SSH connection (a
        # SIGCONT to a running process changes nothing).
        target.ssh(node, f"systemd-run --quiet --on-active={int(FREEZE_SECONDS) + 30} {thaw}")
        mark("freeze")
        try:
            target.ssh(node, f"systemctl kill --signal=SIGSTOP '{unit}'")
            time.sleep(FREEZE_SECONDS)
        finally:
            for attempt in range(3):
                try:
                    target.ssh(node, thaw, timeout=30)
                    break
                except (DrillError, subprocess.TimeoutExpired):
                    if attempt == 2:
                        raise
            mark("thaw")
        return {"store": f"{unit} on {node.name}", "frozen_seconds": FREEZE_SECONDS}

    figures = under_load(target, params, action)
    load: Load = figures["_load"]
    timed = [o for o in load.outcomes if o.op != "check"]
    longest = max((o.end - o.start for o in timed), default=0.0)
    thaw = figures["events"].get("thaw")
    last_failure = max((o.end for o in timed if o.failed), default=None)
    figures["longest_request_seconds"] = round(longest, 2)
    figures["failures_end_after_thaw_seconds"] = (
        round(max(0.0, last_failure - thaw), 2) if thaw is not None and last_failure is not None else 0.0
    )
    goals = {
        "errors_are_json_503": json_503_goal(figures),
        "longest_request_seconds": goal(
            f"<= {LONGEST_REQUEST_GOAL:g}", figures["longest_request_seconds"], longest <= LONGEST_REQUEST_GOAL
        ),
        "sessions_lost": goal(0, figures["sessions_lost"], figures["sessions_lost"] == 0),
        # counter_higher (an increment answered 503 and applied when the store resumed) is measured, not a
        # goal: what the store had received before it froze, no client can take back
        "accepted_increments_lost": goal(0, figures["counter_lower"], figures["counter_lower"] == 0),
    }
    return {"figures": without_load(figures), "goals": goals, "restored": f"{unit} resumed (SIGCONT)"}


# -- failover (Redis Sentinel, Redis Cluster) -------------------------------------------------------------------------


def redis_cli(
    target: Target, node, command: str, port: int | None = None, sentinel: bool = False, check: bool = True
) -> str:
    """One redis-cli command on a redis host as admin (port: a Cluster instance's), or (sentinel) to its Sentinel,
    which takes no login."""
    vars_ = target.deployment.vars
    if sentinel:
        return target.ssh(node, f"redis-cli -h {node.ip} -p {vars_['redis_sentinel_port']} {command}", timeout=30)
    password = target.deployment.secrets()["redis_admin_password"]
    return target.ssh(
        node,
        f"REDISCLI_AUTH={shlex.quote(password)} redis-cli --no-auth-warning --user admin "
        f"-h {node.ip} -p {port or vars_['redis_port']} {command}",
        timeout=30,
        check=check,
    )


@dataclasses.dataclass
class _Primary:
    """The Redis primary a failover drill kills: where, its unit, and how to tell that another took its place."""

    node: Any
    port: int
    unit: str
    label: str
    promoted: Callable[[], str | None]  # the new primary's label once one took over, else None
    bound: float  # seconds the failover may take before writes must be back (the goal)


def sentinel_primary(target: Target) -> _Primary:
    sentinels = target.deployment.sentinels()
    name = target.deployment.vars["redis_sentinel_master"]
    by_ip = {node.ip: node for node in target.role("redis")}

    def named_by(sentinel) -> str:
        return (redis_cli(target, sentinel, f"SENTINEL get-master-addr-by-name {name}", sentinel=True).split() or [""])[
            0
        ]

    old = by_ip.get(named_by(sentinels[0]))
    if old is None:
        raise DrillError(f"{sentinels[0].name}: its Sentinel names no redis host as the primary")
    watcher = next(node for node in sentinels if node.name != old.name)

    def promoted() -> str | None:
        now = named_by(watcher)
        return by_ip[now].name if now in by_ip and now != old.ip else None

    down_after = Duration(high=3600).seconds(target.deployment.vars["redis_sentinel_down_after"])
    return _Primary(old, target.deployment.vars["redis_port"], "redis-server", old.name, promoted, down_after + 10)


def _cluster_nodes(target: Target, node, port: int) -> list[list[str]]:
    return [
        line.split()
        for line in redis_cli(target, node, "CLUSTER NODES", port=port, check=False).splitlines()
        if len(line.split()) >= 8
    ]


def cluster_primary(target: Target) -> _Primary:
    """The primary serving slot 0, watched from an instance on another host."""
    instances = target.deployment.cluster_instances()
    rows = _cluster_nodes(target, *instances[0])
    row = next((r for r in rows if "master" in r[2] and "fail" not in r[2] and r[8:9] and r[8].startswith("0-")), None)
    if row is None:
        raise DrillError(f"no primary serves slot 0: {rows}")
    address = row[1].split("@")[0]
    ip, port = address.rsplit(":", 1)
    old = next(node for node, _ in instances if node.ip == ip)
    watcher = (
        next((n, p) for n, p in instances if n.ip != ip)
        if len({n.ip for n, _ in instances}) > 1
        else next((n, p) for n, p in instances if p != int(port))
    )

    def promoted() -> str | None:
        for r in _cluster_nodes(target, *watcher):
            if "master" in r[2] and "fail" not in r[2] and r[8:9] and r[8].startswith("0-") and r[0] != row[0]:
                return r[1].split("@")[0]
        return None

    timeout = Duration(high=3600).seconds(target.deployment.vars["redis_cluster_node_timeout"])
    return _Primary(old, int(port), f"redis-server@{port}", address, promoted, timeout + 10)


def failover(target: Target, params: Params, within: float = 60) -> dict[str, Any]:
    """redis_mode=sentinel or cluster: a Redis primary killed (SIGKILL, kept down) under load. Its replica must take
    over (the Sentinels agree it is down after redis_sentinel_down_after, or the Cluster's other primaries after
    redis_cluster_node_timeout) and the app nodes follow: how long until writes succeed again, what failed
    meanwhile, what was lost. Then the old primary is started again and must rejoin as a replica."""
    mode = target.deployment.vars["redis_mode"]
    if mode == "sentinel" and target.deployment.sentinels():
        old = sentinel_primary(target)
    elif mode == "cluster" and target.deployment.cluster_instances():
        old = cluster_primary(target)
    else:
        raise DrillError(
            "failover needs redis_mode=sentinel or cluster (python -m drills failover --data redis_mode=sentinel)"
        )
    # While it is down, systemd must not bring it back (redis-server's units say Restart=always): a runtime drop-in,
    # gone at the next boot, and removed by the restore.
    no_restart = f"/run/systemd/system/{old.unit}.service.d/drill-no-restart.conf"

    def action(mark):
        target.ssh(
            old.node,
            f"mkdir -p {no_restart.rsplit('/', 1)[0]} && "
            f"printf '[Service]\\nRestart=no\\n' > {no_restart} && systemctl daemon-reload",
        )
        mark("kill")
        target.ssh(old.node, f"systemctl kill --signal=SIGKILL {old.unit}")
        started = time.monotonic()
        while time.monotonic() - started < within:
            promoted = old.promoted()
            if promoted:
                mark("promoted")
                return {
                    "mode": mode,
                    "killed": old.label,
                    "promoted": promoted,
                    "seconds_until_promoted": round(time.monotonic() - started, 2),
                }
            time.sleep(0.1)
        raise DrillError(f"no replica took over within {within} s of killing the primary {old.label}")

    try:
        figures = under_load(target, params, action)
    finally:
        target.ssh(old.node, f"rm -f {no_restart} && systemctl daemon-reload && systemctl start {old.unit}")
    started = time.monotonic()
    while redis_cli(target, old.node, "ROLE", port=old.port, check=False).split()[:1] != ["slave"]:
        if time.monotonic() - started > within:
            raise DrillError(f"{old.label}: the old primary did not rejoin as a replica within {within} s")
        time.sleep(0.2)
    load: Load = figures["_load"]
    kill = figures["events"]["kill"]
    # Writes are back when the last one fails: with Redis Cluster the other primaries' slots keep taking writes, so
    # the first success after the kill says nothing; the last failure says when the killed primary's slots answer.
    failed = [o for o in load.outcomes if o.op == "increment" and o.start >= kill and o.failed]
    figures["seconds_until_writes"] = seconds_until_writes(load.outcomes, kill)
    figures["write_outage_seconds"] = (
        round(max(o.end for o in failed) - min(o.start for o in failed), 2) if failed else 0.0
    )
    figures["increments_failed"] = len(failed)
    wait = "down-after" if mode == "sentinel" else "node timeout"
    goals = {
        "writes_back_within": goal(
            f"<= {old.bound:g} s ({wait} + 10 s)",
            figures["seconds_until_writes"],
            figures["seconds_until_writes"] <= old.bound,
        ),
        "errors_are_json_503": json_503_goal(figures),
        "sessions_lost": goal(0, figures["sessions_lost"], figures["sessions_lost"] == 0),
    }
    return {
        "figures": without_load(figures),
        "goals": goals,
        "restored": f"{old.label} started again, a replica of {figures['promoted']} "
        f"({time.monotonic() - started:.1f} s)",
    }
