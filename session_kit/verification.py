"""How the verification suite is run against a deployment: one command line, for the demo and the end-to-end tests
alike (`./kit verify` runs the same suite from the shell)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any


def verify_command(inventory: str, data: Mapping[str, Any] | None = None, *extra: str) -> list[str]:
    """pytest on tests/verify against `inventory`, deployed with the `--data` overrides `data` (session_strategy
    among them); `extra` goes to pytest (--outside-source ADDRESS, --proven FILE)."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/verify", "--inventory", inventory]
    for key, value in (data or {}).items():
        command += ["--data", f"{key}={value}"]
    return command + list(extra)
