"""Lab figures: image build, start time of N hosts from the cached image, idle memory per host, teardown.

    python -m benchmarks.lab [--sizes 3,6,12] [--build-image]

--build-image also times a fresh debootstrap image (in a temporary LAB_CACHE, removed afterwards). Takes the
running lab down first and leaves none behind. Needs root, like the lab.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

from lab import config, control, image


def timed(action) -> float:
    started = time.monotonic()
    action()
    return time.monotonic() - started


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="3,6,12")
    parser.add_argument("--build-image", action="store_true")
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.sizes.split(",")]
    rows = []
    if args.build_image:
        scratch = tempfile.mkdtemp(prefix="lab-image-", dir="/var/tmp")
        try:
            base = config.Paths(state=config.paths().state, cache=__import__("pathlib").Path(scratch)).base
            took = timed(lambda: image.build(base))
            rows.append(f"image build (debootstrap, cold): {took:.1f} s, {image.size_mb(base)} MB")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    control.down()
    for n in sizes:
        up = timed(lambda n=n: control.up(n))
        time.sleep(5)  # let the hosts settle before reading their memory
        memory = [row["memory_mib"] for row in control.status()]
        down = timed(control.down)
        rows.append(
            f"{n:2d} hosts: up {up:5.1f} s from the cached image, idle memory per host "
            f"{statistics.mean(memory):.1f} MiB PSS (min {min(memory):.1f}, max {max(memory):.1f}), "
            f"down {down:4.1f} s"
        )
    print("\n# lab figures (python -m benchmarks.lab" + (" --build-image" if args.build_image else "") + ")")
    for row in rows:
        print(row)
    return 0


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("benchmarks.lab: needs root, like the lab")
    sys.exit(main(sys.argv[1:]))
