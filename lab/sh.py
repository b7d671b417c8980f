"""Running commands, with errors that say in one line what failed."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Sequence


class LabError(Exception):
    """Something the user must fix or know; printed as one line."""


def run(command: Sequence[str], check: bool = True, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    try:
        result = subprocess.run(list(command), capture_output=True, text=True, timeout=timeout, **kwargs)
    except FileNotFoundError:
        raise LabError(f"{command[0]}: not installed (./kit setup installs what the lab needs)") from None
    except subprocess.TimeoutExpired:
        raise LabError(f"{' '.join(command[:3])}: no answer after {timeout} s") from None
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise LabError(f"{' '.join(command[:4])}: {detail[-1] if detail else f'exit {result.returncode}'}")
    return result


class Progress:
    """Prints each step as it starts and how long it took."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.times: dict[str, float] = {}

    def step(self, name: str):
        progress = self

        class Step:
            def __enter__(self):
                self.t0 = time.monotonic()
                print(f"[{time.monotonic() - progress.start:6.1f}s] {name} ...", file=sys.stderr, flush=True)
                return self

            def __exit__(self, kind, error, tb):
                took = time.monotonic() - self.t0
                progress.times[name] = took
                if kind is None:
                    print(
                        f"[{time.monotonic() - progress.start:6.1f}s] {name}: done in {took:.1f}s",
                        file=sys.stderr,
                        flush=True,
                    )

        return Step()
