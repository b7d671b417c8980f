"""Each role's host, over SSH (testinfra): packages, services, sockets on the private address only, configs."""

from __future__ import annotations

import re
import shlex

import pytest

from session_kit.platforms import PLATFORM, platform_of
from session_kit.tls import spki_sha256


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
        if deployment.vars.get("lb_tls"):  # the pair from the controller, the key readable by root alone
            key, certificate = host.file("/etc/nginx/session-kit/tls.key"), host.file("/etc/nginx/session-kit/tls.crt")
            assert key.exists and key.mode == 0o600 and key.user == "root", f"{node.name}: tls.key must be 0600 root"
            assert certificate.content_string.strip() == deployment.tls_certificate.read_text().strip(), (
                f"{node.name}: tls.crt is not {deployment.tls_certificate} of this controller"
            )
            assert f"listen {deployment.vars['nginx_listen_tls']} ssl" in content, f"{node.name}: no TLS listener"


def test_one_balancer_holds_the_floating_address_and_every_balancer_serves_alike(deployment, remote, proven):
    """With lb_vip: keepalived runs on every balancer, exactly one holds the address, the address answers /healthz,
    and every balancer answers on its own address too, from the same site configuration (a failover changes
    nothing a client sees)."""
    vip = deployment.vars.get("lb_vip")
    if not vip:
        pytest.skip("no lb_vip: one balancer, no floating address")
    import requests

    holders, sites = [], set()
    for node in nodes_of(deployment, "lb"):
        host = remote(node)
        service = host.service("keepalived")
        assert service.is_running and service.is_enabled, f"{node.name}: keepalived is not running and enabled"
        addresses = host.run("ip -o -4 addr show").stdout.split()
        if vip in (a.split("/")[0] for a in addresses):
            holders.append(node.name)
        sites.add(host.run("sha256sum /etc/nginx/sites-available/session-kit.conf").stdout.split()[0])
        own = deployment.lb_url.replace(vip, node.ip, 1)
        answer = requests.get(own + "/healthz", timeout=5, verify=deployment.tls_verify)
        assert answer.status_code == 200, f"{node.name}: its own address answers /healthz with {answer.status_code}"
    assert len(holders) == 1, f"the floating address {vip} is held by {holders or 'no balancer'}, not exactly one"
    assert len(sites) == 1, "the balancers' session-kit sites differ"
    answer = requests.get(deployment.lb_url + "/healthz", timeout=5, verify=deployment.tls_verify)
    assert answer.status_code == 200, f"{vip} answers /healthz with {answer.status_code}"
    count = len(nodes_of(deployment, "lb"))
    proven(f"the floating address {vip} held by {holders[0]} alone; {count} balancers serve alike")


def test_app_nodes(deployment, remote):
    port = deployment.vars["app_port"]
    for node in nodes_of(deployment, "app"):
        host = remote(node)
        service = host.service("session-kit-app")
        assert service.is_running and service.is_enabled, f"{node.name}: session-kit-app is not running and enabled"
        assert_listening_privately(host, node, port)
        env = host.file("/etc/session-kit/app.env")
        assert env.mode == 0o640 and env.user == "root", f"{node.name}: app.env must be 0640 root (it holds secrets)"
        assert f"SESSION_STRATEGY={deployment.strategy.name}" in env.content_string, (
            f"{node.name}: app.env does not select {deployment.strategy.name}"
        )
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
        assert scores[node.name] <= SECURITY_GOAL, (
            f"{node.name}: session-kit-app's exposure {scores[node.name]} is above {SECURITY_GOAL}"
        )
    proven(f"the app runs sandboxed: systemd-analyze security scores {max(scores.values())} (goal <= {SECURITY_GOAL})")


