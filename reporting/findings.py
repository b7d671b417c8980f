"""The usual verdicts, and one rule per strategy that writes its finding from the figures.

A rule gathers clauses that support the verdict and clauses that refute it, each with the figures it rests on
(printed through Sources, so that every number is traced to its result). The finding's state follows from which
side has evidence: both sides, "Partly borne out"; neither, "Not measured". Change a figure and the finding changes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from .sources import Ref, Sources

VERDICTS = {
    "cookie": "not recommended: unreliable",
    "sticky": "not recommended: one IP always goes to one machine, so there is no real load balancing",
    "database": "not recommended: slow",
    "replication": "not recommended: replication brings delay",
    "redis": "recommended",
    "token": "recommended: no cookie, so different domains do not matter; what mobile clients use",
}

# The drills that break the cluster under load: each counts failed requests and sessions lost.
FAILURE_DRILLS = ("node-stop", "node-kill", "rolling", "store-restart", "store-freeze", "scale-out", "failover")

ONE_NODE_SHARE = 0.9  # sticky: the busiest node serving this share of one address's requests is "no balancing"
SLOW_AGAINST_REDIS = 0.8  # database: reads below this fraction of redis's ratio to the baseline are "slow"
SLOW_ALONE = 0.5  # database, without a redis run to compare: below this ratio to the baseline is "slow"


@dataclasses.dataclass
class Finding:
    supports: list[str]
    refutes: list[str]

    @property
    def state(self) -> str:
        if self.supports and self.refutes:
            return "Partly borne out"
        if self.supports:
            return "Borne out"
        if self.refutes:
            return "Not borne out"
        return "Not measured"

    @property
    def text(self) -> str:
        if not (self.supports or self.refutes):
            return "Not measured: none of the figures this verdict rests on is in the results."
        parts = self.supports + (
            ["but " + self.refutes[0]] + self.refutes[1:] if self.supports and self.refutes else self.refutes
        )
        return f"{self.state}: " + "; ".join(parts) + "."


def drill_counts(s: Sources, strategy: str) -> list[tuple[str, Ref, Ref, Ref | None]]:
    """(drill, failed, sessions lost, failed elsewhere than a killed node) for each failure drill that ran."""
    found = []
    for drill in FAILURE_DRILLS:
        failed, lost = s.figure(drill, strategy, "failed"), s.figure(drill, strategy, "sessions_lost")
        if failed is not None and lost is not None:
            found.append((drill, failed, lost, s.figure(drill, strategy, "failed_elsewhere")))
    return found


def resilience(s: Sources, strategy: str) -> tuple[list[str], list[str]]:
    """Clauses from the failure drills: what went wrong (failed requests, sessions lost) and which drills were clean.
    A SIGKILL's failures on the killed node itself are its nature, not a fault: only those elsewhere count."""
    bad, clean = [], []
    for drill, failed, lost, elsewhere in drill_counts(s, strategy):
        counted = elsewhere if elsewhere is not None else failed
        problems = []
        if lost.value:
            problems.append(f"{s.show(lost)} sessions lost")
        if counted.value:
            where = " away from the killed node" if counted is elsewhere else ""
            problems.append(f"{s.show(counted)} requests failed{where}")
        if problems:
            bad.append(f"{drill}: " + ", ".join(problems))
        else:
            clean.append(drill)
    good = [f"no session lost and no request failed in {', '.join(clean)}"] if clean else []
    return bad, good


def lost_updates(s: Sources, strategy: str) -> tuple[Ref, Ref] | None:
    lost, parallel = s.figure("contention", strategy, "lost_updates"), s.figure("contention", strategy, "parallel")
    return (lost, parallel) if lost is not None and parallel is not None else None


