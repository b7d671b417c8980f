"""Throughput and latency through the balancer: each strategy's session endpoints beside the no-session baseline."""

from __future__ import annotations

from session_kit.strategies import STRATEGIES

from .. import plots
from ..document import Report
from ..sources import Ref

ENDPOINTS = (("baseline", "GET /ping (no session)"), ("read", "GET /session"), ("change", "POST /session/counter"))
PERCENTILES = ("p50", "p75", "p90", "p99")


def load(report: Report) -> None:
    s = report.s
    report.heading("Throughput and latency through the balancer")
    measured = [st for st in STRATEGIES if st in s.loads]
    if not measured:
        report.missing(
            "throughput and latency per strategy beside the no-session baseline: no load results "
            "(a live run drives wrk through the balancer at `GET /ping`, `GET /session` and "
            "`POST /session/counter`)"
        )
        return
    first = s.loads[measured[0]]
    report.para(
        f"wrk with {report.show(s.ref(first, 'connections'))} connections for "
        f"{report.show(s.ref(first, 'seconds'))} s per endpoint, through the balancer, over "
        f"{report.show(s.ref(first, 'sessions'))} logged-in sessions; the baseline `GET /ping` touches no "
        f"session and runs through the same balancer in the same run, just before."
    )
    series = {
        label: [_value(s.ref(s.loads[st], "endpoints", key, "rps")) for st in measured] for key, label in ENDPOINTS
    }
    report.image(
        plots.grouped_bars(
            report.out / "throughput.png",
            measured,
            series,
            "requests per second (req/s)",
            "throughput through the balancer, beside the no-session baseline",
        ),
        "throughput per strategy",
    )
    values = {
        label: {
            pct: [_value(s.ref(s.loads[st], "endpoints", key, "latency_ms", pct)) for st in measured]
            for pct in PERCENTILES
        }
        for key, label in ENDPOINTS
    }
    report.image(
        plots.latency(report.out / "latency.png", measured, list(PERCENTILES), values),
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
                [st, label, report.show(rps), ratio]
                + [report.show(s.ref(file, "endpoints", key, "latency_ms", p)) for p in PERCENTILES]
                + [report.show(s.ref(file, "endpoints", key, "non_2xx"))]
            )
    report.table(
        ["strategy", "endpoint", "req/s", "x baseline"] + [f"{p} (ms)" for p in PERCENTILES] + ["answers not OK"],
        rows,
    )
    missing = [st for st in report.strategies if st not in s.loads]
    if missing:
        report.missing(f"throughput of {', '.join(missing)} (no load result for them)")


def _value(ref: Ref | None) -> float | None:
    return None if ref is None else float(ref.value)
