"""The usual verdicts on each strategy beside the figures of this run that back or refute them, and the findings
the rules (findings.py) write from those figures."""

from __future__ import annotations

from session_kit.strategies import STRATEGIES

from ..document import MISSING, Report
from ..findings import RULES, VERDICTS, busiest_share, drill_counts, throughput


def verdicts(report: Report) -> None:
    s = report.s
    report.heading("The usual verdicts, measured")
    report.para(
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
        drills = [f"{drill} {s.show(failed)} / {s.show(lost)}" for drill, failed, lost, _ in drill_counts(s, strategy)]
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
                report.show(p99),
                "; ".join(drills) or MISSING,
                lost_updates,
                busiest,
                report.show(footprint),
                finding.state,
            ]
        )
        findings.append(f"**{strategy}**: {finding.text}")
    report.table(
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
    report.heading("Findings", 3)
    report.listing(findings)