def throughput(s: Sources, strategy: str, endpoint: str = "read") -> tuple[Ref, Ref] | None:
    """(session endpoint's req/s, the baseline's req/s in the same run)."""
    file = s.loads.get(strategy)
    rps, base = s.ref(file, "endpoints", endpoint, "rps"), s.ref(file, "endpoints", "baseline", "rps")
    return (rps, base) if rps is not None and base is not None and base.value else None


def busiest_share(s: Sources, strategy: str) -> tuple[str, list[Ref]] | None:
    """Where the per-node counts come from, and the refs: the busiest node first, then every node."""
    sources = [(s.loads.get(strategy), ("per_node",), "the load's probe")]
    for drill in ("contention", "rolling", "node-kill", "node-stop"):
        sources.append((s.drill(drill, strategy), ("figures", "per_node"), drill))
    for file, keys, label in sources:
        counts = s.ref(file, *keys)
        if counts is None or not isinstance(counts.value, dict) or not counts.value:
            continue
        refs = [s.ref(file, *keys, node) for node in counts.value]
        refs.sort(key=lambda r: -float(r.value))
        return label, refs
    return None


# -- the rules -------------------------------------------------------------------------------------------------------


def cookie(s: Sources) -> Finding:
    supports, refutes = [], []
    contention = lost_updates(s, "cookie")
    if contention and contention[0].value:
        supports.append(
            f"{s.show(contention[0])} of {s.show(contention[1])} parallel increments of one session lost "
            f"(each request starts from the cookie it carried)"
        )
    elif contention:
        refutes.append(f"no update lost of {s.show(contention[1])} parallel increments")
    replay = s.figure("cookie-limits", "cookie", "replay_after_logout_accepted")
    if replay is not None and replay.value:
        status = s.figure("cookie-limits", "cookie", "replay_after_logout_status")
        supports.append(f"a cookie copied before logout still got {s.show(status)} after it (no revocation)")
    elif replay is not None:
        refutes.append("a cookie copied before logout was refused after it")
    limit = s.figure("cookie-limits", "cookie", "data_bytes_at_limit")
    if limit is not None:
        supports.append(f"a session holds at most {s.show(limit)} bytes of data before the cookie is refused")
    bad, good = resilience(s, "cookie")
    return Finding(supports + bad, refutes + good)


def sticky(s: Sources) -> Finding:
    supports, refutes = [], []
    share = busiest_share(s, "sticky")
    if share:
        label, refs = share
        text, value = s.derive("share", [refs[0], *refs], scale=100, digits=0)
        if value / 100 >= ONE_NODE_SHARE:
            supports.append(f"from one client address, {refs[0].keys[-1]} served {text}% of the requests ({label})")
        else:
            refutes.append(f"from one client address, the busiest node served {text}% of the requests ({label})")
    many = s.figure("ip-hash-spread", "sticky", "many_24", "max_share")
    networks = s.figure("ip-hash-spread", "sticky", "many_24", "networks")
    if many is not None and networks is not None:
        text = s.show(many, digits=0, scale=100)
        clause = f"clients spread over {s.show(networks)} networks: the busiest node served {text}% of the requests"
        (supports if float(many.value) >= ONE_NODE_SHARE else refutes).append(clause)
    for drill, _failed, lost, _ in drill_counts(s, "sticky"):
        if lost.value:
            supports.append(f"{drill}: {s.show(lost)} sessions lost with their node")
    moved = [
        (method, s.ref(s.drill("scale-out", "sticky", variant=variant), "figures", "clients_moved_share"))
        for method, variant in (("ip_hash", ""), ("cookie routing", "hash_cookie"))
    ]
    for method, ref in moved:  # a client moved to another node has lost its session with the node it left
        if ref is not None:
            clause = f"a node added moved {s.show(ref, digits=0, scale=100)}% of the clients with {method}"
            (supports if float(ref.value) else refutes).append(clause)
    return Finding(supports, refutes)


