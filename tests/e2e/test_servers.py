"""inventories/example.py as written, applied to hosts made the way servers come: `python -m lab up --servers` makes
one host per role of the example (its groups, read from the file), each with a `deploy` user that has sudo and the
lab's key, and root login over SSH refused. inventories/lab.py then describes them with the example's own data
(ssh_user, _sudo) and the lab's addresses: the deploy, the verification suite (testinfra over SSH with sudo) and
`./kit status` run as the README's "Using it on your servers" says, through sudo.

Three times: every host on Debian 12; every host on Debian 13 (every strategy); and a mixed cluster as a rolling
upgrade of the OS leaves it, the load balancer and the stores still on Debian 12 and the app nodes on 13. In each,
a host on a release the kit does not deploy onto stops the apply before any operation, with one line naming it. The
lab goes back to its own shape at the end, for the modules after this one."""

from __future__ import annotations

import re
import sys

import pytest

from lab import config
from lab.control import releases_of
from lab.inventory import example_groups
from session_kit.inventory import load
from session_kit.platforms import SUPPORTED
from session_kit.strategies import STRATEGIES
from tests.e2e.test_deploy import INVENTORY, PYINFRA, deploy_verify_and_reapply, run

pytestmark = pytest.mark.lab

# layout: (--release of `lab up`, host i gets the i-th and the last the rest; the strategies deployed, in turn)
LAYOUTS = {
    "debian12": ("bookworm", ["database"]),
    "debian13": ("trixie", list(STRATEGIES)),
    # lab1 (lb) on 12; lab2-lab4 (the app nodes) on 13; lab5 (cache) and lab6 (db) on 12
    "mixed": ("bookworm,trixie,trixie,trixie,bookworm", ["redis", "database"]),
}


def version_of(codename: str) -> str:
    """ "trixie" -> "13", from the kit's table of supported releases."""
    return next(version for (_, version), release in SUPPORTED.items() if release.name.endswith(f"({codename})"))


def release_of(layout: str, host_name: str) -> str:
    """The release `lab up --release` gave labN (lab.control.releases_of: the N-th of the list, the last for the
    rest)."""
    return releases_of(LAYOUTS[layout][0], int(host_name.removeprefix("lab")))[-1]


@pytest.fixture(scope="module")
def lab_back(lab):
    """The lab in its own shape again once every layout is done (not between them: each makes its hosts anew)."""
    yield
    back = run(sys.executable, "-m", "lab", "up", timeout=1200)
    assert back.returncode == 0, back.stdout + back.stderr


@pytest.fixture(scope="module", params=list(LAYOUTS))
def servers(lab_back, request):
    releases = LAYOUTS[request.param][0]
    up = run(sys.executable, "-m", "lab", "up", "--servers", "--release", releases, timeout=1200)
    assert up.returncode == 0, up.stdout + up.stderr
    assert "as servers (root login refused; deploy with sudo)" in up.stdout, up.stdout
    return request.param, load(INVENTORY)


def ssh(user: str, host: str, command: str):
    state = config.paths()
    return run("ssh", "-F", str(state.ssh_config), "-l", user, host, command, timeout=30)


def test_hosts_refuse_root_let_the_deploy_user_sudo_and_run_their_release(servers):
    layout, inventory = servers
    for node in inventory.nodes:
        refused = ssh("root", node.name, "true")
        assert refused.returncode == 255 and "Permission denied" in refused.stderr, (
            f"{node.name}: root login over SSH was not refused: {refused.returncode} {refused.stderr[-300:]}"
        )
        sudo = ssh(config.SERVER_USER, node.name, "id -un && sudo -n id -u && . /etc/os-release && echo $VERSION_ID")
        release = release_of(layout, node.name)
        assert sudo.returncode == 0 and sudo.stdout.split() == [config.SERVER_USER, "0", version_of(release)], (
            f"{node.name}: {config.SERVER_USER} with sudo on {release}: {sudo.returncode} {sudo.stdout!r} "
            f"{sudo.stderr[-300:]}"
        )


