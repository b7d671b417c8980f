"""The drills: each breaks (or grows, or fills) the deployed cluster on purpose while the load generator drives the
balancer, measures what the clients saw, puts the cluster back as it found it, and returns its figures as data.

A drill returns {"figures": {...}, "goals": {name: {"expected": ..., "measured": ..., "met": bool}}, "restored": str}.
Goals are the ones issue 8 sets; a goal that does not apply to a strategy is not listed (sticky keeps its sessions in
one node's memory, so losing them with the node is what it does: measured and reported, not a goal).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import secrets
import shlex
import subprocess
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from session_kit.validate import Duration

from .cluster import DrillError, Target
from .load import Load, failure_window, summarize, upstreams_of_failures

LAB_INVENTORY = "inventories/lab.py"
SHARED = ("cookie", "database", "replication", "redis", "token")
ATOMIC = ("database", "redis", "token")


@dataclasses.dataclass
class Params:
    clients: int = 200
    seconds: float = 9.0  # of load around the event (a third before it, the rest after)
    think: float = 0.1  # pause between one client's requests (seconds, randomised +-50%)


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
    # On the lab, the inventory the drill runs on instead of inventories/lab.py (its hosts, other groups).
    lab_inventory: str | None = None

    def variants(self, strategy: str) -> dict[str, dict[str, Any]]:
        """{"": {}, variant: overrides, ...}: every configuration this drill runs in on this strategy."""
        if not self.applies(strategy):
            return {}
        return {**({"": {}} if self.plain else {}), **self.extra_variants(strategy)}

    def inventory(self, given: str) -> str:
        """The inventory to run on: the given one, or on the lab (given is the lab's own) lab_inventory."""
        return self.lab_inventory if self.lab_inventory and os.path.normpath(given) == LAB_INVENTORY else given

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


def goal(expected: Any, measured: Any, met: bool) -> dict[str, Any]:
    return {"expected": expected, "measured": measured, "met": bool(met)}


# -- the load around an event ---------------------------------------------------------------------------------------


def under_load(target: Target, params: Params, action: Callable[[Callable[[str], None]], Any]) -> dict[str, Any]:
    """Log in the pool, drive it, run `action(mark)` in a thread a third of the way in (mark(name) records the instant
    of an event), keep the load on for the rest, then check every session once more."""
    return under_load_from(target, params, action, None)


def under_load_from(
    target: Target, params: Params, action: Callable[[Callable[[str], None]], Any], addresses: list[str] | None
) -> dict[str, Any]:
    """under_load, with the clients spread over these source addresses (None: this machine's own)."""

    async def main():
        load = Load(
            target.lb_url,
            clients=params.clients,
            bearer=target.deployment.strategy.bearer,
            think=params.think,
            limit_seconds=params.seconds * 20 + 300,
            local_addresses=addresses,
            ssl_context=target.ssl_context(),
        )
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


def _strip(figures: dict[str, Any]) -> dict[str, Any]:
    figures.pop("_load", None)
    return figures


def json_503_goal(figures: dict[str, Any]) -> dict[str, Any]:
    """Every failed request the app's JSON 503 (a store away): counts the others into figures["failed_not_503"]."""
    not_503 = figures["failed_not_503"] = sum(
        count for error, count in figures["errors"].items() if not error.startswith("503")
    )
    return goal(0, not_503 + figures["failed_not_json"], not_503 == 0 and figures["failed_not_json"] == 0)


def zero_loss_goals(target: Target, figures: dict[str, Any]) -> dict[str, Any]:
    if target.strategy not in SHARED:
        return {}
    return {
        "failed_requests": goal(0, figures["failed"], figures["failed"] == 0),
        "sessions_lost": goal(0, figures["sessions_lost"], figures["sessions_lost"] == 0),
    }


# -- node-stop, node-kill -------------------------------------------------------------------------------------------


def _node(target: Target):
    apps = target.role("app")
    return apps[len(apps) // 2]


def node_stop(target: Target, params: Params) -> dict[str, Any]:
    node = _node(target)

    def action(mark):
        mark("stop")
        target.ssh(node, "systemctl stop session-kit-app")
        mark("stopped")
        time.sleep(2)
        target.ssh(node, "systemctl start session-kit-app")
        mark("start")
        return {"node": node.name, "seconds_until_serving": target.wait_healthy(node)}

    figures = under_load(target, params, action)
    return {
        "figures": _strip(figures),
        "goals": zero_loss_goals(target, figures),
        "restored": f"{node.name} started again and healthy",
    }


def node_kill(target: Target, params: Params) -> dict[str, Any]:
    node = _node(target)
    address = f"{node.ip}:{target.deployment.vars['app_port']}"

    def action(mark):
        mark("kill")
        target.ssh(node, "systemctl kill --signal=SIGKILL session-kit-app")
        # systemd brings it back (Restart=on-failure): the seconds until it serves again
        time.sleep(0.5)
        return {"node": node.name, "seconds_until_serving": target.wait_healthy(node, within=120)}

    figures = under_load(target, params, action)
    load: Load = figures["_load"]
    sent_to = upstreams_of_failures(load.outcomes, target.access_log(load.run_id))
    on_killed = sum(1 for nodes in sent_to.values() if address in nodes)
    figures["failed_on_killed_node"] = on_killed
    figures["failed_elsewhere"] = figures["failed"] - on_killed
    goals = {}
    if target.strategy in SHARED:
        goals["sessions_lost"] = goal(0, figures["sessions_lost"], figures["sessions_lost"] == 0)
        goals["failed_only_on_killed_node"] = goal(0, figures["failed_elsewhere"], figures["failed_elsewhere"] == 0)
    return {"figures": _strip(figures), "goals": goals, "restored": f"{node.name} restarted by systemd and healthy"}


# -- rolling --------------------------------------------------------------------------------------------------------


def rolling(target: Target, params: Params) -> dict[str, Any]:
    """A deploy that restarts every app node (a changed app_session_ttl), under load; then the TTL is put back."""
    ttl = int(target.deployment.vars["app_session_ttl"])

    def action(mark):
        mark("deploy")
        applied = target.apply({"app_session_ttl": ttl + 1})
        mark("deployed")
        return {"deploy": applied}

    # the deploy itself is the event and lasts half a minute: a few seconds of load around it are enough
    params = dataclasses.replace(params, seconds=6)
    figures = under_load(target, params, action)
    # no load any more: put the TTL back restarting every node at once (one health wait instead of one per node)
    restored = target.apply_unloaded()
    return {
        "figures": _strip(figures),
        "goals": zero_loss_goals(target, figures),
        "restored": f"app_session_ttl back to {ttl} (every node restarted at once, no load: {restored['seconds']} s)",
    }


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
    return {"figures": _strip(figures), "goals": goals, "restored": f"{service} running again"}


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
    return {"figures": _strip(figures), "goals": goals, "restored": f"{unit} resumed (SIGCONT)"}


# -- failover (Redis Sentinel, Redis Cluster) -------------------------------------------------------------------------


def _redis_cli(
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


def _sentinel_primary(target: Target) -> _Primary:
    sentinels = target.deployment.sentinels()
    name = target.deployment.vars["redis_sentinel_master"]
    by_ip = {node.ip: node for node in target.role("redis")}

    def named_by(sentinel) -> str:
        return (
            _redis_cli(target, sentinel, f"SENTINEL get-master-addr-by-name {name}", sentinel=True).split() or [""]
        )[0]

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
        for line in _redis_cli(target, node, "CLUSTER NODES", port=port, check=False).splitlines()
        if len(line.split()) >= 8
    ]


def _cluster_primary(target: Target) -> _Primary:
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
        old = _sentinel_primary(target)
    elif mode == "cluster" and target.deployment.cluster_instances():
        old = _cluster_primary(target)
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
    while _redis_cli(target, old.node, "ROLE", port=old.port, check=False).split()[:1] != ["slave"]:
        if time.monotonic() - started > within:
            raise DrillError(f"{old.label}: the old primary did not rejoin as a replica within {within} s")
        time.sleep(0.2)
    load: Load = figures["_load"]
    kill = figures["events"]["kill"]
    # Writes are back when the last one fails: with Redis Cluster the other primaries' slots keep taking writes, so
    # the first success after the kill says nothing; the last failure says when the killed primary's slots answer.
    failed = [o for o in load.outcomes if o.op == "increment" and o.start >= kill and o.failed]
    figures["seconds_until_writes"] = round(max(o.end for o in failed) - kill, 2) if failed else 0.0
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
        "figures": _strip(figures),
        "goals": goals,
        "restored": f"{old.label} started again, a replica of {figures['promoted']} "
        f"({time.monotonic() - started:.1f} s)",
    }


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
            out = _redis_cli(target, node, "INFO memory")  # standalone (footprint runs in the plain configuration)
            return float(next(line.split(":")[1] for line in out.splitlines() if line.startswith("used_memory:")))

        return redis_bytes
    if strategy == "database":

        def table_bytes() -> float:
            return float(_psql(target, "SELECT coalesce(pg_total_relation_size('sessions'), 0)").strip() or 0)

        return table_bytes
    if strategy in ("sticky", "replication"):
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


# -- ip-hash-spread, scale-out (need the lab: client addresses in many /24s) -------------------------------------------


def _lab_client_addresses(target: Target) -> list[str]:
    if not target.inventory.endswith("inventories/lab.py"):
        raise DrillError("this drill needs the lab (clients in many /24s come from the lab's bridge)")
    from lab.config import CLIENT_NETWORKS
    from lab.network import client_addresses

    return client_addresses(CLIENT_NETWORKS)


def _load_once(target: Target, params: Params, addresses: list[str] | None, seconds: float) -> dict[str, Any]:
    async def main():
        load = Load(
            target.lb_url,
            clients=params.clients,
            bearer=target.deployment.strategy.bearer,
            think=params.think,
            limit_seconds=seconds,
            local_addresses=addresses,
            ssl_context=target.ssl_context(),
        )
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
    addresses = _lab_client_addresses(target)
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


def scale_out(target: Target, params: Params) -> dict[str, Any]:
    """A new app node added to the lab's inventory and applied under load: clients whose requests move to another
    node, sessions lost. Then the node is removed again and the cluster applied as it was."""
    import subprocess
    import sys

    from .cluster import ROOT

    addresses = _lab_client_addresses(target)
    hosts = len(target.deployment.nodes)

    def lab_hosts(count: int) -> None:
        result = subprocess.run(
            [sys.executable, "-m", "lab", "up", "--hosts", str(count)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if result.returncode != 0:
            raise DrillError(f"lab up --hosts {count}: {result.stderr.strip()[-300:]}")
        _lab_client_addresses(target)  # routes back to the client networks in the new host too

    def action(mark):
        mark("apply")
        applied = target.apply()
        mark("applied")
        return {"deploy": applied, "app_nodes_before": hosts - 1, "app_nodes_after": hosts}

    params = dataclasses.replace(params, seconds=6)  # the apply itself (a new node's first deploy) is the event
    try:
        # the new host is made before the load starts (a server that has come up, not yet in the inventory's
        # cluster): the lab's inventory lists it from now on, the balancer only once the apply has put it there
        lab_hosts(hosts + 1)
        figures = under_load_from(target, params, action, addresses)
    finally:
        lab_hosts(hosts)
        restored = target.apply_unloaded()  # replication: the peers that learnt the new node restart at once
    load: Load = figures["_load"]
    before_at, after_at = figures["events"]["apply"], figures["events"]["applied"]
    moved = considered = 0
    for client in range(params.clients):
        before = _main_node(o.node for o in load.outcomes if o.client == client and o.end < before_at and o.node)
        after = _main_node(o.node for o in load.outcomes if o.client == client and o.start > after_at and o.node)
        if before and after:
            considered += 1
            moved += before != after
    pinned = target.deployment.lb_method != "round_robin"
    figures["clients_moved_share"] = round(moved / considered, 3) if pinned and considered else None
    figures["sessions_lost_share"] = round(figures["sessions_lost"] / params.clients, 3)
    goals = zero_loss_goals(target, figures) if target.strategy in SHARED else {}
    goals.pop("failed_requests", None)  # a reload under load may fail a request the balancer had in hand
    return {
        "figures": _strip(figures),
        "goals": goals,
        "restored": f"the added node removed and the cluster applied as before ({restored['seconds']} s)",
    }


def _main_node(nodes) -> str | None:
    counts: dict[str, int] = {}
    for node in nodes:
        counts[node] = counts.get(node, 0) + 1
    return max(counts, key=counts.get) if counts else None


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
            extra_variants=lambda s: {"sentinel": {"redis_mode": "sentinel"}, "cluster": {"redis_mode": "cluster"}},
            lab_inventory="inventories/lab_ha.py",
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
