"""A host of a release the kit does not deploy onto (Debian 13 today, session_kit/platforms.py) stops the apply
before any operation, with one line naming it: shown on a real lab host of that release, in a mixed lab (lab1 on
Debian 12, the app nodes on 13), as an OS upgrade that reached some servers first would leave it."""

from __future__ import annotations

import re
import sys

import pytest

from tests.e2e.test_deploy import PYINFRA, run

pytestmark = pytest.mark.lab


@pytest.fixture
def mixed_lab(lab):
    up = run(sys.executable, "-m", "lab", "up", "--hosts", "3", "--release", "bookworm,trixie", timeout=1200)
    assert up.returncode == 0, up.stderr[-3000:]
    yield
    back = run(sys.executable, "-m", "lab", "up", timeout=1200)  # the default lab again: every host Debian 12
    assert back.returncode == 0, back.stderr[-3000:]


def test_a_host_on_another_release_is_refused_before_any_operation(mixed_lab):
    from lab.config import paths

    ssh = ["ssh", "-F", str(paths().ssh_config)]
    releases = {name: run(*ssh, name, ". /etc/os-release; echo $VERSION_CODENAME").stdout.strip()
                for name in ("lab1", "lab2", "lab3")}
    assert releases == {"lab1": "bookworm", "lab2": "trixie", "lab3": "trixie"}, releases
    before = run(*ssh, "lab2", "ls /etc/session-kit /opt/session-kit 2>&1; dpkg -l nginx redis-server 2>&1 | tail -2")
    result = run(PYINFRA, "-y", "inventories/lab.py", "deploys/site.py", "--data", "session_strategy=redis")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    # the first trixie host pyinfra prepares names itself
    refused = re.findall(r"lab[23]: Debian 13 \(trixie\) is not supported: session-kit deploys onto Debian 12 "
                         r"\(bookworm\)", output)
    assert len(refused) == 1, output[-3000:]
    assert "Starting operation" not in output, "operations ran despite a host on an unsupported release"
    after = run(*ssh, "lab2", "ls /etc/session-kit /opt/session-kit 2>&1; dpkg -l nginx redis-server 2>&1 | tail -2")
    assert after.stdout == before.stdout, "the refused apply changed lab2"
