"""The lab for every end-to-end module: up once (4 hosts), down at the end of the run."""

from __future__ import annotations

import pytest

from tests.e2e.test_deploy import run


@pytest.fixture(scope="session")
def lab():
    import sys

    up = run(sys.executable, "-m", "lab", "up")
    assert up.returncode == 0, up.stderr
    yield
    down = run(sys.executable, "-m", "lab", "down")
    assert down.returncode == 0, down.stderr


@pytest.fixture(scope="session")
def outside_source(lab) -> str:
    """An address of this machine in one of the lab's client networks: no firewall rule of the lab admits it."""
    from lab.network import client_addresses

    return client_addresses(1)[0]
