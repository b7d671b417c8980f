"""Each role's host, over SSH (testinfra): packages, services, sockets on the private address only, configs."""

from __future__ import annotations

import re

import pytest


def nodes_of(deployment, role):
    nodes = deployment.role(role)
    assert nodes, f"inventory: group {role} is empty"
    return nodes


def assert_listening_privately(host, node, port: int) -> None:
    assert host.socket(f"tcp://{node.ip}:{port}").is_listening, f"{node.name}: nothing listens on {node.ip}:{port}"
    assert not host.socket(f"tcp://0.0.0.0:{port}").is_listening, f"{node.name}: port {port} is open on 0.0.0.0"
    assert not host.socket(f"tcp://:::{port}").is_listening, f"{node.name}: port {port} is open on every IPv6 address"


def test_load_balancer(deployment, remote):
    for node in nodes_of(deployment, "lb"):
        host = remote(node)
        assert host.package("nginx").is_installed, f"{node.name}: nginx is not installed"
        service = host.service("nginx")
        assert service.is_running and service.is_enabled, f"{node.name}: nginx is not running and enabled"
        check = host.run("nginx -t")
        assert check.rc == 0, f"{node.name}: nginx -t fails: {check.stderr}"
        site = host.file("/etc/nginx/sites-enabled/session-kit.conf")
        assert site.exists, f"{node.name}: the session-kit site is not enabled"
        method = deployment.lb_method
        expected = {"ip_hash": "ip_hash;", "hash_cookie": "map $cookie_SESSION $session_kit_upstream"}.get(method)
        content = site.content_string
        if expected:
            assert expected in content, f"{node.name}: upstream is not balanced by {method}"
        else:
            assert "ip_hash;" not in content and "map $cookie" not in content, f"{node.name}: not round robin"
        if method == "hash_cookie":  # one upstream per route, its node first and the others as backups
            routes = content.count("upstream session_kit_route_")
            assert routes == len(deployment.role("app")), f"{node.name}: {routes} route upstreams"
        for app in deployment.role("app"):
            assert f"server {app.ip}:" in content, f"{node.name}: app node {app.name} missing from the upstream"


def test_app_nodes(deployment, remote):
    port = deployment.vars["app_port"]
    for node in nodes_of(deployment, "app"):
        host = remote(node)
        service = host.service("session-kit-app")
        assert service.is_running and service.is_enabled, f"{node.name}: session-kit-app is not running and enabled"
        assert_listening_privately(host, node, port)
        env = host.file("/etc/session-kit/app.env")
        assert env.mode == 0o640 and env.user == "root", f"{node.name}: app.env must be 0640 root (it holds secrets)"
        assert f"SESSION_STRATEGY={deployment.strategy.name}" in env.content_string, \
            f"{node.name}: app.env does not select {deployment.strategy.name}"
        assert host.run(f"{deployment.vars['app_dir']}/venv/bin/python -c 'import sample_app'").rc == 0


SECURITY_GOAL = 2.0  # systemd-analyze's exposure score: 2.0 or lower is "OK"


def test_app_runs_sandboxed(deployment, remote, proven):
    """The app's unit is locked down (systemd's own score), and the app still works (the session tests run after)."""
    scores = {}
    for node in nodes_of(deployment, "app"):
        result = remote(node).run("systemd-analyze security session-kit-app --no-pager")
        assert result.rc == 0, f"{node.name}: systemd-analyze security failed: {result.stderr[-300:]}"
        match = re.search(r"Overall exposure level for session-kit-app\.service:\s*([\d.]+)", result.stdout)
        assert match, f"{node.name}: no exposure score in systemd-analyze's output"
        scores[node.name] = float(match.group(1))
        assert scores[node.name] <= SECURITY_GOAL, \
            f"{node.name}: session-kit-app's exposure {scores[node.name]} is above {SECURITY_GOAL}"
    proven(f"the app runs sandboxed: systemd-analyze security scores {max(scores.values())} (goal <= {SECURITY_GOAL})")


@pytest.mark.parametrize("role", ["redis", "db"])
def test_stores(deployment, remote, role):
    if role not in deployment.strategy.needs:
        pytest.skip(f"{deployment.strategy.name} does not use {role}")
    for node in nodes_of(deployment, role):
        host = remote(node)
        if role == "redis":
            assert host.package("redis-server").is_installed
            service = host.service("redis-server")
            assert service.is_running and service.is_enabled, f"{node.name}: redis-server not running and enabled"
            assert_listening_privately(host, node, deployment.vars["redis_port"])
            refused = host.run(f"redis-cli -h {node.ip} -p {deployment.vars['redis_port']} PING")
            assert "NOAUTH" in refused.stdout + refused.stderr, f"{node.name}: redis answers without a password"
            conf = host.file("/etc/redis/redis.conf").content_string
            assert "protected-mode yes" in conf and "requirepass" in conf
        else:
            version = deployment.vars["postgres_version"]
            assert host.package(f"postgresql-{version}").is_installed
            assert host.service(f"postgresql@{version}-main").is_running, f"{node.name}: postgresql is not running"
            assert host.service("postgresql").is_enabled, f"{node.name}: postgresql is not enabled"
            assert_listening_privately(host, node, deployment.vars["postgres_port"])
            hba = host.file(f"/etc/postgresql/{version}/main/pg_hba.conf").content_string
            hosts = {line.split()[3] for line in hba.splitlines() if line.startswith("host")}
            assert hosts == {f"{app.ip}/32" for app in deployment.role("app")}, \
                f"{node.name}: pg_hba.conf must admit the app nodes and nothing else, admits {sorted(hosts)}"
