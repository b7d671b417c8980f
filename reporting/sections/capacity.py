"""A capacity model: what each part of the cluster would carry, from this run's CPU per request and bytes per
session, and what lies past one Redis and one PostgreSQL."""

from __future__ import annotations

from session_kit.strategies import STRATEGIES

from ..document import Report
from ..sources import Ref

STORE_LABEL = {"redis": "Redis", "token": "Redis", "database": "PostgreSQL"}


def capacity(report: Report) -> None:
    report.heading("A capacity model")
    report.para(
        "From this run's cost per request: the CPU seconds each part used during the `GET /session` load, "
        "divided by the requests served, and the footprint drill's bytes per session. The app runs "
        "`app_workers` processes per node (by default one per core; sticky and replication one), so a "
        "node carries its per-core rate times the cores its workers can use; Redis serves commands on "
        "one thread; Nginx and PostgreSQL use every core of their host. The parts of the lab share one "
        "machine's cores, so each capacity is "
        "what that part alone would carry on cores like these."
    )
    for st in report.strategies or list(STRATEGIES):
        report.para(f"**{st}**: " + capacity_of(report, st))
    report.heading("Past one Redis, past one PostgreSQL", 3)
    report.para(
        "One Redis is one point of failure and one thread. For availability, `redis_mode=sentinel` "
        "deploys a primary, its replicas and Redis Sentinel, which promotes a replica when the primary "
        "fails, and the app follows it; for capacity, `redis_mode=cluster` deploys Redis Cluster, which "
        "spreads keys over three primaries by hash slot: a session is one hash under one key (token: one "
        "key per token), so no session operation ever needs more than one slot and the app's scripts run "
        "unchanged on the slot's shard. The failover drill above measures both (a primary killed under "
        "load: the seconds until writes are back). "
        "Past one PostgreSQL, a streaming replica with a failover manager (Patroni, or repmgr) gives "
        "availability; capacity for sessions, which are written on nearly every request, does not come "
        "from read replicas but from partitioning the sessions table by session id across servers, or "
        "from moving sessions to Redis."
    )


def capacity_of(report: Report, st: str) -> str:
    s = report.s
    file = s.loads.get(st)
    parts = []
    requests = s.ref(file, "endpoints", "read", "requests")
    app_cpu = s.ref(file, "endpoints", "read", "cpu_seconds", "app")
    nodes = s.ref(file, "app_nodes")
    workers, app_cores = s.ref(file, "workers", "app"), s.ref(file, "cores", "app")
    capacities: list[tuple[str, float]] = []
    if requests and app_cpu and app_cpu.value:
        per_core = s.derive("per_second", [requests, app_cpu], digits=0)[0]
        cost = s.derive("cpu_ms_per_request", [app_cpu, requests], digits=2)[0]
        parts.append(
            f"one app process carries about {per_core} session reads/s on one core ({cost} ms of app CPU each)"
        )
        if workers and app_cores:
            # a node's workers use at most its cores (sticky and replication: one process, one core)
            per_node = s.derive("node_capacity", [requests, app_cpu, workers, app_cores], digits=0)[0]
            parts.append(
                f"one app node ({s.show(workers)} worker(s), {s.show(app_cores)} cores) about {per_node} req/s"
            )
        if nodes:
            total_text, total = (
                s.derive("tier_capacity", [requests, app_cpu, workers, app_cores, nodes], digits=0)
                if workers and app_cores
                else s.derive("node_tier", [requests, app_cpu, nodes], digits=0)
            )
            parts.append(f"its {s.show(nodes)} app nodes about {total_text} req/s")
            capacities.append(("the app tier", total))
    else:
        parts.append("requests per second per app node: not measured (no load result with the app's CPU time)")
    store = STORE_LABEL.get(st)
    store_cpu = s.ref(file, "endpoints", "read", "cpu_seconds", "store")
    if store and requests and store_cpu and store_cpu.value:
        if st == "database":
            cores = s.ref(file, "cores", "store")
            text, value = (
                s.derive("capacity", [cores, store_cpu, requests], digits=0)
                if cores
                else s.derive("per_second", [requests, store_cpu], digits=0)
            )
        else:
            text, value = s.derive("per_second", [requests, store_cpu], digits=0)
        parts.append(f"{store} about {text} req/s")
        capacities.append((store, value))
    elif store:
        parts.append(f"{store}'s requests per second: not measured (no CPU time of the store in the results)")
    lb_cpu, lb_cores = s.ref(file, "endpoints", "read", "cpu_seconds", "lb"), s.ref(file, "cores", "lb")
    if requests and lb_cpu and lb_cpu.value and lb_cores:
        text, value = s.derive("capacity", [lb_cores, lb_cpu, requests], digits=0)
        parts.append(f"the balancer about {text} req/s")
        capacities.append(("the balancer", value))
    text = "; ".join(parts) + "."
    if len(capacities) > 1:
        first = min(capacities, key=lambda c: c[1])[0]
        text += f" {first[0].upper() + first[1:]} saturates first."
    footprint = s.figure("footprint", st, "bytes_per_session")
    if footprint is not None and footprint.value and st == "cookie":
        text += (
            f" A session travels as a cookie of {s.show(footprint)} bytes on every request: nothing is "
            f"stored on the servers, and the client's cookie limit caps the session's data."
        )
    elif footprint is not None and footprint.value:
        where = s.figure("footprint", st, "store")
        text += (
            f" A session takes {s.show(footprint)} bytes ({report.show(where)}): "
            f"{report.show(s.figure('footprint', st, 'sessions_per_gib'))} sessions per GiB"
        )
        host_memory = _store_memory(report, st)
        if host_memory is not None:
            text += (
                f", about {s.derive('ratio', [host_memory, footprint], digits=0)[0]} in the "
                f"{s.derive('gib', [host_memory], digits=1)[0]} GiB of {host_memory.keys[1]}"
            )
        text += "."
    else:
        text += " Bytes per session: not measured (no footprint result)."
    return text


def _store_memory(report: Report, st: str) -> Ref | None:
    env = report.s.environment
    if env is None:
        return None
    role = {"redis": "redis", "token": "redis", "database": "db"}.get(st, "app")
    for name, host in report.s.documents[env].get("hosts", {}).items():
        if role in host.get("roles", []):
            return report.s.ref(env, "hosts", name, "memory_bytes")
    return None
