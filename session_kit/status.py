"""`./kit status INVENTORY`: per host, its roles, what is deployed there and whether it is healthy right now.

One SSH call per host (all at once) reads the facts: the strategy and balancing the kit rendered, the versions of
the app, Nginx, Redis and PostgreSQL, whether each service of the host's roles is active, and who holds what: the
balancer holding the floating address (lb_vip), the Redis primary and how far behind each replica is. Then HTTP: every app
node's /healthz on its private address, and the load balancer's /healthz (over HTTPS with lb_tls, the certificate
verified as the inventory's). Exit status 0 when everything is healthy,
1 when something is not (each problem named on its own line), 2 when the inventory is wrong.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import shlex
import subprocess
import tempfile
from pathlib import Path

import requests

from .inventory import Deployment, Node
from .platforms import PLATFORM, describe, platform_of
from .validate import KitError

# What the kit runs for each role (services must be active), and the facts read on every host.
SERVICES = {"lb": ("nginx",), "app": ("session-kit-app",), "redis": ("redis-server",), "db": ("postgresql",)}
FACTS = r"""
site=/etc/nginx/sites-available/session-kit.conf
echo "strategy=$(sed -n 's/^SESSION_STRATEGY=//p' /etc/session-kit/app.env 2>/dev/null || true)$(test -e /etc/session-kit/app.env || sed -n '1s/.*strategy \([a-z]*\),.*/\1/p' $site 2>/dev/null)"
echo "balancing=$(sed -n '1s/.*balancing \([a-z_]*\).*/\1/p' $site 2>/dev/null)"
echo "app=$(/opt/session-kit/venv/bin/python -c 'import importlib.metadata as m; print(m.version("session-kit"))' 2>/dev/null)"
echo "nginx=$(nginx -v 2>&1 | sed -n 's|.*nginx/||p')"
echo "redis=$(redis-server --version 2>/dev/null | sed -n 's/.* v=\([^ ]*\).*/\1/p')"
echo "postgresql=$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -1)"
echo "os=$(. /etc/os-release 2>/dev/null && echo "$ID $VERSION_ID $VERSION_CODENAME")"
"""


@dataclasses.dataclass
class HostStatus:
    node: Node
    facts: dict[str, str]
    services: dict[str, str]  # service -> systemctl is-active
    health: dict[str, str]  # what -> "ok" or the problem
    error: str = ""

    @property
    def problems(self) -> list[str]:
        found = [f"{self.node.name}: {self.error}"] if self.error else []
        found += [
            f"{self.node.name}: service {service} is {state}"
            for service, state in self.services.items()
            if state != "active"
        ]
        found += [f"{self.node.name}: {what} {state}" for what, state in self.health.items() if state != "ok"]
        return found


def _ssh(config: Path, node: Node, command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["ssh", "-F", str(config), node.name, node.as_root(command)], capture_output=True, text=True, timeout=30
    )


def _health(url: str, verify: str | bool = True) -> str:
    try:
        response = requests.get(url, timeout=3, verify=verify)
    except requests.RequestException as error:
        return f"unreachable ({type(error).__name__})"
    return "ok" if response.status_code == 200 else f"answers {response.status_code}"


def host_status(deployment: Deployment, config: Path, node: Node) -> HostStatus:
    # a store the strategy does not use is left as it was (the deploys leave it in place, unused): not a problem
    services = [service for role in node.roles if role in deployment.strategy.needs for service in SERVICES[role]]
    if node in deployment.sentinels():  # redis_mode=sentinel
        services.append("redis-sentinel")
    instances = [f"redis-server@{port}" for other, port in deployment.cluster_instances() if other == node]
    if instances:  # redis_mode=cluster: its instances serve, not redis-server
        services = [service for service in services if service != "redis-server"] + instances
    vip = deployment.vars.get("lb_vip")
    if "lb" in node.roles and vip:
        services.append("keepalived")
    script = FACTS + "".join(
        f'echo "service:{s}=$(systemctl is-active {s} 2>/dev/null)"\n' for s in services if s != "postgresql"
    )
    if "postgresql" in services:
        # The cluster the deploys configure (platforms.platform_of decides which, from PLATFORM's line), and every
        # cluster's unit: Debian's postgresql.service only starts the clusters and stays active when one has died.
        script += (
            f'echo "platform=$({PLATFORM})"\n'
            "for c in $(pg_lsclusters -h 2>/dev/null | awk '{print $1 \"-\" $2}'); do "
            'echo "cluster:postgresql@$c=$(systemctl is-active postgresql@$c 2>/dev/null)"; done\n'
        )
    script += _role_facts(deployment, node)
    try:
        result = _ssh(config, node, script)
    except subprocess.TimeoutExpired:
        return HostStatus(node, {}, {}, {}, error="no SSH answer within 30 s")
    if result.returncode != 0:
        return HostStatus(node, {}, {}, {}, error=f"SSH failed: {result.stderr.strip().splitlines()[-1:]}")
    facts, states, clusters = {}, {}, {}
    for line in result.stdout.splitlines():
        key, _, value = line.partition("=")
        if key.startswith("service:"):
            states[key[len("service:") :]] = value.strip() or "unknown"
        elif key.startswith("cluster:"):
            clusters[key[len("cluster:") :]] = value.strip() or "unknown"
        elif key:
            facts[key] = value.strip()
    health = {}
    if "postgresql" in services:
        try:
            version = platform_of(node.name, facts.pop("platform", ""), int(deployment.vars["postgres_port"])).postgres
        except KitError as error:  # an unsupported release, or clusters the deploys would refuse: named as they are
            health["postgresql"] = str(error).removeprefix(f"{node.name}: ")
        else:
            facts["postgresql"] = str(version)
            unit = f"postgresql@{version}-main"
            states[unit] = clusters.get(unit, "not found")
    if "app" in node.roles:
        health["app /healthz"] = _health(f"http://{node.ip}:{deployment.vars['app_port']}/healthz")
    if "lb" in node.roles:
        # as its clients reach it: HTTPS verified against the inventory's certificate with lb_tls
        health["balancer /healthz"] = _health(deployment.lb_url + "/healthz", deployment.tls_verify)
    return HostStatus(node, facts, states, health)


def _role_facts(deployment: Deployment, node: Node) -> str:
    """Who holds what: the floating address on a balancer, and a Redis's role and replication offset (standalone and
    Sentinel; the app's Redis, as admin)."""
    script = ""
    vip = deployment.vars.get("lb_vip")
    if "lb" in node.roles and vip:
        script += f"ip -o -4 addr show | grep -qF ' {vip}/' && echo holds_vip=yes || echo holds_vip=no\n"
    uses_redis = "redis" in node.roles and "redis" in deployment.strategy.needs
    if uses_redis and not deployment.cluster_instances():
        password = shlex.quote(deployment.secrets()["redis_admin_password"])
        script += (
            f"REDISCLI_AUTH={password} redis-cli --no-auth-warning --user admin -h {node.ip} "
            f"-p {deployment.vars['redis_port']} INFO replication 2>/dev/null | tr -d '\\r' | "
            "sed -n 's/^role:/redis_role=/p; s/^master_repl_offset:/redis_offset=/p; "
            "s/^master_link_status:/redis_link=/p'\n"
        )
    return script


