"""The report's content, built once from the results as a list of blocks (headings, paragraphs, tables, images, lines
saying what is missing), which render.py writes as Markdown and as HTML. Every number goes through Sources. The
document and its blocks: document.py; what each section says: sections/."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from .document import MISSING, Block, Report
from .sections import capacity, drills, environment, footprint, lag, load, shares, verdicts
from .sources import Sources

__all__ = ["MISSING", "SECTIONS", "Block", "Report", "as_dict", "build"]

TITLE = "session-kit report: six session strategies, measured"
# The report's sections, in the order it prints them.
SECTIONS = (
    environment.header,
    verdicts.verdicts,
    load.load,
    drills.drills,
    drills.contention,
    lag.lag,
    footprint.footprint,
    shares.shares,
    capacity.capacity,
)


def build(sources: Sources, out: Path) -> Report:
    out.mkdir(parents=True, exist_ok=True)
    report = Report(sources, out)
    report.heading(TITLE, 1)
    for section in SECTIONS:
        section(report)
    return report


def as_dict(report: Report) -> dict[str, Any]:
    return {"blocks": [dataclasses.asdict(b) for b in report.blocks], "images": report.images}
