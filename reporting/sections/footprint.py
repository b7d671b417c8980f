"""Bytes per session: what one session costs where it is kept."""

from __future__ import annotations

from session_kit.strategies import STRATEGIES

from .. import plots
from ..document import Report


def footprint(report: Report) -> None:
    s = report.s
    report.heading("Bytes per session")
    measured = [st for st in STRATEGIES if s.figure("footprint", st, "bytes_per_session") is not None]
    if not measured:
        report.missing("bytes per session (no footprint result)")
        return
    report.image(
        plots.grouped_bars(
            report.out / "footprint.png",
            measured,
            {"bytes per session": [float(s.figure("footprint", st, "bytes_per_session").value) for st in measured]},
            "bytes per session (B)",
            "what one session costs where it is kept",
        ),
        "bytes per session per strategy",
    )
    rows = []
    for st in measured:
        f = lambda key, st=st: report.show(s.figure("footprint", st, key))
        rows.append([st, f("store"), f("sessions"), f("value_bytes"), f("bytes_per_session"), f("sessions_per_gib")])
    report.table(
        ["strategy", "measured in", "sessions", "value (bytes)", "bytes per session", "sessions per GiB"], rows
    )
