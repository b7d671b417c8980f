"""The firewall's rules (templates/etc/nftables.conf.j2, deploys/firewall.py), rendered as the deploy renders them
and loaded by the real nft into a network namespace of their own: what each port answers, proven with real
connections from addresses inside and outside each allowed set."""

from __future__ import annotations

import shutil
import subprocess
import uuid

import jinja2
import pytest

from deploys.cluster import template

pytestmark = pytest.mark.skipif(
    shutil.which("nft") is None or shutil.which("ip") is None,
    reason="nftables or iproute2 is not installed (./kit setup installs them)",
)


def render(**values) -> str:
    with open(template("/etc/nftables.conf")) as source:
        return jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(source.read()).render(**values)


RULES = [
    {"name": "redis_clients", "port": 6379, "sources": ["10.77.0.3", "10.77.0.4"], "why": "Redis: the app nodes"},
    {"name": "app_clients", "port": 8000, "sources": ["10.77.0.2"], "why": "the app: the load balancers"},
]


def sh(*command: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=check)


@pytest.fixture
def netns():
    """Two namespaces joined by a veth pair: the host (10.77.0.1, where the rules are loaded) and its clients, which
    hold every client address; yields the host's namespace."""
    tag = uuid.uuid4().hex[:6]
    host, clients = f"skt{tag}h", f"skt{tag}c"
    sh("ip", "netns", "add", host)
    sh("ip", "netns", "add", clients)
    try:
        sh(
            "ip",
            "link",
            "add",
            f"skt{tag}a",
            "netns",
            host,
            "type",
            "veth",
            "peer",
            "name",
            f"skt{tag}b",
            "netns",
            clients,
        )
        for ns, link, address in ((host, f"skt{tag}a", "10.77.0.1"), (clients, f"skt{tag}b", None)):
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "link", "set", link, "up")
            if address:
                sh("ip", "-n", ns, "addr", "add", f"{address}/32", "dev", link)
                sh("ip", "-n", ns, "route", "add", "10.0.0.0/8", "dev", link)
            else:
                for client in CLIENTS:
                    sh("ip", "-n", ns, "addr", "add", f"{client}/32", "dev", link)
                sh("ip", "-n", ns, "route", "add", "10.77.0.1/32", "dev", link)
        NAMESPACES[host] = clients
        yield host
    finally:
        NAMESPACES.pop(host, None)
        sh("ip", "netns", "del", host, check=False)
        sh("ip", "netns", "del", clients, check=False)


CLIENTS = ("10.77.0.2", "10.77.0.3", "10.77.0.9", "10.88.0.5")
NAMESPACES: dict[str, str] = {}


def connects(netns: str, source: str, port: int) -> bool:
    """Listen on 10.77.0.1:port in the host's namespace, connect from source in the clients' (this host's own
    address: from inside the host's namespace)."""
    server = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            netns,
            "python3",
            "-c",
            f"import socket, time\ns = socket.create_server(('10.77.0.1', {port}))\n"
            "print('up', flush=True)\ntime.sleep(10)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout.readline().strip() == "up"
        where = netns if source == "10.77.0.1" else NAMESPACES[netns]
        code = (
            f"import socket\nc = socket.socket(); c.bind(('{source}', 0)); c.settimeout(2)\n"
            f"try:\n    c.connect(('10.77.0.1', {port})); print('open')\n"
            f"except OSError as e:\n    print('closed', e)\n"
        )
        return sh("ip", "netns", "exec", where, "python3", "-c", code).stdout.startswith("open")
    finally:
        server.kill()
        server.wait(5)


def test_each_port_answers_only_its_clients_this_host_and_the_allowed(netns):
    conf = render(host_name="lab1", roles=["lb", "redis"], own_ip="10.77.0.1", allow_from=["10.88.0.0/24"], rules=RULES)
    loaded = subprocess.run(
        ["ip", "netns", "exec", netns, "nft", "-f", "-"], input=conf, capture_output=True, text=True, timeout=30
    )
    assert loaded.returncode == 0, loaded.stderr
    assert connects(netns, "10.77.0.3", 6379), "an app node must reach Redis"
    assert not connects(netns, "10.77.0.9", 6379), "a host that is no app node must not reach Redis"
    assert not connects(netns, "10.77.0.2", 6379), "the load balancer has no business with Redis"
    assert connects(netns, "10.77.0.2", 8000), "the load balancer must reach the app"
    assert not connects(netns, "10.77.0.3", 8000), "only the listed sources reach the app"
    assert connects(netns, "10.88.0.5", 6379) and connects(netns, "10.88.0.5", 8000), "firewall_allow_from reaches all"
    assert connects(netns, "10.77.0.1", 6379), "the host reaches itself"
    assert connects(netns, "10.77.0.9", 2222), "ports the kit does not manage (SSH...) stay open"

    # Loading it again replaces the kit's table only: another table survives, the rules are not doubled.
    sh("ip", "netns", "exec", netns, "nft", "add", "table", "inet", "someone_else")
    again = subprocess.run(
        ["ip", "netns", "exec", netns, "nft", "-f", "-"], input=conf, capture_output=True, text=True, timeout=30
    )
    assert again.returncode == 0, again.stderr
    ruleset = sh("ip", "netns", "exec", netns, "nft", "list", "ruleset").stdout
    assert "table inet someone_else" in ruleset
    assert ruleset.count("redis_clients: anyone else") == 1


def test_an_allowed_network_may_hold_the_host_itself(netns):
    """Overlapping entries (the host's own address inside firewall_allow_from) are merged, not refused."""
    conf = render(
        host_name="lab1", roles=["redis"], own_ip="10.77.0.1", allow_from=["10.77.0.0/24", "10.77.0.9"], rules=RULES[:1]
    )
    loaded = subprocess.run(
        ["ip", "netns", "exec", netns, "nft", "-f", "-"], input=conf, capture_output=True, text=True, timeout=30
    )
    assert loaded.returncode == 0, loaded.stderr
    assert connects(netns, "10.77.0.9", 6379)


def test_a_role_without_clients_still_renders():
    conf = render(
        host_name="h",
        roles=["redis"],
        own_ip="10.0.0.1",
        allow_from=[],
        rules=[{"name": "redis_clients", "port": 6379, "sources": [], "why": "none"}],
    )
    assert "elements = { 127.0.0.1 }" in conf
