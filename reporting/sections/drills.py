"""The drills: failed requests and sessions lost under load per drill, deploy time against the number of app
nodes, lost updates (parallel increments of one session) and the cookie's limits and replay."""

from __future__ import annotations

from session_kit.strategies import STRATEGIES

from .. import plots
from ..document import MISSING, Report
from ..findings import FAILURE_DRILLS, drill_counts


def drills(report: Report) -> None:
    s = report.s
    report.heading("Failed requests and sessions lost, per drill")
    runs = [(drill, st, failed, lost) for st in STRATEGIES for drill, failed, lost, _ in drill_counts(s, st)]
    if runs:
        report.image(
            plots.drills(
                report.out / "drills.png",
                [f"{d} / {st}" for d, st, _, _ in runs],
                [float(f.value) for _, _, f, _ in runs],
                [float(lo.value) for _, _, _, lo in runs],
            ),
            "failed requests and sessions lost per drill",
        )
    else:
        report.missing("failed requests and sessions lost per drill (no result of " + ", ".join(FAILURE_DRILLS) + ")")
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
                        f"{doc.get('status', 'unknown')}: {report.show(s.ref(file, 'error'))}",
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
            f = lambda *keys, file=file: report.show(s.ref(file, "figures", *keys))
            back = {
                "node-stop": ("seconds_until_serving",),
                "node-kill": ("seconds_until_serving",),
                "rolling": ("deploy", "seconds"),
                "scale-out": ("deploy", "seconds"),
                "failover": ("seconds_until_writes",),
                "store-freeze": ("failures_end_after_thaw_seconds",),
                "store-kill": ("seconds_until_writes",),
                "power-off": ("seconds_until_writes",),
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
        report.table(
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
    deploy_scale(report)


def deploy_scale(report: Report) -> None:
    s = report.s
    file = s.deploy_scale
    runs = s.ref(file, "runs")
    if runs is None or not runs.value:
        report.missing(
            "deploy time against the number of app nodes (measured by `./kit report --deploy-scale "
            "COUNTS` or `python -m benchmarks.deploy`: a fresh lab per size)"
        )
        return
    report.heading("Deploy time against the number of app nodes", 3)
    indexes = range(len(runs.value))
    nodes = [int(s.ref(file, "runs", i, "app_nodes").value) for i in indexes]
    first = [float(s.ref(file, "runs", i, "first_apply", "seconds").value) for i in indexes]
    noop = [float(s.ref(file, "runs", i, "noop_apply", "seconds").value) for i in indexes]
    report.para(
        f"A fresh lab per size (the app nodes and one host for the balancer and the stores), "
        f"{report.show(s.ref(file, 'strategy'))} applied twice: the first "
        "apply (packages, the app's wheels, configs, services) and a second one with nothing to change. "
        "By stage: seconds from pyinfra's start until it connects (start), connecting, gathering facts and "
        "preparing the operations, running them."
    )
    report.image(
        plots.deploy_scale(report.out / "deploy-scale.png", nodes, {"first apply": first, "no-op re-apply": noop}),
        "deploy time against app nodes",
    )
    rows = []
    for i in indexes:
        f = lambda *keys, i=i: report.show(s.ref(file, "runs", i, *keys))
        stages = s.ref(file, "runs", i, "noop_apply", "phases")
        by_stage = ", ".join(
            f"{stage} {report.show(s.ref(file, 'runs', i, 'noop_apply', 'phases', stage))}"
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
    report.table(
        ["app nodes", "first apply (s)", "changes", "no-op re-apply (s)", "changes", "no-op re-apply by stage (s)"],
        rows,
    )


def contention(report: Report) -> None:
    s = report.s
    rows = []
    for st in STRATEGIES:
        file = s.drill("contention", st)
        if file:
            rows.append(
                [st]
                + [
                    report.show(s.ref(file, "figures", key))
                    for key in ("parallel", "accepted", "final_counter", "lost_updates")
                ]
            )
    report.heading("Lost updates: parallel increments of one session", 3)
    if rows:
        report.table(["strategy", "parallel increments", "accepted (OK)", "final counter", "lost updates"], rows)
    else:
        report.missing("lost updates (no contention result)")
    file = s.drill("cookie-limits", "cookie")
    report.heading("Cookie limits and replay", 3)
    if file:
        f = lambda key, file=file: report.show(s.ref(file, "figures", key))
        report.listing(
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
        report.missing("cookie limits and replay (no cookie-limits result)")
