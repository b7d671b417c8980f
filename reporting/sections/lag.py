"""Replication lag: how far behind a peer reads, in sync and async mode, and a restarted node's snapshot."""

from __future__ import annotations

from .. import plots
from ..document import MISSING, Report


def lag(report: Report) -> None:
    s = report.s
    report.heading("Replication lag")
    samples, rows = {}, []
    for mode in ("sync", "async"):
        file = s.drill("lag", "replication", mode)
        if file is None:
            continue
        values = s.ref(file, "figures", "lag_ms_samples")
        if values is not None and values.value:
            samples[mode] = [float(v) for v in values.value]
        f = lambda *keys, file=file: report.show(s.ref(file, "figures", *keys))
        rejoin = s.ref(file, "figures", "rejoin")
        rejoins = ", ".join(
            f"{report.show(s.ref(file, 'figures', 'rejoin', k, 'sessions_pulled'))} sessions in "
            f"{report.show(s.ref(file, 'figures', 'rejoin', k, 'seconds'))} s"
            for k in (rejoin.value if rejoin else {})
        )
        balanced = s.ref(file, "figures", "through_balancer", "stale")
        through = (
            f"{report.show(balanced)} of {f('through_balancer', 'reads')} "
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
        report.image(plots.lag(report.out / "lag.png", samples), "replication lag distribution")
    for mode in ("sync", "async"):
        if mode not in samples:
            report.missing(f"the lag distribution in {mode} mode (no lag result of replication in {mode} mode)")
    if rows:
        report.table(
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
