"""python -m drills NAME [--strategy S ...] | --all   break the deployed cluster on purpose, under load, and measure

Runs on the lab (inventories/lab.py, `python -m lab up` first) or any inventory (--inventory). For each strategy it
deploys the kit (a no-op when already deployed), runs the drill while a pool of logged-in clients drives the load
balancer, prints the figures and the goals, restores what it changed, and writes the result as JSON into
report/drills/NAME--STRATEGY.json for the report
(NAME--STRATEGY--VARIANT.json for a drill's second configuration: lag in async mode, scale-out of sticky with
cookie routing). Exit status 1 when a goal was missed or a drill failed.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import sys
import time
import traceback
from pathlib import Path

from session_kit.__main__ import add_inventory_options
from session_kit.strategies import STRATEGIES
from session_kit.validate import KitError

from .catalog import DRILLS, Params, configurations
from .cluster import ROOT, DrillError, Target, check_inventory

OUT = ROOT / "report" / "drills"


def plan(names: list[str], strategies: list[str]) -> list[tuple[str, str, str]]:
    """(drill, strategy, variant) runs, grouped by strategy and then by configuration, so that each configuration is
    deployed once (the plain runs first, then each variant's: catalog.Drill.variants)."""
    return [
        (name, strategy, variant)
        for strategy in strategies
        for variant, _, covered in configurations(names, strategy)
        for name in covered
    ]


def file_name(name: str, strategy: str, variant: str) -> str:
    return f"{name}--{strategy}" + (f"--{variant}" if variant else "") + ".json"


def headline(result: dict) -> str:
    figures = result["figures"]
    keys = (
        "requests",
        "failed",
        "failed_on_killed_node",
        "sessions_lost",
        "counter_mismatch",
        "lost_updates",
        "seconds_until_serving",
        "failure_window_seconds",
        "bytes_per_session",
        "data_bytes_at_limit",
        "replay_after_logout_accepted",
        "mode",
        "lag_ms",
        "stale_first_reads",
        "rejoin",
        "one_24",
        "many_24",
        "clients_moved_share",
        "sessions_lost_share",
        "seconds_until_promoted",
        "seconds_until_writes",
    )
    return ", ".join(f"{key} {figures[key]}" for key in keys if key in figures)


def run(pairs: list[tuple[str, str, str]], inventory: str, data: dict, params: Params, out: Path) -> int:
    try:  # an inventory that cannot be read stops here, in one line, before any drill
        check_inventory(inventory, data, (strategy for _, strategy, _ in pairs))
    except KitError as error:
        print(f"drills: {error}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    started, missed, failed = time.monotonic(), 0, 0
    deployed: dict | None = None
    target: Target | None = None
    for index, (name, strategy, variant) in enumerate(pairs):
        elapsed = time.monotonic() - started
        left = f", about {elapsed / index * (len(pairs) - index) / 60:.0f} min left" if index else ""
        label = f"{name} on {strategy}" + (f" ({variant})" if variant else "")
        print(f"[{index + 1}/{len(pairs)}] {label} (at {elapsed / 60:.1f} min{left})", flush=True)
        overrides = DRILLS[name].variants(strategy)[variant]
        where = DRILLS[name].inventory(inventory, variant)
        result = {
            "drill": name,
            "strategy": strategy,
            "variant": variant,
            "overrides": overrides,
            "doc": DRILLS[name].doc,
            "inventory": where,
            "params": dataclasses.asdict(params),
            "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        }
        step_started = time.monotonic()
        wanted = {**data, **overrides, "session_strategy": strategy, "inventory": where}
        try:
            if deployed != wanted:
                if target is not None:
                    target.close()
                target = Target(where, {k: v for k, v in wanted.items() if k != "inventory"})
                applied = target.apply_unloaded()  # no load yet: nodes that must restart do so at once
                print(
                    f"      deployed {strategy}"
                    + "".join(f", {k}={v}" for k, v in overrides.items())
                    + f" ({applied.get('changed', '?')} changes, {applied['seconds']} s)",
                    flush=True,
                )
                deployed = wanted
            result["lb_method"] = target.deployment.lb_method
            result.update(DRILLS[name].run(target, params))
            result["status"] = "ok"
        except (DrillError, Exception) as error:  # a failed drill is recorded as failed; the others still run
            result.update(status="failed", error=f"{type(error).__name__}: {error}")
            if not isinstance(error, DrillError):
                result["traceback"] = traceback.format_exc(limit=5)
            deployed = None  # redeploy before the next drill: the cluster may not be as the drill found it
            failed += 1
        result["seconds"] = round(time.monotonic() - step_started, 1)
        (out / file_name(name, strategy, variant)).write_text(json.dumps(result, indent=2, default=str) + "\n")
        if result["status"] == "ok":
            print(f"      {headline(result)} ({result['seconds']} s)", flush=True)
            for goal_name, goal in result["goals"].items():
                mark = "ok  " if goal["met"] else "MISS"
                missed += not goal["met"]
                print(f"      {mark} {goal_name}: {goal['measured']} (goal {goal['expected']})", flush=True)
            print(f"      restored: {result['restored']}", flush=True)
        else:
            print(f"      FAILED: {result['error']}", flush=True)
    if target is not None:
        target.close()
    print(
        f"drills: {len(pairs)} run in {(time.monotonic() - started) / 60:.1f} min, {failed} failed, "
        f"{missed} goals missed; results in {out}",
        flush=True,
    )
    return 1 if failed or missed else 0


def restore_after_interrupt(inventory: str, data: dict) -> int:
    """Ctrl-C: the drill in progress stopped (its own `finally` put back what it added); re-apply the inventory as it
    is, so that the cluster is as the inventory describes (a stopped node started, a changed setting back)."""
    print(
        "drills: interrupted; re-applying the inventory as it is, so that the cluster is as it describes "
        "(Ctrl-C again to stop at once)",
        file=sys.stderr,
        flush=True,
    )
    target = Target(inventory, data)
    try:
        applied = target.apply()
        target.wait_settled()
        print(
            f"drills: restored: the inventory applied ({applied.get('changed', '?')} changes, "
            f"{applied['seconds']} s), every node healthy",
            file=sys.stderr,
        )
    except KeyboardInterrupt:
        print(
            f"drills: stopped; the cluster may be mid-drill: `./kit deploy {inventory}` puts it back", file=sys.stderr
        )
    except DrillError as error:
        print(f"drills: restoring failed: {error}; `./kit deploy {inventory}` puts it back", file=sys.stderr)
    finally:
        target.close()
    return 130


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m drills", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"drills: {', '.join(DRILLS)}")
    parser.add_argument("--all", action="store_true", help="every drill for every strategy it applies to")
    parser.add_argument(
        "--strategy",
        action="append",
        choices=list(STRATEGIES),
        help="strategy to run on (repeatable; default: all six)",
    )
    add_inventory_options(
        parser.add_argument, data_help="other inventory overrides, as pyinfra's --data (e.g. replication_mode=async)"
    )
    parser.add_argument("--clients", type=int, default=Params.clients)
    parser.add_argument("--seconds", type=float, default=Params.seconds, help="seconds of load around each event")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    names = list(DRILLS) if args.all else args.names
    unknown = [n for n in names if n not in DRILLS]
    if not names or unknown:
        parser.error(
            f"name a drill ({', '.join(DRILLS)}) or pass --all"
            + (f"; unknown: {', '.join(unknown)}" if unknown else "")
        )
    if args.clients < 1 or args.seconds < 3:
        parser.error("--clients must be at least 1 and --seconds at least 3")
    data = dict(pair.split("=", 1) for pair in args.data)
    pairs = plan(names, args.strategy or list(STRATEGIES))
    if not pairs:
        parser.error("none of these drills applies to these strategies")
    try:
        return run(pairs, args.inventory, data, Params(clients=args.clients, seconds=args.seconds), args.out)
    except KeyboardInterrupt:
        return restore_after_interrupt(args.inventory, data)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