@pytest.mark.parametrize("role", ["redis", "db"])
def test_stores(deployment, remote, role):
    if role not in deployment.strategy.needs:
        pytest.skip(f"{deployment.strategy.name} does not use {role}")
    if role == "redis":
        # redis_mode=cluster: each instance (redis-server@PORT); else one redis-server per redis host
        servers = [
            (node, f"redis-server@{port}", port, f"/etc/redis/redis-{port}.conf")
            for node, port in deployment.cluster_instances()
        ] or [
            (node, "redis-server", deployment.vars["redis_port"], "/etc/redis/redis.conf")
            for node in nodes_of(deployment, role)
        ]
        for node, unit, port, path in servers:
            host = remote(node)
            assert host.package("redis-server").is_installed
            service = host.service(unit)
            assert service.is_running and service.is_enabled, f"{node.name}: {unit} not running and enabled"
            assert_listening_privately(host, node, port)
            refused = host.run(f"redis-cli -h {node.ip} -p {port} PING")
            assert "NOAUTH" in refused.stdout + refused.stderr, f"{node.name}: {unit} answers without a password"
            conf = host.file(path).content_string
            assert "protected-mode yes" in conf and "user default off" in conf, f"{node.name}: {path}"
            # what a crash of this Redis may lose (session_kit/defaults.py: redis_appendonly, redis_appendfsync)
            admin = deployment.secrets()["redis_admin_password"]
            persistence = redis_cli_as(host, node, port, "admin", admin, "INFO persistence")
            wanted = int(bool(deployment.vars["redis_appendonly"]))
            assert f"aof_enabled:{wanted}" in persistence, f"{node.name}: {unit}: {persistence}"
            fsync = redis_cli_as(host, node, port, "admin", admin, "CONFIG GET appendfsync").split()
            assert fsync[-1:] == [deployment.vars["redis_appendfsync"]], f"{node.name}: {unit}: appendfsync {fsync}"
        return
    for node in nodes_of(deployment, role):
        host = remote(node)
        version = platform_of(node.name, host.check_output(PLATFORM), deployment.vars["postgres_port"]).postgres
        assert host.package(f"postgresql-{version}").is_installed
        assert host.service(f"postgresql@{version}-main").is_running, f"{node.name}: postgresql is not running"
        assert host.service("postgresql").is_enabled, f"{node.name}: postgresql is not enabled"
        restart = host.check_output(f"systemctl show -p Restart --value postgresql@{version}-main")
        assert restart == "on-failure", f"{node.name}: a crashed PostgreSQL is not started again (Restart={restart})"
        assert_listening_privately(host, node, deployment.vars["postgres_port"])
        hba = host.file(f"/etc/postgresql/{version}/main/pg_hba.conf").content_string
        hosts = {line.split()[3] for line in hba.splitlines() if line.startswith("host")}
        assert hosts == {f"{app.ip}/32" for app in deployment.role("app")}, (
            f"{node.name}: pg_hba.conf must admit the app nodes and nothing else, admits {sorted(hosts)}"
        )


def redis_cli_as(host, node, port: int, user: str, password: str, command: str) -> str:
    """One redis-cli command on a redis host, logged in as an ACL user; its output and errors together."""
    result = host.run(
        f"REDISCLI_AUTH={shlex.quote(password)} redis-cli --no-auth-warning --user {user} "
        f"-h {node.ip} -p {port} {command}"
    )
    return result.stdout + result.stderr


