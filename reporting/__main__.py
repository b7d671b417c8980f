"""python -m reporting [--strategies S,...] [--quick] [--deploy-scale 2,4,8] [--out report/] [--from-results DIR]

For each strategy: deploy it with the kit, verify it, measure throughput and latency through the balancer beside a
no-session baseline, run the drills; then write report/index.html, report/report.md and the plots. With
--from-results DIR it only renders, from the JSON results in DIR, without touching any host.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from session_kit.__main__ import add_inventory_options
from session_kit.strategies import STRATEGIES

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m reporting", description=" ".join(__doc__.split("\n\n")[1].split()))
    parser.add_argument("--strategies", default=",".join(STRATEGIES), help="comma-separated (default: all six)")
    parser.add_argument("--quick", action="store_true", help="fewer seconds per run and a subset of the drills")
    parser.add_argument("--out", type=Path, default=ROOT / "report", help="where the report goes (default: report/)")
    parser.add_argument(
        "--from-results",
        type=Path,
        metavar="DIR",
        help="render from the JSON results in DIR (any depth) without touching the lab",
    )
    add_inventory_options(parser.add_argument)
    parser.add_argument(
        "--deploy-scale",
        metavar="COUNTS",
        default="",
        help="also time the first and the no-op apply on a fresh lab of each of these app node "
        "counts (comma separated, e.g. 2,4,8; benchmarks/deploy.py; the lab only)",
    )
    args = parser.parse_args(argv)
    strategies = [s for s in args.strategies.split(",") if s]
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown or not strategies:
        parser.error(f"--strategies: unknown {', '.join(unknown)} (choose from {', '.join(STRATEGIES)})")
    if args.from_results is not None:
        if not args.from_results.is_dir():
            parser.error(f"--from-results: {args.from_results} is not a directory")
        from . import write

        sources = write(args.from_results, args.out)
        print(
            f"report: {args.out / 'index.html'} and {args.out / 'report.md'} from {args.from_results} "
            f"({len(sources.printed)} figures, each traced in {args.out / 'sources.json'})"
        )
        return 0
    from .run import run

    data = dict(pair.split("=", 1) for pair in args.data)
    try:
        deploy_scale = sorted({int(n) for n in args.deploy_scale.split(",") if n})
    except ValueError:
        parser.error(f"--deploy-scale: comma-separated app node counts, got {args.deploy_scale!r}")
    if deploy_scale and (deploy_scale[0] < 1 or not args.inventory.endswith("inventories/lab.py")):
        parser.error("--deploy-scale: counts of at least 1, on the lab (inventories/lab.py): it remakes the hosts")
    return run(
        strategies, quick=args.quick, out=args.out, inventory=args.inventory, data=data, deploy_scale=deploy_scale
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