def database(s: Sources) -> Finding:
    supports, refutes = [], []
    measured = throughput(s, "database")
    if measured:
        ratio_text, ratio = s.derive("ratio", list(measured), digits=2)
        clause = f"reads at {s.show(measured[0])} req/s, {ratio_text}x the no-session baseline"
        redis = throughput(s, "redis")
        if redis:
            redis_text, redis_ratio = s.derive("ratio", list(redis), digits=2)
            clause += f" (redis: {redis_text}x)"
            slow = ratio < SLOW_AGAINST_REDIS * redis_ratio
        else:
            slow = ratio < SLOW_ALONE
        p99 = s.ref(s.loads["database"], "endpoints", "read", "latency_ms", "p99")
        if p99 is not None:
            clause += f", p99 {s.show(p99)} ms"
        (supports if slow else refutes).append(clause)
    contention = lost_updates(s, "database")
    if contention and not contention[0].value:
        refutes.append(f"no update lost of {s.show(contention[1])} parallel increments")
    bad, good = resilience(s, "database")
    return Finding(supports + bad, refutes + good)


def replication(s: Sources) -> Finding:
    supports, refutes = [], []
    for mode in ("sync", "async"):
        file = s.drill("lag", "replication", mode)
        if file is None:
            continue
        stale, reads = s.ref(file, "figures", "stale_first_reads"), s.ref(file, "figures", "reads")
        p99 = s.ref(file, "figures", "lag_ms", "p99")
        if stale is not None and stale.value:
            supports.append(
                f"{mode}: {s.show(stale)} of {s.show(reads)} first reads after a write were stale "
                f"(lag p99 {s.show(p99)} ms)"
            )
        elif stale is not None:
            refutes.append(
                f"{mode}: no stale read after an answered write, the other nodes have it within p99 {s.show(p99)} ms"
            )
        balanced = s.ref(file, "figures", "through_balancer", "stale")
        if balanced is not None:
            reads = s.ref(file, "figures", "through_balancer", "reads")
            clause = (
                f"{mode}: {s.show(balanced)} of {s.show(reads)} reads right after a write through the balancer stale"
            )
            refused = s.ref(file, "figures", "through_balancer", "writes_refused")
            if refused is not None and refused.value:
                writes = s.ref(file, "figures", "through_balancer", "writes")
                clause += (
                    f", and {s.show(refused)} of {s.show(writes)} writes refused by a node that had not yet "
                    "seen the session"
                )
            (supports if balanced.value or (refused is not None and refused.value) else refutes).append(clause)
    contention = lost_updates(s, "replication")
    if contention and contention[0].value:
        supports.append(
            f"{s.show(contention[0])} of {s.show(contention[1])} concurrent increments of one session "
            f"lost (last writer wins)"
        )
    changes = throughput(s, "replication", "change")
    if changes:
        ratio_text, _ = s.derive("ratio", list(changes), digits=2)
        supports.append(f"changes at {ratio_text}x the no-session baseline (each waits for or is sent to every peer)")
    return Finding(supports, refutes)


def recommended(strategy: str) -> Callable[[Sources], Finding]:
    def rule(s: Sources) -> Finding:
        supports, refutes = [], []
        bad, good = resilience(s, strategy)
        supports += good
        refutes += bad
        contention = lost_updates(s, strategy)
        if contention and contention[0].value:
            refutes.append(f"{s.show(contention[0])} of {s.show(contention[1])} parallel increments lost")
        elif contention:
            supports.append(f"no update lost of {s.show(contention[1])} parallel increments")
        measured = throughput(s, strategy)
        if measured:
            ratio_text, _ = s.derive("ratio", list(measured), digits=2)
            supports.append(f"reads at {ratio_text}x the no-session baseline")
        return Finding(supports, refutes)

    return rule


RULES: dict[str, Callable[[Sources], Finding]] = {
    "cookie": cookie,
    "sticky": sticky,
    "database": database,
    "replication": replication,
    "redis": recommended("redis"),
    "token": recommended("token"),
}
