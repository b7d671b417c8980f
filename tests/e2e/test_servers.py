"""inventories/example.py as written, applied to hosts made the way servers come: `python -m lab up --servers` makes
one host per role of the example (its groups, read from the file), each with a `deploy` user that has sudo and the
lab's key, and root login over SSH refused. inventories/lab.py then describes them with the example's own data
(ssh_user, _sudo) and the lab's addresses: the deploy, the verification suite (testinfra over SSH with sudo) and
`./kit status` run as the README's "Using it on your servers" says, through sudo. The lab goes back to its own
shape at the end, for the modules after this one."""

from __future__ import annotations

import sys

import pytest

from lab import config
from lab.inventory import example_groups
from session_kit.inventory import load
from tests.e2e.test_deploy import INVENTORY, deploy_verify_and_reapply, run

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def servers(lab):
    up = run(sys.executable, "-m", "lab", "up", "--servers")
    assert up.returncode == 0, up.stdout + up.stderr
    assert "as servers (root login refused; deploy with sudo)" in up.stdout, up.stdout
    yield load(INVENTORY)
    back = run(sys.executable, "-m", "lab", "up")
    assert back.returncode == 0, back.stdout + back.stderr


def ssh(user: str, host: str, command: str):
    state = config.paths()
    return run("ssh", "-F", str(state.ssh_config), "-l", user, host, command, timeout=30)


def test_hosts_refuse_root_and_let_the_deploy_user_sudo(servers):
    for node in servers.nodes:
        refused = ssh("root", node.name, "true")
        assert refused.returncode == 255 and "Permission denied" in refused.stderr, \
            f"{node.name}: root login over SSH was not refused: {refused.returncode} {refused.stderr[-300:]}"
        sudo = ssh(config.SERVER_USER, node.name, "id -un && sudo -n id -u")
        assert sudo.returncode == 0 and sudo.stdout.split() == [config.SERVER_USER, "0"], \
            f"{node.name}: {config.SERVER_USER} with sudo: {sudo.returncode} {sudo.stdout!r} {sudo.stderr[-300:]}"


def test_the_inventory_is_the_example_as_written(servers):
    """The same groups with as many hosts each, a host per role, and the example's own SSH user and sudo."""
    example = example_groups()
    for role, entries in example.items():
        nodes = servers.role(role)
        assert len(nodes) == len(entries), f"{role}: {len(nodes)} lab host(s), the example has {len(entries)}"
        for node, (name, data) in zip(nodes, entries):
            assert node.ssh.get("ssh_user") == data["ssh_user"] and node.ssh.get("_sudo") is data["_sudo"] is True, \
                f"{node.name} (the example's {name}): {node.ssh}"
    hosts = [node.name for role in example for node in servers.role(role)]
    assert len(hosts) == len(set(hosts)), f"a host per role, as the example: {hosts}"


@pytest.mark.parametrize("strategy", ["redis", "database"])
def test_the_example_deploys_through_sudo_verifies_and_reapplies(servers, outside_source, strategy):
    deploy_verify_and_reapply(strategy, outside_source)


def test_status_through_sudo(servers):
    """After the database deploy above: every host healthy, read over SSH through sudo."""
    result = run(sys.executable, "-m", "session_kit", "status", INVENTORY, "--data", "session_strategy=database",
                 timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("status: healthy"), result.stdout
    for node in servers.nodes:
        assert node.name in result.stdout, result.stdout
