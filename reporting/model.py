"""The report's content, built once from the results as a list of blocks (headings, paragraphs, tables, images, lines
saying what is missing), which render.py writes as Markdown and as HTML. Every number goes through Sources."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from session_kit.strategies import STRATEGIES

from . import plots
from .findings import (
    FAILURE_DRILLS,
    RULES,
    VERDICTS,
    busiest_share,
    drill_counts,
    throughput,
)
from .sources import Ref, Sources

ENDPOINTS = (("baseline", "GET /ping (no session)"), ("read", "GET /session"), ("change", "POST /session/counter"))
PERCENTILES = ("p50", "p75", "p90", "p99")
STORE_LABEL = {"redis": "Redis", "token": "Redis", "database": "PostgreSQL"}
MISSING = "not measured"


@dataclasses.dataclass
class Block:
    kind: str  # heading | para | table | image | missing | list
    text: str = ""
    level: int = 2
    header: list[str] = dataclasses.field(default_factory=list)
    rows: list[list[str]] = dataclasses.field(default_factory=list)
    items: list[str] = dataclasses.field(default_factory=list)


class Report:
    def __init__(self, sources: Sources, out: Path):
        self.s, self.out = sources, out
        self.blocks: list[Block] = []
        self.images: list[str] = []
        self.strategies = sources.strategies()

    # -- blocks --------------------------------------------------------------------------------------------------------

    def heading(self, text: str, level: int = 2) -> None:
        self.blocks.append(Block("heading", text, level=level))

    def para(self, text: str) -> None:
        self.blocks.append(Block("para", text))

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        self.blocks.append(Block("table", header=header, rows=rows))

    def listing(self, items: list[str]) -> None:
        self.blocks.append(Block("list", items=items))

    def missing(self, what: str) -> None:
        self.blocks.append(Block("missing", f"Not shown: {what}."))

    def image(self, path: Path, alt: str) -> None:
        self.images.append(path.name)
        self.blocks.append(Block("image", path.name, items=[alt]))

    def show(self, ref: Ref | None, **kwargs) -> str:
        return MISSING if ref is None else self.s.show(ref, **kwargs)

    # -- the whole report ----------------------------------------------------------------------------------------------

    def build(self) -> Report:
        self.heading("session-kit report: six session strategies, measured", 1)
        self.header()
        self.verdicts()
        self.load()
        self.drills()
        self.contention()
        self.lag()
        self.footprint()
        self.shares()
        self.capacity()
        return self

    # -- header --------------------------------------------------------------------------------------------------------

    def header(self) -> None:
        s = self.s
        self.heading("What it ran on")
        env = s.environment
        if env is None:
            self.missing(
                "cores, memory, OS and the versions of Nginx, Redis, PostgreSQL, Python and the kit: these "
                "results hold no environment record (a live run, `./kit report`, reads them from the hosts "
                "over SSH and records them)"
            )
        else:
            doc = s.documents[env]
            commit = self.show(s.ref(env, "controller", "kit_commit"))
            dirty = s.ref(env, "controller", "kit_uncommitted_changes")
            commit += " (with uncommitted changes)" if dirty is not None and dirty.value else ""
            self.para(
                f"Date: {self.show(s.ref(env, 'when'))}; kit commit {commit}; Python "
                f"{self.show(s.ref(env, 'controller', 'python'))} on the controller."
            )
            rows = []
            hosts = [("controller", ("controller",))] + [(name, ("hosts", name)) for name in doc.get("hosts", {})]
            for name, keys in hosts:
                memory = s.ref(env, *keys, "memory_bytes")
                software = []
                for key, label in (
                    ("nginx", "Nginx"),
                    ("redis", "Redis"),
                    ("postgresql", "PostgreSQL"),
                    ("python", "Python"),
                ):
                    ref = s.ref(env, *keys, key)
                    if ref is not None and not (name == "controller" and key == "python"):
                        software.append(f"{label} {s.show(ref)}")
                roles = s.ref(env, *keys, "roles")
                rows.append(
                    [
                        name,
                        ", ".join(roles.value) if roles else "wrk, this report",
                        self.show(s.ref(env, *keys, "cores")),
                        s.derive("gib", [memory], digits=1)[0] if memory else MISSING,
                        self.show(s.ref(env, *keys, "os")),
                        ", ".join(software) or "-",
                    ]
                )
            self.table(["host", "roles", "cores", "memory (GiB)", "OS", "software"], rows)
        self.parameters()
        self.timings()
        self.verification()

    def parameters(self) -> None:
        s = self.s
        self.heading("Parameters", 3)
        for file in (s.environment, s.steps):
            params = s.ref(file, "params")
            if params is None:
                continue
            self.listing(
                [
                    f"{key}: {self.show(s.ref(file, 'params', key))}"
                    for key in params.value
                    if not isinstance(params.value[key], (list, dict))
                ]
                + [f"strategies: {', '.join(params.value.get('strategies', []))}"]
                + [
                    f"inventory override {key}: {self.show(s.ref(file, 'params', 'overrides', key))}"
                    for key in params.value.get("overrides", {})
                ]
            )
            return
        seen, items = set(), []
        for files in s.drills.values():
            for file in files:
                params = s.documents[file].get("params")
                key = repr(sorted(params.items())) if isinstance(params, dict) else None
                if key is None or key in seen:
                    continue
                seen.add(key)
                items.append(
                    "drills: "
                    + ", ".join(f"{name} {self.show(s.ref(file, 'params', name))}" for name in params)
                    + " (clients; seconds of load around each event; seconds of pause between a client's "
                    "requests)"
                )
        if items:
            self.listing(items)
        else:
            self.missing("the parameters (no result records them)")

    def timings(self) -> None:
        s = self.s
        self.heading("How long each part took, and how it ended", 3)
        rows = []
        if s.steps:
            first = s.ref(s.steps, "started")
            last = s.ref(s.steps, "finished")
            total = s.ref(s.steps, "seconds")
            self.para(
                f"Started {self.show(first)}, finished {self.show(last)}: "
                f"{s.derive('minutes', [total], digits=1)[0] if total else MISSING} min in all"
                + (" (interrupted)" if s.documents[s.steps].get("interrupted") else "")
                + "."
            )
            for i, step in enumerate(s.documents[s.steps]["steps"]):
                error = s.ref(s.steps, "steps", i, "error")
                rows.append(
                    [
                        step["name"],
                        step.get("strategy") or "-",
                        step["status"],
                        self.show(s.ref(s.steps, "steps", i, "seconds")),
                        s.show(error) if error else "",
                    ]
                )
        else:
            whens = sorted((doc["when"], file) for file, doc in s.documents.items() if "drill" in doc and "when" in doc)
            if whens:
                self.para(
                    f"Drill results from {self.show(s.ref(whens[0][1], 'when'))} to "
                    f"{self.show(s.ref(whens[-1][1], 'when'))}; no record of the whole run's steps "
                    f"(a live run writes one)."
                )
            for (drill, strategy), files in s.drills.items():
                for file in files:
                    doc = s.documents[file]
                    error = s.ref(file, "error")
                    rows.append(
                        [
                            f"drill {drill}",
                            strategy,
                            doc.get("status", "?"),
                            self.show(s.ref(file, "seconds")),
                            s.show(error) if error else "",
                        ]
                    )
        if rows:
            self.table(["step", "strategy", "status", "seconds", "error"], rows)
        else:
            self.missing("the steps' times (no result records them)")

    def verification(self) -> None:
        s = self.s
        if not s.verify:
            return  # a run without a deploy of its own (drill results only) verified nothing: nothing to say
        self.heading("Verified after each deploy", 3)
        rows = []
        for st in STRATEGIES:
            file = s.verify.get(st)
            if file:
                rows.append([st] + [self.show(s.ref(file, key)) for key in ("passed", "failed", "skipped", "seconds")])
        self.para(
            "`pytest tests/verify --inventory INVENTORY --strategy S`: services, private sockets and sessions "
            "through the balancer, as a user would see them."
        )
        self.table(["strategy", "passed", "failed", "skipped", "seconds"], rows)

    # -- the verdicts --------------------------------------------------------------------------------------------------

    def verdicts(self) -> None:
        s = self.s
        self.heading("The usual verdicts, measured")
        self.para(
            "Each row: the advice as usually given, and the figures of this run that back or refute it. "
            "Failed / lost: requests that got a server error or no answer, and sessions refused as "
            "unknown while their client held them, per drill under load. The finding under the table is written "
            "by a rule from these figures."
        )
        rows, findings = [], []
        for strategy in STRATEGIES:
            measured = throughput(s, strategy)
            if measured:
                ratio = s.derive("ratio", list(measured), digits=2)[0]
                reads = f"{s.show(measured[0])} ({ratio}x)"
            else:
                reads = MISSING
            p99 = s.ref(s.loads.get(strategy), "endpoints", "read", "latency_ms", "p99")
            drills = [
                f"{drill} {s.show(failed)} / {s.show(lost)}" for drill, failed, lost, _ in drill_counts(s, strategy)
            ]
            contention = s.figure("contention", strategy, "lost_updates")
            parallel = s.figure("contention", strategy, "parallel")
            lost_updates = f"{s.show(contention)} of {s.show(parallel)}" if contention and parallel else MISSING
            share = busiest_share(s, strategy)
            busiest = MISSING
            if share:
                refs = share[1]
                busiest = f"{s.derive('share', [refs[0], *refs], scale=100, digits=0)[0]}% ({share[0]})"
            footprint = s.figure("footprint", strategy, "bytes_per_session")
            finding = RULES[strategy](s)
            rows.append(
                [
                    strategy,
                    VERDICTS[strategy],
                    reads,
                    self.show(p99),
                    "; ".join(drills) or MISSING,
                    lost_updates,
                    busiest,
                    self.show(footprint),
                    finding.state,
                ]
            )
            findings.append(f"**{strategy}**: {finding.text}")
        self.table(
            [
                "strategy",
                "usual verdict",
                "reads/s through the balancer (x no-session baseline)",
                "p99 of reads (ms)",
                "failed / lost per drill",
                "lost updates (parallel increments)",
                "busiest node's share (from)",
                "bytes per session",
                "finding",
            ],
            rows,
        )
        self.heading("Findings", 3)
        self.listing(findings)

    # -- throughput and latency ----------------------------------------------------------------------------------------

    def load(self) -> None:
        s = self.s
        self.heading("Throughput and latency through the balancer")
        measured = [st for st in STRATEGIES if st in s.loads]
        if not measured:
            self.missing(
                "throughput and latency per strategy beside the no-session baseline: no load results "
                "(a live run drives wrk through the balancer at `GET /ping`, `GET /session` and "
                "`POST /session/counter`)"
            )
            return
        first = s.loads[measured[0]]
        self.para(
            f"wrk with {self.show(s.ref(first, 'connections'))} connections for "
            f"{self.show(s.ref(first, 'seconds'))} s per endpoint, through the balancer, over "
            f"{self.show(s.ref(first, 'sessions'))} logged-in sessions; the baseline `GET /ping` touches no "
            f"session and runs through the same balancer in the same run, just before."
        )
        series = {
            label: [self._value(s.ref(s.loads[st], "endpoints", key, "rps")) for st in measured]
            for key, label in ENDPOINTS
        }
        self.image(
            plots.grouped_bars(
                self.out / "throughput.png",
                measured,
                series,
                "requests per second (req/s)",
                "throughput through the balancer, beside the no-session baseline",
            ),
            "throughput per strategy",
        )
        values = {
            label: {
                pct: [self._value(s.ref(s.loads[st], "endpoints", key, "latency_ms", pct)) for st in measured]
                for pct in PERCENTILES
            }
            for key, label in ENDPOINTS
        }
        self.image(
            plots.latency(self.out / "latency.png", measured, list(PERCENTILES), values),
            "latency percentiles per strategy",
        )
        rows = []
        for st in measured:
            file = s.loads[st]
            for key, label in ENDPOINTS:
                rps = s.ref(file, "endpoints", key, "rps")
                base = s.ref(file, "endpoints", "baseline", "rps")
                ratio = s.derive("ratio", [rps, base], digits=2)[0] + "x" if rps and base and key != "baseline" else "-"
                rows.append(
                    [st, label, self.show(rps), ratio]
                    + [self.show(s.ref(file, "endpoints", key, "latency_ms", p)) for p in PERCENTILES]
                    + [self.show(s.ref(file, "endpoints", key, "non_2xx"))]
                )
        self.table(
            ["strategy", "endpoint", "req/s", "x baseline"] + [f"{p} (ms)" for p in PERCENTILES] + ["answers not OK"],
            rows,
        )
        missing = [st for st in self.strategies if st not in s.loads]
        if missing:
            self.missing(f"throughput of {', '.join(missing)} (no load result for them)")

    @staticmethod
    def _value(ref: Ref | None) -> float | None:
        return None if ref is None else float(ref.value)

    # -- drills --------------------------------------------------------------------------------------------------------

    def drills(self) -> None:
        s = self.s
        self.heading("Failed requests and sessions lost, per drill")
        runs = [(drill, st, failed, lost) for st in STRATEGIES for drill, failed, lost, _ in drill_counts(s, st)]
        if runs:
            self.image(
                plots.drills(
                    self.out / "drills.png",
                    [f"{d} / {st}" for d, st, _, _ in runs],
                    [float(f.value) for _, _, f, _ in runs],
                    [float(lo.value) for _, _, _, lo in runs],
                ),
                "failed requests and sessions lost per drill",
            )
        else:
            self.missing("failed requests and sessions lost per drill (no result of " + ", ".join(FAILURE_DRILLS) + ")")
        rows = []
        for st in STRATEGIES:
            for drill, variant in ((d, v) for d in FAILURE_DRILLS for v in s.variants(d, st)):
                file = s.drill_any(drill, st, variant)
                label = drill + (f" ({variant})" if variant else "")
                doc = s.documents[file]
                if doc.get("status") != "ok":
                    rows.append(
                        [
                            label,
                            st,
                            f"{doc.get('status', 'unknown')}: {self.show(s.ref(file, 'error'))}",
                            "",
                            "",
                            "",
                            "",
                            "",
                            "",
                        ]
                    )
                    continue
                goals = doc.get("goals", {})
                missed = [name for name, g in goals.items() if not g.get("met")]
                verdict = ("missed: " + ", ".join(missed)) if missed else ("met" if goals else "none set")
                f = lambda *keys, file=file: self.show(s.ref(file, "figures", *keys))
                back = {
                    "node-stop": ("seconds_until_serving",),
                    "node-kill": ("seconds_until_serving",),
                    "rolling": ("deploy", "seconds"),
                    "scale-out": ("deploy", "seconds"),
                    "failover": ("seconds_until_writes",),
                    "store-freeze": ("failures_end_after_thaw_seconds",),
                }.get(drill)
                rows.append(
                    [
                        label,
                        st,
                        "ok",
                        f("requests"),
                        f("failed"),
                        f("sessions_lost"),
                        f("latency_ms", "p99"),
                        f(*back) if back else "-",
                        verdict,
                    ]
                )
        if rows:
            self.table(
                [
                    "drill",
                    "strategy",
                    "status",
                    "requests",
                    "failed",
                    "sessions lost",
                    "p99 (ms)",
                    "node back / deploy / writes back / serving after thaw (s)",
                    "goals",
                ],
                rows,
            )
        self.deploy_scale()

    def deploy_scale(self) -> None:
        s = self.s
        file = s.deploy_scale
        runs = s.ref(file, "runs")
        if runs is None or not runs.value:
            self.missing(
                "deploy time against the number of app nodes (measured by `./kit report --deploy-scale "
                "COUNTS` or `python -m benchmarks.deploy`: a fresh lab per size)"
            )
            return
        self.heading("Deploy time against the number of app nodes", 3)
        indexes = range(len(runs.value))
        nodes = [int(s.ref(file, "runs", i, "app_nodes").value) for i in indexes]
        first = [float(s.ref(file, "runs", i, "first_apply", "seconds").value) for i in indexes]
        noop = [float(s.ref(file, "runs", i, "noop_apply", "seconds").value) for i in indexes]
        self.para(
            f"A fresh lab per size (the app nodes and one host for the balancer and the stores), "
            f"{self.show(s.ref(file, 'strategy'))} applied twice: the first "
            "apply (packages, the app's wheels, configs, services) and a second one with nothing to change. "
            "By stage: seconds from pyinfra's start until it connects (start), connecting, gathering facts and "
            "preparing the operations, running them."
        )
        self.image(
            plots.deploy_scale(self.out / "deploy-scale.png", nodes, {"first apply": first, "no-op re-apply": noop}),
            "deploy time against app nodes",
        )
        rows = []
        for i in indexes:
            f = lambda *keys, i=i: self.show(s.ref(file, "runs", i, *keys))
            stages = s.ref(file, "runs", i, "noop_apply", "phases")
            by_stage = ", ".join(
                f"{stage} {self.show(s.ref(file, 'runs', i, 'noop_apply', 'phases', stage))}"
                for stage in (stages.value if stages else {})
            )
            rows.append(
                [
                    f("app_nodes"),
                    f("first_apply", "seconds"),
                    f("first_apply", "changed"),
                    f("noop_apply", "seconds"),
                    f("noop_apply", "changed"),
                    by_stage or MISSING,
                ]
            )
        self.table(
            ["app nodes", "first apply (s)", "changes", "no-op re-apply (s)", "changes", "no-op re-apply by stage (s)"],
            rows,
        )

    def contention(self) -> None:
        s = self.s
        rows = []
        for st in STRATEGIES:
            file = s.drill("contention", st)
            if file:
                rows.append(
                    [st]
                    + [
                        self.show(s.ref(file, "figures", key))
                        for key in ("parallel", "accepted", "final_counter", "lost_updates")
                    ]
                )
        self.heading("Lost updates: parallel increments of one session", 3)
        if rows:
            self.table(["strategy", "parallel increments", "accepted (OK)", "final counter", "lost updates"], rows)
        else:
            self.missing("lost updates (no contention result)")
        file = s.drill("cookie-limits", "cookie")
        self.heading("Cookie limits and replay", 3)
        if file:
            f = lambda key, file=file: self.show(s.ref(file, "figures", key))
            self.listing(
                [
                    (
                        f"data stored until the cookie was refused: {f('data_bytes_at_limit')} bytes "
                        f"(cookie {f('cookie_bytes_at_limit')} bytes), then {f('refused_with')}"
                    ),
                    (
                        f"a cookie copied before logout, replayed after it: {f('replay_after_logout_status')} "
                        f"(accepted: {f('replay_after_logout_accepted')})"
                    ),
                ]
            )
        else:
            self.missing("cookie limits and replay (no cookie-limits result)")

    # -- lag -----------------------------------------------------------------------------------------------------------

    def lag(self) -> None:
        s = self.s
        self.heading("Replication lag")
        samples, rows = {}, []
        for mode in ("sync", "async"):
            file = s.drill("lag", "replication", mode)
            if file is None:
                continue
            values = s.ref(file, "figures", "lag_ms_samples")
            if values is not None and values.value:
                samples[mode] = [float(v) for v in values.value]
            f = lambda *keys, file=file: self.show(s.ref(file, "figures", *keys))
            rejoin = s.ref(file, "figures", "rejoin")
            rejoins = ", ".join(
                f"{self.show(s.ref(file, 'figures', 'rejoin', k, 'sessions_pulled'))} sessions in "
                f"{self.show(s.ref(file, 'figures', 'rejoin', k, 'seconds'))} s"
                for k in (rejoin.value if rejoin else {})
            )
            balanced = s.ref(file, "figures", "through_balancer", "stale")
            through = (
                f"{self.show(balanced)} of {f('through_balancer', 'reads')} "
                f"({f('through_balancer', 'read_on_another_node')} on another node)"
                if balanced
                else MISSING
            )
            rows.append(
                [
                    mode,
                    f("reads"),
                    f("lag_ms", "p50"),
                    f("lag_ms", "p99"),
                    f("lag_ms", "max"),
                    f("stale_first_reads"),
                    through,
                    rejoins or MISSING,
                ]
            )
        if samples:
            self.image(plots.lag(self.out / "lag.png", samples), "replication lag distribution")
        for mode in ("sync", "async"):
            if mode not in samples:
                self.missing(f"the lag distribution in {mode} mode (no lag result of replication in {mode} mode)")
        if rows:
            self.table(
                [
                    "mode",
                    "reads",
                    "p50 (ms)",
                    "p99 (ms)",
                    "max (ms)",
                    "stale first reads",
                    "stale reads through the balancer (write, then read)",
                    "a restarted node's snapshot",
                ],
                rows,
            )

    # -- footprint -----------------------------------------------------------------------------------------------------

    def footprint(self) -> None:
        s = self.s
        self.heading("Bytes per session")
        measured = [st for st in STRATEGIES if s.figure("footprint", st, "bytes_per_session") is not None]
        if not measured:
            self.missing("bytes per session (no footprint result)")
            return
        self.image(
            plots.grouped_bars(
                self.out / "footprint.png",
                measured,
                {"bytes per session": [float(s.figure("footprint", st, "bytes_per_session").value) for st in measured]},
                "bytes per session (B)",
                "what one session costs where it is kept",
            ),
            "bytes per session per strategy",
        )
        rows = []
        for st in measured:
            f = lambda key, st=st: self.show(s.figure("footprint", st, key))
            rows.append(
                [st, f("store"), f("sessions"), f("value_bytes"), f("bytes_per_session"), f("sessions_per_gib")]
            )
        self.table(
            ["strategy", "measured in", "sessions", "value (bytes)", "bytes per session", "sessions per GiB"], rows
        )

    # -- per-node share ------------------------------------------------------------------------------------------------

    def shares(self) -> None:
        s = self.s
        self.heading("Per-node share")
        labels, counts, rows = [], [], []
        for st in STRATEGIES:
            spread = s.drill("ip-hash-spread", st)
            sources = (
                [("load probe", s.loads.get(st), ("per_node",))]
                + [
                    (drill, s.drill(drill, st), ("figures", "per_node"))
                    for drill in ("contention", "rolling", "node-kill", "node-stop")
                ]
                + [
                    ("ip-hash-spread, clients in one network", spread, ("figures", "one_24", "share")),
                    ("ip-hash-spread, clients in many networks", spread, ("figures", "many_24", "share")),
                ]
            )
            for label, file, keys in sources:
                per_node = s.ref(file, *keys)
                if per_node is None or not isinstance(per_node.value, dict) or not per_node.value:
                    continue
                labels.append(f"{label} / {st}")
                counts.append({node: float(v) for node, v in per_node.value.items()})
                refs = [s.ref(file, *keys, node) for node in per_node.value]
                rows.append(
                    [
                        label,
                        st,
                        ", ".join(
                            f"{r.keys[-1]} {s.show(r)} ({s.derive('share', [r, *refs], scale=100, digits=0)[0]}%)"
                            for r in refs
                        ),
                    ]
                )
        if not rows:
            self.missing("per-node share (no result records requests per node)")
            return
        self.para(
            "Requests per app node (from the X-Served-By of each answer), from this controller's one "
            "address, except the ip-hash-spread rows (clients spread over many networks, each its own first "
            "three octets: addresses the lab puts on its bridge). A drill that stops or kills a node shows that "
            "node's gap."
        )
        self.image(plots.shares(self.out / "per-node.png", labels, counts), "per-node share of requests")
        self.table(["measurement", "strategy", "requests per node (share)"], rows)
        if not any("many networks" in label for label in labels):
            self.missing(
                "per-node share from many client addresses (the ip-hash-spread drill, on sticky: ip_hash "
                "keys on the first three octets of the client's IPv4 address)"
            )

    # -- capacity ------------------------------------------------------------------------------------------------------

    def capacity(self) -> None:
        self.heading("A capacity model")
        self.para(
            "From this run's cost per request: the CPU seconds each part used during the `GET /session` load, "
            "divided by the requests served, and the footprint drill's bytes per session. The app runs "
            "`app_workers` processes per node (by default one per core; sticky and replication one), so a "
            "node carries its per-core rate times the cores its workers can use; Redis serves commands on "
            "one thread; Nginx and PostgreSQL use every core of their host. The parts of the lab share one "
            "machine's cores, so each capacity is "
            "what that part alone would carry on cores like these."
        )
        for st in self.strategies or list(STRATEGIES):
            self.para(f"**{st}**: " + self.capacity_of(st))
        self.heading("Past one Redis, past one PostgreSQL", 3)
        self.para(
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

    def capacity_of(self, st: str) -> str:
        s = self.s
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
                f" A session takes {s.show(footprint)} bytes ({self.show(where)}): "
                f"{self.show(s.figure('footprint', st, 'sessions_per_gib'))} sessions per GiB"
            )
            host_memory = self._store_memory(st)
            if host_memory is not None:
                text += (
                    f", about {s.derive('ratio', [host_memory, footprint], digits=0)[0]} in the "
                    f"{s.derive('gib', [host_memory], digits=1)[0]} GiB of {host_memory.keys[1]}"
                )
            text += "."
        else:
            text += " Bytes per session: not measured (no footprint result)."
        return text

    def _store_memory(self, st: str) -> Ref | None:
        env = self.s.environment
        if env is None:
            return None
        role = {"redis": "redis", "token": "redis", "database": "db"}.get(st, "app")
        for name, host in self.s.documents[env].get("hosts", {}).items():
            if role in host.get("roles", []):
                return self.s.ref(env, "hosts", name, "memory_bytes")
        return None


def build(sources: Sources, out: Path) -> Report:
    out.mkdir(parents=True, exist_ok=True)
    return Report(sources, out).build()


def as_dict(report: Report) -> dict[str, Any]:
    return {"blocks": [dataclasses.asdict(b) for b in report.blocks], "images": report.images}
