"""Verification after deploy, against any inventory:

    pytest tests/verify --inventory inventories/lab.py [--strategy token] [--data lb_method=hash_cookie]
                        [--lb-url https://203.0.113.10]

Hosts, groups and the strategy come from the inventory (as pyinfra reads it; --strategy mirrors
`--data session_strategy=X`). Role checks run over SSH with testinfra, session checks over HTTPS (lb_tls, the
default; verified against the inventory's certificate) or HTTP through the load balancer, as a user would. Every
failure names the host or node and the check.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import testinfra

from session_kit.__main__ import add_inventory_options
from session_kit.inventory import Deployment, Node, load
from session_kit.validate import KitError


def pytest_addoption(parser):
    group = parser.getgroup("session-kit verification")
    add_inventory_options(
        group.addoption,
        inventory=None,
        inventory_help="the pyinfra inventory that was deployed",
        data_help="any other `pyinfra --data` override the deployment was applied with (e.g. lb_method=...)",
    )
    group.addoption("--strategy", help="the session_strategy it was deployed with, if overridden with --data")
    group.addoption(
        "--lb-url", help="the load balancer's URL (default: https://<lb ssh_hostname>, or http:// with lb_tls = False)"
    )
    group.addoption(
        "--outside-source",
        metavar="ADDRESS",
        help="an address of this machine that no firewall rule admits (not in firewall_allow_from, not "
        "a cluster host): the firewall checks connect from it and must be refused",
    )
    group.addoption(
        "--proven",
        metavar="FILE",
        help="write what the passing checks proved, as JSON lines of text (the demo prints them)",
    )


PROVEN: list[str] = []


@pytest.fixture
def proven():
    """proven(text): a sentence that a passing check measured; written to --proven FILE at the end."""
    return PROVEN.append


def pytest_sessionfinish(session):
    path = session.config.getoption("--proven", default=None)
    if path:
        import json

        Path(path).write_text(json.dumps(PROVEN, indent=1) + "\n")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--inventory"):
        return
    skip = pytest.mark.skip(reason="verification runs against a deployment: pass --inventory INVENTORY")
    for item in items:
        if "tests/verify" in str(item.fspath):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def deployment(pytestconfig) -> Deployment:
    from session_kit.__main__ import parse_data

    try:
        overrides = parse_data(pytestconfig.getoption("--data"))
    except KitError as error:
        pytest.exit(str(error), returncode=2)
    if pytestconfig.getoption("--strategy"):
        overrides["session_strategy"] = pytestconfig.getoption("--strategy")
    try:
        return load(pytestconfig.getoption("--inventory"), overrides)
    except KitError as error:
        pytest.exit(f"inventory: {error}", returncode=2)


@pytest.fixture(scope="session")
def lb_url(pytestconfig, deployment) -> str:
    return (pytestconfig.getoption("--lb-url") or deployment.lb_url).rstrip("/")


@pytest.fixture(scope="session")
def tls_verify(deployment) -> str | bool:
    """requests' `verify=` for the balancer: the inventory's self-signed certificate as the only CA (lb_tls), or True
    (the system's CAs: an inventory's own certificate, or plain HTTP)."""
    return deployment.tls_verify


@pytest.fixture(scope="session")
def ssh_config(deployment, tmp_path_factory) -> Path:
    """An ssh config for testinfra, written from the inventory's SSH variables (strict host key checking kept)."""
    path = tmp_path_factory.mktemp("ssh") / "config"
    path.write_text(deployment.ssh_config_text())
    return path


@pytest.fixture(scope="session")
def remote(ssh_config, deployment):
    """remote(node) -> a testinfra host for that inventory host."""
    cache = {}

    def connect(node: Node):
        if node.name not in cache:
            cache[node.name] = testinfra.get_host(
                f"ssh://{node.name}", ssh_config=str(ssh_config), sudo=bool(node.ssh.get("_sudo"))
            )
        return cache[node.name]

    return connect
