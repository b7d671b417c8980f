"""Checks of a written report against the results it was written from: its sections, a verdict row per strategy,
its plots (PNG files beside the page, referenced relatively), a page that loads nothing from the network, the same
numbers in the page as in the Markdown, and every number in report.md traced to a result (sources.json).

    problems(report_dir, results_dir) -> [] when the report is sound

The unit tests run it on fixture results; a test on the lab can run it on a quick report of a real run."""

from __future__ import annotations

import html
import json
import re
from collections import Counter
from pathlib import Path

from session_kit.strategies import STRATEGIES

from .sources import Sources, check_printed

SECTIONS = (
    "## What it ran on",
    "### Parameters",
    "### How long each part took",
    "## The usual verdicts",
    "### Findings",
    "## Throughput and latency",
    "## Failed requests and sessions lost",
    "## Replication lag",
    "## Bytes per session",
    "## Per-node share",
    "## A capacity model",
    "### Past one Redis, past one PostgreSQL",
)
PNG = b"\x89PNG\r\n\x1a\n"
# A number as the report prints it (1,234.5); not part of a word such as p99, lab2 or IPv4.
NUMBER = re.compile(r"(?<![A-Za-z_\d.])\d+(?:,\d{3})*(?:\.\d+)?")


def numbers(text: str) -> Counter:
    return Counter(NUMBER.findall(text))


def verdict_rows(md: str) -> list[str]:
    """The strategies named by the rows of the verdict table, in order."""
    table = md.split("## The usual verdicts", 1)[-1].split("### Findings", 1)[0]
    return [
        line.split(" | ")[0].strip("| ")
        for line in table.splitlines()
        if line.startswith("| ") and not line.startswith("| strategy")
    ]


def problems(report: Path, results: Path) -> list[str]:
    found: list[str] = []
    md_path, page_path, record_path = report / "report.md", report / "index.html", report / "sources.json"
    for path in (md_path, page_path, record_path):
        if not path.is_file():
            found.append(f"{path.name} is missing")
    if found:
        return found
    md, page = md_path.read_text(), page_path.read_text()
    found += [f"section missing: {section}" for section in SECTIONS if section not in md]
    if verdict_rows(md) != list(STRATEGIES):
        found.append(f"the verdict table's rows are {verdict_rows(md)}, not one per strategy")
    for image in re.findall(r"!\[[^]]*\]\(([^)]+)\)", md):
        if "/" in image or not (report / image).is_file() or (report / image).read_bytes()[:8] != PNG:
            found.append(f"plot {image}: not a PNG file beside the report")
        if f'src="{image}"' not in page:
            found.append(f"plot {image}: not on the page")
    if re.search(r"(src|href)=\"(https?:)?//", page):
        found.append("the page loads something from the network")
    text = html.unescape(re.sub(r"<[^>]+>", " ", page.split("</style>", 1)[-1]))
    if NUMBER.findall(text) != NUMBER.findall(md):
        found.append("the page and report.md do not print the same numbers")
    record = json.loads(record_path.read_text())
    found += check_printed(record, Sources.load(results).documents)
    printed = Counter()
    for item in record["printed"]:
        printed.update(numbers(item["text"]))
    extra = numbers(md) - printed
    if extra:
        found.append(f"numbers in report.md that no result gave: {dict(extra)}")
    return found
