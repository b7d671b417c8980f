"""`./kit status` on the lab: a healthy cluster reports healthy (exit 0); a stopped service is named (exit 1)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from drills.cluster import Target
from tests.e2e.test_deploy import ROOT

pytestmark = pytest.mark.lab
INVENTORY = "inventories/lab.py"


def status() -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "session_kit", "status", INVENTORY, "--data", "session_strategy=redis"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_status_names_a_stopped_service(lab):
    target = Target(INVENTORY, {"session_strategy": "redis"})
    try:
        assert target.apply().get("errors") == 0
        healthy = status()
        assert healthy.returncode == 0, healthy.stdout + healthy.stderr
        assert healthy.stdout.strip().endswith("status: healthy")
        for node in target.deployment.nodes:
            assert node.name in healthy.stdout
        app = target.role("app")[-1]
        target.ssh(app, "systemctl stop session-kit-app")
        try:
            broken = status()
            assert broken.returncode == 1, broken.stdout
            assert f"{app.name}: service session-kit-app is inactive" in broken.stdout
            assert f"{app.name}: app /healthz unreachable" in broken.stdout
        finally:
            target.ssh(app, "systemctl start session-kit-app")
            target.wait_healthy(app)
    finally:
        target.close()