def test_sentinel_watches_one_primary_and_its_replicas(deployment, remote, proven):
    """redis_mode=sentinel: a Sentinel runs on each of its hosts, all name the same primary and agree they can fail it
    over (SENTINEL CKQUORUM); the primary has every other redis host as a connected replica; Redis may not rewrite
    the kit's redis.conf; the replication user reads no session."""
    sentinels = deployment.sentinels()
    if not sentinels:
        pytest.skip("redis_mode is not sentinel (or the strategy uses no Redis)")
    port, name = deployment.vars["redis_sentinel_port"], deployment.vars["redis_sentinel_master"]
    named = {}
    for node in sentinels:
        host = remote(node)
        service = host.service("redis-sentinel")
        assert service.is_running and service.is_enabled, f"{node.name}: redis-sentinel not running and enabled"
        assert_listening_privately(host, node, port)
        named[node.name] = host.run(
            f"redis-cli -h {node.ip} -p {port} SENTINEL get-master-addr-by-name {name}"
        ).stdout.split()[:1]
        quorum = host.run(f"redis-cli -h {node.ip} -p {port} SENTINEL ckquorum {name}").stdout
        assert quorum.startswith("OK"), f"{node.name}: SENTINEL CKQUORUM: {quorum.strip()}"
    primaries = {tuple(ip) for ip in named.values()}
    assert len(primaries) == 1, f"the Sentinels name different primaries: {named}"
    primary_ip = primaries.pop()[0]
    redis_nodes = deployment.role("redis")
    primary = next((node for node in redis_nodes if node.ip == primary_ip), None)
    assert primary, f"the Sentinels' primary {primary_ip} is not a redis host"
    secrets = deployment.secrets()

    def as_user(node, user: str, password: str, command: str) -> str:
        return redis_cli_as(remote(node), node, deployment.vars["redis_port"], user, password, command)

    role = as_user(primary, "admin", secrets["redis_admin_password"], "ROLE").split()
    replicas = {line for line in role if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", line)}
    assert role[0] == "master" and replicas == {n.ip for n in redis_nodes if n is not primary}, (
        f"{primary.name}: ROLE says {role}, expected master with replicas "
        f"{[n.ip for n in redis_nodes if n is not primary]}"
    )
    for node in redis_nodes:
        rewrite = as_user(node, "admin", secrets["redis_admin_password"], "CONFIG REWRITE")
        assert "ERR" in rewrite, f"{node.name}: Redis could rewrite the kit's redis.conf: {rewrite.strip()}"
    refused = as_user(primary, "replication", secrets["redis_replication_password"], "HGETALL session:x")
    assert "NOPERM" in refused, f"{primary.name}: the replication user may read sessions: {refused.strip()}"
    proven(
        f"Sentinel: {len(sentinels)} Sentinels agree on the primary {primary.name} with "
        f"{len(replicas)} connected replica(s), and that they can fail it over"
    )


def test_redis_cluster_serves_every_slot_with_a_replica_per_primary(deployment, remote, proven):
    """redis_mode=cluster: every instance sees the whole cluster in state ok with all 16384 slots served; three
    primaries, each with a connected replica, on another host than its primary wherever the group has two hosts or
    more; Redis may not rewrite the kit's redis-PORT.conf."""
    from session_kit.strategies import CLUSTER_PRIMARIES, CLUSTER_REPLICAS

    instances = deployment.cluster_instances()
    if not instances:
        pytest.skip("redis_mode is not cluster (or the strategy uses no Redis)")
    password = deployment.secrets()["redis_admin_password"]

    def admin(node, port: int, command: str) -> str:
        return redis_cli_as(remote(node), node, port, "admin", password, command)

    for node, port in instances:
        info = dict(
            line.strip().split(":", 1) for line in admin(node, port, "CLUSTER INFO").splitlines() if ":" in line
        )
        assert (info.get("cluster_state"), info.get("cluster_slots_assigned"), info.get("cluster_known_nodes")) == (
            "ok",
            "16384",
            str(len(instances)),
        ), f"{node.name}:{port}: CLUSTER INFO {info}"
        assert "ERR" in admin(node, port, "CONFIG REWRITE"), f"{node.name}:{port}: Redis could rewrite its conf"
    first_node, first_port = instances[0]
    rows = [line.split() for line in admin(first_node, first_port, "CLUSTER NODES").splitlines() if line.strip()]
    primaries = {row[0]: row[1].split("@")[0] for row in rows if "master" in row[2] and "fail" not in row[2]}
    replicas = [(row[1].split("@")[0], row[3]) for row in rows if "slave" in row[2] and "fail" not in row[2]]
    assert len(primaries) == CLUSTER_PRIMARIES, f"primaries: {primaries}"
    for primary_id, address in primaries.items():
        own = [replica for replica, of in replicas if of == primary_id]
        assert len(own) >= CLUSTER_REPLICAS, f"primary {address} has replicas {own}"
        if len(deployment.role("redis")) > 1:
            host = address.rsplit(":", 1)[0]
            assert any(r.rsplit(":", 1)[0] != host for r in own), f"{address}'s replicas are all on its host: {own}"
    proven(
        f"Redis Cluster: {len(instances)} instances on {len(deployment.role('redis'))} host(s), every slot "
        f"served, {len(primaries)} primaries each with a replica on another host"
    )


def run_probe(deployment, host, node, code: str) -> dict:
    """Run a probe (Python that prints one JSON object last) on an app node, with the app's own venv."""
    import json

    result = host.run(f"{deployment.vars['app_dir']}/venv/bin/python - <<'EOF'\n{code}\nEOF")
    assert result.rc == 0, f"{node.name}: the probe failed: {result.stderr[-500:]}"
    return json.loads(result.stdout.strip().splitlines()[-1])


# Run on an app node with the app's own venv and DATABASE_URL: what PostgreSQL lets the app's role do, and refuses.
PG_PROBE = r"""
import json, re, psycopg
url = re.search(r"^DATABASE_URL=(.*)$", open("/etc/session-kit/app.env").read(), re.M).group(1).strip().strip("'\"")
out = {}
def attempt(name, dsn, sql=None):
    try:
        with psycopg.connect(dsn, connect_timeout=5) as conn:
            out[name] = conn.execute(sql).fetchone()[0] if sql else "connected"
    except psycopg.Error as error:
        out[name] = "refused: " + str(error).strip().splitlines()[0]
base = url.split("?")[0]
attempt("tls", url, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
attempt("plain", base + "?sslmode=disable")
attempt("wrong_password", re.sub(r"://([^:]+):[^@]*@", r"://\1:wrong@", url))
attempt("create_table", url, "CREATE TABLE kit_probe (x int)")
attempt("table_owner", url, "SELECT tableowner FROM pg_tables WHERE tablename = 'sessions'")
attempt("other_database", re.sub(r"/[^/?]+(\?|$)", r"/postgres\1", url, count=1))
print(json.dumps(out))
"""


def test_database_role_is_least_privilege(deployment, remote, proven):
    """From an app node: only TLS connections, a wrong password refused, the role owns the sessions table and can
    create nothing else, and may not connect to another database."""
    if "db" not in deployment.strategy.needs:
        pytest.skip(f"{deployment.strategy.name} does not use PostgreSQL")
    node = nodes_of(deployment, "app")[0]
    seen = run_probe(deployment, remote(node), node, PG_PROBE)
    user = deployment.vars["postgres_user"]
    assert seen["tls"] is True, f"{node.name}: the app's connection is not encrypted: {seen}"
    assert seen["plain"].startswith("refused"), f"{node.name}: an unencrypted connection is accepted: {seen}"
    assert seen["wrong_password"].startswith("refused"), f"{node.name}: a wrong password is accepted: {seen}"
    assert seen["create_table"].startswith("refused") and "permission denied" in seen["create_table"], seen
    assert seen["table_owner"] == user, f"the sessions table belongs to {seen['table_owner']}, not {user}"
    assert seen["other_database"].startswith("refused"), f"{user} may connect to another database: {seen}"
    proven(f"PostgreSQL: TLS only, wrong password refused, {user} owns the sessions table and can create nothing")


def test_a_burst_of_logins_from_one_client_is_limited(deployment, remote, proven):
    """From an app node (a client the balancer does not exempt): 60 logins at once, beyond the limit's burst, get
    429 with a JSON error; the balancer's security headers are on every answer."""
    tls = bool(deployment.vars.get("lb_tls"))
    listen = str(deployment.vars["nginx_listen_tls" if tls else "nginx_listen"])
    port = listen.rpartition(":")[2] or listen
    lb = nodes_of(deployment, "lb")[0]
    client = nodes_of(deployment, "app")[0]
    unlimited = deployment.vars.get("nginx_unlimited_sources") or []
    if any(client.ip == source.split("/")[0] for source in unlimited):
        pytest.skip(f"{client.name} is listed in nginx_unlimited_sources")
    url = f"{'https' if tls else 'http'}://{lb.ip}:{port}/login"
    # HTTPS: the balancer's certificate is not on the app node; curl trusts its public key alone (pinned)
    curl = f"curl --pinnedpubkey sha256//{spki_sha256(deployment.tls_certificate)} -k" if tls else "curl"
    result = remote(client).run(
        # 20 at a time: far above the limit's rate however slow each login is on a loaded machine
        f"seq 1 60 | xargs -P 20 -I{{}} {curl} -s -o /dev/null -w '%{{http_code}}\\n' -m 10 -X POST "
        f"-H 'Content-Type: application/json' -d '{{\"username\": \"burst\"}}' {url}; "
        f"{curl} -s -D - -X POST -H 'Content-Type: application/json' -d '{{\"username\": \"burst\"}}' {url}"
    )
    lines = result.stdout.splitlines()
    codes = lines[:60]
    limited = codes.count("429")
    assert limited > 0, f"60 logins from {client.name} at once were not limited: {sorted(set(codes))}"
    assert set(codes) <= {"200", "429"}, f"logins answered with {sorted(set(codes))}"
    last = "\n".join(lines[60:]).lower()
    assert "x-content-type-options: nosniff" in last and "x-frame-options: deny" in last, last[:500]
    assert ("strict-transport-security: max-age=31536000" in last) == tls, last[:500]
    if last.startswith("http/1.1 429"):
        assert '"too_many_requests"' in last, f"a limited login's answer is not the JSON error: {last[-300:]}"
    proven(
        f"logins limited per client: {limited} of 60 at once from {client.name} got 429 "
        f"(rate {deployment.vars['nginx_login_rate']}, burst {deployment.vars['nginx_login_burst']})"
    )


def _reaches(address: str, port: int, source: str | None = None) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(3)
        if source:
            sock.bind((source, 0))
        try:
            sock.connect((address, int(port)))
            return True
        except OSError:
            return False


def test_firewall_admits_only_the_hosts_that_need_each_port(deployment, remote, pytestconfig, proven):
    """Each host has the kit's nftables table; from an address no rule admits (--outside-source), Redis, PostgreSQL
    and the app's port are refused while the same ports answer an app node (and this machine, when it is in
    firewall_allow_from)."""
    if not deployment.vars.get("firewall"):
        pytest.skip("firewall = False in the inventory")
    ports = {
        "redis": deployment.vars["redis_port"],
        "db": deployment.vars["postgres_port"],
        "app": deployment.vars["app_port"],
    }
    for node in {n.name: n for role in ("lb", "app", "redis", "db") for n in deployment.role(role)}.values():
        table = remote(node).run("nft list table inet session_kit")
        assert table.rc == 0, f"{node.name}: the kit's firewall table is not loaded: {table.stderr[-300:]}"
    # the services the strategy runs (label, host, port), each with a host that must be admitted
    app = nodes_of(deployment, "app")
    services = [
        (role, node, ports[role])
        for role in ("redis", "db")
        if role in deployment.strategy.needs
        for node in deployment.role(role)
    ] + [("app", node, ports["app"]) for node in app]
    if deployment.cluster_instances():  # Redis Cluster: its instances instead of one Redis per host
        services = [s for s in services if s[0] != "redis"]
        services += [(f"redis cluster {port}", node, port) for node, port in deployment.cluster_instances()]
    services += [("sentinel", node, deployment.vars["redis_sentinel_port"]) for node in deployment.sentinels()]
    for label, node, port in services:
        admitted = remote(app[0] if node.name != app[0].name else app[-1]).run(
            f"timeout 5 bash -c 'exec 3<>/dev/tcp/{node.ip}/{port}'"
        )
        assert admitted.rc == 0, f"an app node cannot reach {label} on {node.name}:{port}"
    outside = pytestconfig.getoption("--outside-source")
    if not outside:
        pytest.skip("the refusals need --outside-source ADDRESS (an address of this machine no rule admits)")
    refused = [f"{label} on {node.name}" for label, node, port in services if not _reaches(node.ip, port, outside)]
    assert len(refused) == len(services), (
        f"from {outside}, only {refused} are refused of {[f'{label} on {n.name}' for label, n, _ in services]}"
    )
    proven(
        f"firewall: from {outside} (no rule admits it) {', '.join(sorted(set(s[0].split()[0] for s in services)))} "
        f"ports refused on every host; from the app nodes, admitted"
    )


# Run on an app node with the app's own venv and REDIS_URL: what Redis lets the app's ACL user do, and refuses.
REDIS_PROBE = r"""
import json, re, redis
url = re.search(r"^REDIS_URL=(.*)$", open("/etc/session-kit/app.env").read(), re.M).group(1).strip().strip("'\"")
out = {}
def attempt(name, client, call):
    try:
        out[name] = repr(call(client))
    except redis.RedisError as error:
        out[name] = "refused: " + type(error).__name__ + ": " + str(error).strip().splitlines()[0]
nodes = re.search(r"^REDIS_CLUSTER_NODES=(.*)$", open("/etc/session-kit/app.env").read(), re.M)
if nodes:  # Redis Cluster: the first instance (the ACL is checked before any slot redirect)
    url = re.sub(r"@[^/]*/", "@" + nodes.group(1).split(",")[0] + "/", url)
app = redis.Redis.from_url(url, socket_timeout=5)
attempt("ping", app, lambda c: c.ping())
for command in ("FLUSHALL", "KEYS", "CONFIG"):
    arguments = {"FLUSHALL": ["FLUSHALL"], "KEYS": ["KEYS", "*"], "CONFIG": ["CONFIG", "GET", "*"]}[command]
    attempt(command, app, lambda c, arguments=arguments: c.execute_command(*arguments))
attempt("other_key", app, lambda c: c.set("not-a-session", "x"))
wrong = redis.Redis.from_url(re.sub(r"://([^:]*):[^@]*@", r"://\1:wrong@", url), socket_timeout=5)
attempt("wrong_password", wrong, lambda c: c.ping())
nobody = redis.Redis.from_url(re.sub(r"://[^@]*@", "://", url), socket_timeout=5)
attempt("no_user", nobody, lambda c: c.ping())
print(json.dumps(out))
"""


def test_redis_app_user_is_least_privilege(deployment, remote, proven):
    """From an app node: the app's ACL user answers PING but may not FLUSHALL, KEYS, CONFIG or touch a key outside
    the session prefixes; a wrong password and no user at all are refused."""
    if "redis" not in deployment.strategy.needs:
        pytest.skip(f"{deployment.strategy.name} does not use Redis")
    node = nodes_of(deployment, "app")[0]
    seen = run_probe(deployment, remote(node), node, REDIS_PROBE)
    assert seen["ping"] == "True", f"the app's user cannot PING: {seen}"
    for name in ("FLUSHALL", "KEYS", "CONFIG", "other_key"):
        assert seen[name].startswith("refused: NoPermissionError"), f"the app's user may run {name}: {seen}"
    for name in ("wrong_password", "no_user"):
        assert seen[name].startswith("refused"), f"Redis accepts a login with {name}: {seen}"
    proven(
        f"Redis: the app's ACL user ({deployment.vars['redis_user']}) may not FLUSHALL, KEYS, CONFIG or touch "
        "other keys; a wrong password and no user are refused"
    )