def test_the_inventory_is_the_example_as_written(servers):
    """The same groups with as many hosts each, a host per role, and the example's own SSH user and sudo."""
    _, inventory = servers
    example = example_groups()
    for role, entries in example.items():
        nodes = inventory.role(role)
        assert len(nodes) == len(entries), f"{role}: {len(nodes)} lab host(s), the example has {len(entries)}"
        for node, (name, data) in zip(nodes, entries):
            assert node.ssh.get("ssh_user") == data["ssh_user"] and node.ssh.get("_sudo") is data["_sudo"] is True, (
                f"{node.name} (the example's {name}): {node.ssh}"
            )
    hosts = [node.name for role in example for node in inventory.role(role)]
    assert len(hosts) == len(set(hosts)), f"a host per role, as the example: {hosts}"


def test_a_host_on_another_release_is_refused_before_any_operation(servers):
    """One app node made to say Debian 11 (its /etc/os-release; the lab builds only releases the kit supports): the
    apply stops with one line naming it, before any operation on any host, and changes nothing."""
    _, inventory = servers
    node = inventory.role("app")[-1].name
    state = "ls /etc/session-kit /opt/session-kit 2>&1; dpkg -l nginx redis-server 2>&1 | tail -2"
    before = ssh(config.SERVER_USER, node, state)
    pretend = (
        "sudo -n mv /etc/os-release /etc/os-release.kit-test && sed -e 's/^VERSION_ID=.*/VERSION_ID=\"11\"/' "
        "-e 's/^VERSION_CODENAME=.*/VERSION_CODENAME=bullseye/' /usr/lib/os-release | "
        "sudo -n tee /etc/os-release >/dev/null"
    )
    assert ssh(config.SERVER_USER, node, pretend).returncode == 0
    try:
        result = run(PYINFRA, "-y", INVENTORY, "deploys/site.py", "--data", "session_strategy=redis")
    finally:
        restored = ssh(config.SERVER_USER, node, "sudo -n mv -f /etc/os-release.kit-test /etc/os-release")
        assert restored.returncode == 0, restored.stderr
    output = result.stdout + result.stderr
    assert result.returncode != 0
    refused = re.findall(
        rf"{node}: Debian 11 \(bullseye\) is not supported: session-kit deploys onto Debian 12 "
        r"\(bookworm\) or Debian 13 \(trixie\)",
        output,
    )
    assert len(refused) == 1, output[-3000:]
    assert "Starting operation" not in output, "operations ran despite a host on an unsupported release"
    assert ssh(config.SERVER_USER, node, state).stdout == before.stdout, f"the refused apply changed {node}"


def test_the_example_deploys_through_sudo_verifies_and_reapplies(servers, outside_source):
    layout, _ = servers
    for strategy in LAYOUTS[layout][1]:
        deploy_verify_and_reapply(strategy, outside_source)


def test_status_through_sudo(servers):
    """After the last deploy above: every host healthy, read over SSH through sudo, with its versions."""
    layout, inventory = servers
    strategy = LAYOUTS[layout][1][-1]
    result = run(
        sys.executable, "-m", "session_kit", "status", INVENTORY, "--data", f"session_strategy={strategy}", timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("status: healthy"), result.stdout
    for node in inventory.nodes:
        assert node.name in result.stdout, result.stdout
    postgres = {"debian12": "15", "debian13": "17", "mixed": "15"}[layout]
    assert re.search(rf"\bpg {postgres}\b", result.stdout), result.stdout
    for node in inventory.nodes:
        release = release_of(layout, node.name)
        assert re.search(rf"^{node.name} .* Debian {version_of(release)} \({release}\) ", result.stdout, re.M), (
            result.stdout
        )
    if strategy == "database":
        # the cluster's own unit is what serves (Debian's postgresql.service stays active when a cluster died)
        db = inventory.role("db")[0].name
        unit = f"postgresql@{postgres}-main"
        # stopped: a crash would be over before status looks (systemd starts a crashed cluster again within 1 s)
        assert ssh(config.SERVER_USER, db, f"sudo -n systemctl stop {unit}").returncode == 0
        try:
            broken = run(
                sys.executable,
                "-m",
                "session_kit",
                "status",
                INVENTORY,
                "--data",
                f"session_strategy={strategy}",
                timeout=120,
            )
            assert broken.returncode == 1 and f"{db}: service {unit} is " in broken.stdout, broken.stdout
        finally:
            assert ssh(config.SERVER_USER, db, f"sudo -n systemctl start {unit}").returncode == 0
