"""Deploy time against the number of app nodes, on the lab: the first apply on fresh hosts and the no-op re-apply.

    python -m benchmarks.deploy [--nodes 2,4,8] [--strategy redis] [--out report/deploy-scale.json]

For each count N it makes a fresh lab of N+1 hosts (lab1: balancer and stores; lab2..: app nodes), applies the kit
once (the first apply: packages, wheelhouse, configs, services), then again (nothing to change: it must report 0
changes), and records both durations with where the time went (pyinfra's stages: start, connecting, gathering
facts and preparing operations, running them). Prints the figures beside the kit's goals for deploy time (a
no-op re-apply in 3 s or less; the first apply for the largest N in no more than twice the time for the smallest, so
that deploy time grows far slower than the cluster), writes them as JSON, and puts the lab back at the size it found
(DEFAULT_HOSTS when there was none), with the kit applied. Needs root.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from drills.cluster import ROOT, Target
from lab import config, control

INVENTORY = "inventories/lab.py"
NOOP_GOAL_SECONDS = 3.0
FIRST_APPLY_GOAL_RATIO = 2.0


def fresh_lab(hosts: int) -> float:
    """Every host made again from the cached image (so that the first apply is a first apply): seconds taken."""
    started = time.monotonic()
    control.down()
    control.up(hosts)
    return round(time.monotonic() - started, 1)


def measure(app_nodes: int, strategy: str) -> dict[str, Any]:
    lab_seconds = fresh_lab(app_nodes + 1)
    target = Target(INVENTORY, {"session_strategy": strategy})
    try:
        first = target.apply()
        again = target.apply()
        target.wait_settled()
    finally:
        target.close()
    return {
        "app_nodes": app_nodes,
        "hosts": app_nodes + 1,
        "lab_up_seconds": lab_seconds,
        "first_apply": first,
        "noop_apply": again,
    }


def run(counts: list[int], strategy: str, say=print) -> dict[str, Any]:
    """Measure every count; the lab is put back at the size it found whatever happens."""
    found = len(control.status()) or config.DEFAULT_HOSTS
    result: dict[str, Any] = {
        "kind": "deploy-scale",
        "strategy": strategy,
        "inventory": INVENTORY,
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "runs": [],
    }
    try:
        for count in counts:
            say(f"deploy-scale: {count} app nodes: a fresh lab of {count + 1} hosts, then two applies of {strategy}")
            run_ = measure(count, strategy)
            result["runs"].append(run_)
            say(
                f"deploy-scale: {count} app nodes: first apply {run_['first_apply']['seconds']} s "
                f"({run_['first_apply'].get('changed', '?')} changes), no-op re-apply "
                f"{run_['noop_apply']['seconds']} s ({run_['noop_apply'].get('changed', '?')} changes)"
            )
    finally:
        say(f"deploy-scale: the lab back at {found} hosts, {strategy} applied")
        control.up(found)
        target = Target(INVENTORY, {"session_strategy": strategy})
        try:
            target.apply()
        finally:
            target.close()
    result["goals"] = goals(result["runs"])
    return result


def goals(runs: list[dict[str, Any]]) -> dict[str, Any]:
    if not runs:
        return {}
    slowest_noop = max(r["noop_apply"]["seconds"] for r in runs)
    found = {
        "noop_apply_seconds": {
            "expected": f"<= {NOOP_GOAL_SECONDS}",
            "measured": slowest_noop,
            "met": slowest_noop <= NOOP_GOAL_SECONDS,
        },
        "noop_apply_changes": {
            "expected": 0,
            "measured": max(r["noop_apply"].get("changed", -1) for r in runs),
            "met": all(r["noop_apply"].get("changed") == 0 for r in runs),
        },
    }
    if len(runs) > 1:
        small, large = runs[0], runs[-1]
        ratio = round(large["first_apply"]["seconds"] / small["first_apply"]["seconds"], 2)
        found["first_apply_ratio"] = {
            "expected": f"<= {FIRST_APPLY_GOAL_RATIO} ({large['app_nodes']} app nodes against {small['app_nodes']})",
            "measured": ratio,
            "met": ratio <= FIRST_APPLY_GOAL_RATIO,
        }
    return found


def table(result: dict[str, Any]) -> str:
    lines = [
        f"# deploy time against app nodes ({result['strategy']}, {result['when']}; python -m benchmarks.deploy)",
        f"{'app nodes':>9} {'hosts':>5} {'first apply (s)':>15} {'changes':>7} {'no-op (s)':>9} {'changes':>7}"
        "   no-op re-apply by stage (s)",
    ]
    for r in result["runs"]:
        first, noop = r["first_apply"], r["noop_apply"]
        by_stage = ", ".join(f"{stage} {seconds}" for stage, seconds in noop.get("phases", {}).items())
        lines.append(
            f"{r['app_nodes']:>9} {r['hosts']:>5} {first['seconds']:>15} {first.get('changed', '?'):>7} "
            f"{noop['seconds']:>9} {noop.get('changed', '?'):>7}   {by_stage}"
        )
    for r in result["runs"]:
        for kind in ("first_apply", "noop_apply"):
            steps = r[kind].get("slowest_steps") or []
            if steps:
                lines.append(
                    f"{r['app_nodes']} app nodes, {kind.replace('_', ' ')}'s slowest steps: "
                    + "; ".join(f"{s['step']} {s['seconds']} s ({s['host']})" for s in steps[:5])
                )
    for name, goal in result.get("goals", {}).items():
        lines.append(f"{'ok  ' if goal['met'] else 'MISS'} {name}: {goal['measured']} (goal {goal['expected']})")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.deploy", description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="2,4,8", help="app node counts, comma separated (default 2,4,8)")
    parser.add_argument("--strategy", default="redis")
    parser.add_argument("--out", type=Path, default=ROOT / "report" / "deploy-scale.json")
    args = parser.parse_args(argv)
    try:
        counts = sorted({int(n) for n in args.nodes.split(",")})
    except ValueError:
        parser.error(f"--nodes: comma-separated numbers, got {args.nodes!r}")
    if not counts or counts[0] < 1 or counts[-1] + 1 > config.MAX_HOSTS:
        parser.error(f"--nodes: each between 1 and {config.MAX_HOSTS - 1}")
    result = run(counts, args.strategy, say=lambda line: print(line, flush=True))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(f"written to {args.out}")
    return 0 if all(goal["met"] for goal in result["goals"].values()) else 1


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("benchmarks.deploy: needs root, like the lab")
    sys.exit(main(sys.argv[1:]))
