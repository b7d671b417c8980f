"""The results a report is written from, and the record of every number it prints.

Results are JSON files under one directory (any depth), told apart by their content:
- a drill's result (`drills/__main__.py`'s shape: "drill", "strategy", "figures", ...);
- {"kind": "load", ...}: throughput and latency through the balancer (reporting/measure.py);
- {"kind": "verify", ...}, {"kind": "environment", ...}, {"kind": "steps", ...}: written by a live run.

Every number the report prints goes through `Sources.show` (a measured value, named by its file and JSON pointer) or
`Sources.derive` (a value computed by a named operation from measured ones), which record it in `printed`; the
report writes that list as sources.json, and the tests check it against the results.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

OPS: dict[str, Callable[..., float]] = {
    "ratio": lambda a, b: a / b,
    "share": lambda part, *parts: part / sum(parts),  # part over the sum of all parts (part among them)
    "per_node": lambda total, nodes: total / nodes,
    "count": lambda *items: float(len(items)),
    "sum": lambda *items: float(sum(items)),
    "max": lambda *items: float(max(items)),
    "per_second": lambda count, seconds: count / seconds,
    "capacity": lambda cores, cpu_seconds, requests: cores * requests / cpu_seconds,  # req/s one host's cores carry
    "cpu_ms_per_request": lambda cpu_seconds, requests: cpu_seconds * 1000 / requests,
    "per_gib": lambda bytes_each: 2**30 / bytes_each,
    "minutes": lambda seconds: seconds / 60,
    "gib": lambda count_bytes: count_bytes / 2**30,
    "times": lambda a, b: a * b,
    "smallest": lambda *items: float(min(items)),
    "node_tier": lambda requests, cpu_seconds, nodes: requests / cpu_seconds * nodes,  # one node's req/s x nodes
    # one app node: req/s per CPU-second x the cores its workers can use (min of app_workers and the node's cores)
    "node_capacity": lambda requests, cpu_seconds, workers, cores: requests / cpu_seconds * min(workers, cores),
    "tier_capacity": lambda requests, cpu_seconds, workers, cores, nodes: (
        requests / cpu_seconds * min(workers, cores) * nodes
    ),
}


def pointer(keys: tuple) -> str:
    """A JSON pointer (RFC 6901) for a path of keys."""
    return "/" + "/".join(str(k).replace("~", "~0").replace("/", "~1") for k in keys)


def resolve(document: Any, path: str) -> Any:
    value = document
    for part in path.lstrip("/").split("/") if path != "/" else []:
        part = part.replace("~1", "/").replace("~0", "~")
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value


@dataclasses.dataclass(frozen=True)
class Ref:
    """One measured value: the file (relative to the results directory), its JSON pointer, the value."""

    file: str
    keys: tuple
    value: Any

    @property
    def path(self) -> str:
        return f"{self.file}#{pointer(self.keys)}"


@dataclasses.dataclass
class Printed:
    text: str
    value: Any
    sources: list[str]
    op: str = "measured"


def fmt_number(value: float, digits: int | None = None) -> str:
    """Thousands separated; `digits` after the point (default: none for >= 100, else up to 2, trailing zeros cut)."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if digits is None:
        if float(value).is_integer() or abs(value) >= 100:
            digits = 0
        else:
            digits = 2 if abs(value) < 10 else 1
    text = f"{value:,.{digits}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


