"""python -m session_kit check INVENTORY [--data key=value ...]   check an inventory without touching any host
python -m session_kit demo [--strategy S] [--down]               lab up, deploy, verify, and say what was proven
python -m session_kit status INVENTORY [--data key=value ...]    per host: roles, what is deployed, healthy now?
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from .validate import KitError


def parse_data(pairs: list[str]) -> dict[str, str]:
    data = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise KitError(f"--data {pair}: expected key=value")
        data[key] = value
    return data


def add_inventory_options(
    add: Callable[..., object],
    *,
    inventory: str | None = "inventories/lab.py",
    inventory_help: str | None = None,
    data_help: str = "other inventory overrides, as pyinfra's --data",
) -> None:
    """--inventory (default: the lab's) and --data KEY=VALUE (repeatable, as pyinfra's; read with parse_data), declared
    with `add`: an argparse parser's add_argument or a pytest option group's addoption, which take the same
    arguments (python -m drills, python -m reporting, tests/verify)."""
    add("--inventory", default=inventory, help=inventory_help)
    add("--data", action="append", default=[], metavar="KEY=VALUE", help=data_help)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m session_kit", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="check an inventory (as pyinfra would read it) before any host is touched")
    check.add_argument("inventory")
    check.add_argument("--data", action="append", default=[], metavar="KEY=VALUE")
    demo = sub.add_parser("demo", help="the local lab, deployed and verified")
    demo.add_argument("--strategy", help="session strategy (default: the inventory's group data)")
    demo.add_argument("--down", action="store_true", help="take the lab down at the end")
    status = sub.add_parser("status", help="per host: roles, what is deployed, versions, and whether it is healthy")
    status.add_argument("inventory")
    status.add_argument("--data", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    try:
        if args.command == "check":
            from .inventory import load

            deployment = load(args.inventory, parse_data(args.data))
            roles = ", ".join(f"{role}: {len(deployment.role(role))}" for role in ("lb", "app", "redis", "db"))
            print(
                f"{args.inventory}: ok: session_strategy={deployment.strategy.name}, "
                f"lb_method={deployment.lb_method}, {roles}"
            )
        elif args.command == "status":
            from .inventory import load
            from .status import run as status_run

            return status_run(load(args.inventory, parse_data(args.data)))
        else:
            from .demo import run

            return run(args.strategy, args.down)
    except KitError as error:
        print(f"session-kit: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
