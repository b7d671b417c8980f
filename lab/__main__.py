"""python -m lab up [--hosts N | --servers] [--release R[,R...]] | down [--purge] | status | power-cycle HOST [--off S]
| cut HOST [--for S]   (as root, on Debian 12)

--servers makes the hosts as servers come (root login over SSH refused; a `deploy` user with sudo and the lab's key)
and one per role, in the shape of inventories/example.py; inventories/lab.py then describes them that way.

The lab's directories can be moved with LAB_DIR (state) and LAB_CACHE (image, package cache), its addresses with
LAB_SUBNET (a free /24, default 10.213.0.0/24).
"""

from __future__ import annotations

import argparse
import sys

from . import config, control
from .sh import LabError


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the lab (idempotent; grows or shrinks it to --hosts)")
    up.add_argument("--hosts", type=int, default=None, help=f"how many (default {config.DEFAULT_HOSTS})")
    up.add_argument(
        "--servers",
        action="store_true",
        help="hosts as servers come (sudo user, no root login), a host per role as inventories/example.py",
    )
    up.add_argument(
        "--release",
        default=None,
        metavar="RELEASE[,RELEASE...]",
        help=f"Debian release of the hosts: one of {', '.join(config.RELEASES)} (default {config.SUITE}); "
        "a list gives host i the i-th (the last for the rest): bookworm,trixie = lab1 on bookworm, "
        "the others on trixie",
    )
    down = sub.add_parser("down", help="stop every host and remove everything the lab made")
    down.add_argument("--purge", action="store_true", help="also drop the cached image and package cache")
    sub.add_parser("status", help="list hosts, addresses, state and memory")
    cycle = sub.add_parser(
        "power-cycle",
        help="kill every process of a host at once (a power cut: nothing saved on the way down), then boot it again",
    )
    cycle.add_argument("host", help="lab1, lab2, ...")
    cycle.add_argument("--off", type=float, default=0, metavar="SECONDS", help="how long it stays off (default 0)")
    cut = sub.add_parser(
        "cut", help="cut a host off the network (its cable pulled: peers get no answer at all), then connect it again"
    )
    cut.add_argument("host", help="lab1, lab2, ...")
    cut.add_argument("--for", dest="seconds", type=float, default=30, metavar="SECONDS", help="default 30")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            control.up(args.hosts, "servers" if args.servers else "lab", args.release)
        elif args.command == "down":
            control.down(args.purge)
        elif args.command == "cut":
            control.cut(args.host, args.seconds)
            print(f"{args.host}: cut off for {args.seconds:g}s, connected again", flush=True)
        elif args.command == "power-cycle":
            times = control.power_cycle(args.host, args.off)
            print(
                f"{args.host}: killed in {times['kill_seconds']:.2f}s, off {times['off_seconds']:.1f}s, "
                f"booted in {times['boot_seconds']:.1f}s",
                flush=True,
            )
        else:
            rows = control.status()
            if not rows:
                print("lab: no hosts")
            for row in rows:
                print(f"{row['name']:6s} {row['ip']:15s} {row['state']:10s} {row['memory_mib']:7.1f} MiB")
    except LabError as error:
        print(f"lab: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lab: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