class Sources:
    def __init__(self, documents: dict[str, Any], root: Path | None = None):
        self.documents, self.root = documents, root
        self.printed: list[Printed] = []
        self.drills: dict[tuple[str, str], list[str]] = {}  # (drill, strategy) -> files (one per mode/variant)
        self.loads: dict[str, str] = {}
        self.verify: dict[str, str] = {}
        self.environment: str | None = None
        self.steps: str | None = None
        self.deploy_scale: str | None = None
        for name in sorted(documents):
            doc = documents[name]
            if not isinstance(doc, dict):
                continue
            if "drill" in doc and "strategy" in doc:
                self.drills.setdefault((doc["drill"], doc["strategy"]), []).append(name)
            elif doc.get("kind") == "load":
                self.loads[doc["strategy"]] = name
            elif doc.get("kind") == "verify":
                self.verify[doc["strategy"]] = name
            elif doc.get("kind") == "environment":
                self.environment = name
            elif doc.get("kind") == "steps":
                self.steps = name
            elif doc.get("kind") == "deploy-scale":
                self.deploy_scale = name

    @classmethod
    def load(cls, root: Path) -> Sources:
        documents = {}
        for path in sorted(root.rglob("*.json")):
            if path.name == "sources.json":
                continue  # the report's own record, not a result
            try:
                documents[path.relative_to(root).as_posix()] = json.loads(path.read_text())
            except ValueError:
                continue
        return cls(documents, root)

    # -- finding values ------------------------------------------------------------------------------------------

    def ref(self, file: str | None, *keys) -> Ref | None:
        """The value at `keys` in `file`, or None when the file or any key is missing (or the value is null)."""
        if file is None or file not in self.documents:
            return None
        value = self.documents[file]
        for key in keys:
            if (
                isinstance(value, dict)
                and key in value
                or isinstance(value, list)
                and isinstance(key, int)
                and -len(value) <= key < len(value)
            ):
                value = value[key]
            else:
                return None
        return None if value is None else Ref(file, tuple(keys), value)

    def drill(self, name: str, strategy: str, mode: str | None = None, variant: str = "") -> str | None:
        """The file of an ok result of a drill on a strategy: the plain run (the inventory as it is), or the one of a
        `variant` (drills.catalog.Drill.variants); with `mode`, the one run in that replication mode, either way."""
        for file in self.drills.get((name, strategy), []):
            doc = self.documents[file]
            if doc.get("status") != "ok":
                continue
            if mode is not None:
                if doc.get("figures", {}).get("mode") == mode:
                    return file
            elif doc.get("variant", "") == variant:
                return file
        return None

    def drill_any(self, name: str, strategy: str, variant: str = "") -> str | None:
        """The file of a drill's result whatever its status (failed ones included)."""
        files = [f for f in self.drills.get((name, strategy), []) if self.documents[f].get("variant", "") == variant]
        return files[0] if files else None

    def variants(self, name: str, strategy: str) -> list[str]:
        """The variants of a drill on a strategy that have a result ("" first: the plain run)."""
        return sorted({self.documents[f].get("variant", "") for f in self.drills.get((name, strategy), [])})

    def figure(self, name: str, strategy: str, *keys) -> Ref | None:
        return self.ref(self.drill(name, strategy), "figures", *keys)

    def strategies(self) -> list[str]:
        found = {s for _, s in self.drills} | set(self.loads) | set(self.verify)
        from session_kit.strategies import STRATEGIES

        return [s for s in STRATEGIES if s in found]

    # -- printing ------------------------------------------------------------------------------------------------

    def show(self, ref: Ref, digits: int | None = None, scale: float = 1.0, suffix: str = "") -> str:
        """Print a measured value (numbers formatted; `scale` 100 shows a fraction as a percentage)."""
        value = ref.value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            text = fmt_number(value * scale, digits)
            if scale != 1.0:
                self.printed.append(Printed(text, value * scale, [ref.path], f"scale:{scale}"))
                return text + suffix
        elif isinstance(value, bool):
            text = "yes" if value else "no"
        else:
            text = str(value)
        self.printed.append(Printed(text, value, [ref.path]))
        return text + suffix

    def derive(
        self, op: str, refs: list[Ref], digits: int | None = None, scale: float = 1.0, suffix: str = ""
    ) -> tuple[str, float]:
        """Print a value computed by OPS[op] from measured ones; returns the text and the value."""
        value = OPS[op](*(float(r.value) for r in refs)) * scale
        text = fmt_number(value, digits)
        self.printed.append(Printed(text, value, [r.path for r in refs], op if scale == 1.0 else f"{op}*{scale}"))
        return text + suffix, value

    def value_of(self, op: str, refs: list[Ref]) -> float:
        """A derived value, not printed (for rules and plots)."""
        return OPS[op](*(float(r.value) for r in refs))

    def record(self) -> dict[str, Any]:
        return {
            "results": str(self.root) if self.root else None,
            "printed": [dataclasses.asdict(p) for p in self.printed],
        }


def check_printed(printed: dict[str, Any], documents: dict[str, Any]) -> list[str]:
    """Problems with a sources.json record against the results it names: a path that does not resolve, or a printed
    value that is not what its sources give. Empty when every printed number comes from the results."""
    problems = []
    for item in printed["printed"]:
        values = []
        for source in item["sources"]:
            file, _, path = source.partition("#")
            try:
                values.append(resolve(documents[file], path))
            except (KeyError, IndexError, ValueError, TypeError):
                problems.append(f"{item['text']}: {source} does not resolve")
        if len(values) != len(item["sources"]):
            continue
        op = item["op"]
        if op == "measured":
            expected = values[0]
        else:
            name, _, scale = op.partition("*")
            if name.startswith("scale:"):
                expected = float(values[0]) * float(name[6:])
            else:
                expected = OPS[name](*(float(v) for v in values)) * (float(scale) if scale else 1.0)
        if isinstance(expected, (int, float)) and not isinstance(expected, bool):
            if not math.isclose(float(expected), float(item["value"]), rel_tol=1e-9, abs_tol=1e-9):
                problems.append(f"{item['text']}: {expected} at {item['sources']}, printed from {item['value']}")
            shown = item["text"].replace(",", "")
            try:
                if abs(float(shown) - float(expected)) > max(0.51, abs(float(expected)) * 0.01):
                    problems.append(f"{item['text']}: printed, but the sources give {expected}")
            except ValueError:
                problems.append(f"{item['text']}: not a number, but the sources give {expected}")
        elif str(expected) != item["text"] and expected != item["value"]:
            problems.append(f"{item['text']}: the sources give {expected!r}")
    return problems
