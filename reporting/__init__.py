"""The report: the six strategies side by side, measured on one cluster in one run (python -m reporting).

write(results_dir, out) renders report/index.html, report/report.md, the PNG plots and sources.json (every number
the report prints, with the JSON path in the results it came from) from the JSON results of a run."""

from __future__ import annotations

import json
from pathlib import Path

from . import model, render
from .sources import Sources


def write(results: Path, out: Path) -> Sources:
    sources = Sources.load(results)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("throughput.png", "latency.png", "drills.png", "lag.png", "footprint.png", "per-node.png"):
        (out / name).unlink(missing_ok=True)  # a plot of an earlier report must not stand for this one
    report = model.build(sources, out)
    (out / "report.md").write_text(render.markdown(report.blocks))
    (out / "index.html").write_text(render.page(report.blocks))
    (out / "sources.json").write_text(json.dumps(sources.record(), indent=1) + "\n")
    return sources