def roles_held(deployment: Deployment, statuses: list[HostStatus]) -> tuple[list[str], list[str]]:
    """(lines, problems): which balancer holds the floating address, which Redis is primary and how far behind each
    replica is (bytes of replication stream not yet applied)."""
    lines, problems = [], []
    vip = deployment.vars.get("lb_vip")
    if vip:
        holders = [s.node.name for s in statuses if s.facts.get("holds_vip") == "yes"]
        lines.append(f"floating address {vip}: held by {', '.join(holders) or 'no balancer'}")
        if len(holders) != 1:
            problems.append(f"the floating address {vip} is held by {len(holders)} balancers, not one")
    redis = [s for s in statuses if s.facts.get("redis_role")]
    primaries = [s for s in redis if s.facts["redis_role"] == "master"]
    if redis:
        top = max((int(s.facts.get("redis_offset") or 0) for s in primaries), default=0)
        replicas = [
            f"{s.node.name} ({top - int(s.facts.get('redis_offset') or 0)} bytes behind"
            + ("" if s.facts.get("redis_link") == "up" else f", link {s.facts.get('redis_link') or 'unknown'}")
            + ")"
            for s in redis
            if s.facts["redis_role"] == "slave"
        ]
        lines.append(
            f"redis: primary {', '.join(s.node.name for s in primaries) or 'none'}"
            + (f"; replicas {', '.join(replicas)}" if replicas else "")
        )
        if len(primaries) != 1:
            problems.append(f"redis: {len(primaries)} primaries, not one")
        problems += [
            f"{s.node.name}: its Redis replica's link to the primary is {s.facts.get('redis_link') or 'unknown'}"
            for s in redis
            if s.facts["redis_role"] == "slave" and s.facts.get("redis_link") != "up"
        ]
    return lines, problems


def collect(deployment: Deployment) -> list[HostStatus]:
    with tempfile.NamedTemporaryFile("w", prefix="session-kit-ssh-", suffix=".conf") as config:
        config.write(deployment.ssh_config_text())
        config.flush()
        with concurrent.futures.ThreadPoolExecutor(max(1, len(deployment.nodes))) as pool:
            return list(pool.map(lambda node: host_status(deployment, Path(config.name), node), deployment.nodes))


def render(deployment: Deployment, statuses: list[HostStatus]) -> str:
    lines = [
        f"inventory: strategy {deployment.strategy.name}, balancing {deployment.lb_method}",
        f"{'host':10s} {'roles':16s} {'os':20s} {'deployed':26s} {'versions':44s} health",
    ]
    for status in statuses:
        f = status.facts
        deployed = f"{f.get('strategy') or '-'}" + (f", {f['balancing']}" if f.get("balancing") else "")
        versions = ", ".join(
            f"{name} {f[key]}"
            for name, key in (("app", "app"), ("nginx", "nginx"), ("redis", "redis"), ("pg", "postgresql"))
            if f.get(key)
        )
        health = "ok" if not status.problems else "UNHEALTHY"
        system = describe(f["os"]) if f.get("os") else "-"
        lines.append(
            f"{status.node.name:10s} {','.join(status.node.roles):16s} {system:20s} {deployed:26s} "
            f"{versions:44s} {health}"
        )
    held, problems = roles_held(deployment, statuses)
    lines += held
    problems += [problem for status in statuses for problem in status.problems]
    expected = deployment.strategy.name
    for status in statuses:
        running = status.facts.get("strategy")
        if "app" in status.node.roles and running and running != expected:
            problems.append(f"{status.node.name}: runs strategy {running}, the inventory says {expected}")
    lines += [f"  - {problem}" for problem in problems]
    lines.append("status: healthy" if not problems else f"status: {len(problems)} problem(s)")
    return "\n".join(lines)


def run(deployment: Deployment) -> int:
    statuses = collect(deployment)
    text = render(deployment, statuses)
    print(text)
    return 0 if text.endswith("status: healthy") else 1
