"""Redis for the redis and token strategies: bound to the private address, protected mode on, no login without an
ACL user: the app's user limited to the session keys and the commands the app sends, and an admin user.

With redis_mode=sentinel: the first redis host starts as the primary, the others as its replicas, and Redis Sentinel
watches them (install_sentinel) and promotes a replica when the primary fails. Who is primary is then run-time state,
Sentinel's, not the kit's:
- redis.conf stays the kit's file, the same on every redis host, and Redis may not rewrite it (a systemd drop-in
  makes it read-only to redis-server; the CONFIG REWRITE that Sentinel sends with each role change fails, the change
  itself holds in memory, and an instance that restarts as a primary is made a replica again by the Sentinels). So a
  failover changes no file, and an apply after one reports zero changes.
- A replica is made one at run time (REPLICAOF), only when it is not one yet, of the primary the Sentinels name.
- sentinel.conf is written once; from then on Sentinel rewrites it (its view of the replicas, the other Sentinels,
  the epochs) and the kit leaves it alone.

With redis_mode=cluster: Redis Cluster's instances (install_cluster_instances), the cluster created once; its state
is Redis' own nodes-PORT.conf, and the instances' files are the kit's, read-only to them, as above.

A changed redis.conf (or an instance's) restarts that Redis at once, on every host in the same step: not rolling,
so with Sentinel or Cluster a primary restarts too (a failover or a short outage). What another redis_mode left
running is stopped first, on every host (retire_redis).
"""

from __future__ import annotations

import hashlib
import shlex

from pyinfra import host
from pyinfra.api import MaskString, StringCommand
from pyinfra.api.exceptions import PyinfraError
from pyinfra.facts.server import Command
from pyinfra.operations import files, server, systemd
from pyinfra.operations.util import any_changed

from session_kit.defaults import REDIS_DEFAULTS
from session_kit.strategies import CLUSTER_REPLICAS, sentinel_quorum
from session_kit.variables import Duration

from .cluster import Cluster, bounded_deploy, install_packages, private_ip, render

CONF = "/etc/redis/redis.conf"
READ_ONLY = "/etc/systemd/system/redis-server.service.d/session-kit.conf"
INSTANCE_READ_ONLY = "/etc/systemd/system/redis-server@.service.d/session-kit.conf"
SENTINEL_CONF = "/etc/redis/sentinel.conf"
# Where a retired Redis Cluster instance's state and data go (retire_redis), one directory per instance and time.
RETIRED = "/var/lib/redis/retired"
# sentinel.conf's first line: the kit wrote it (Sentinel keeps comments when it rewrites the file). redis.conf's too.
SENTINEL_MARK = REDIS_MARK = "# Managed by session-kit"


@bounded_deploy("Redis session store", data_defaults=REDIS_DEFAULTS)
def install_redis(cluster: Cluster) -> None:
    values = cluster.values(REDIS_DEFAULTS)
    mode = values["redis_mode"]
    me = private_ip(host)
    install_packages("Install redis-server", ["redis-server"])
    read_only = render(
        READ_ONLY,
        name="redis-server may not rewrite redis.conf",
        mode="644",
        create_remote_dir=True,
        conf=CONF,
    )
    instance_read_only = render(
        INSTANCE_READ_ONLY,
        src=READ_ONLY,
        name="Nor its instances (redis-server@PORT) theirs",
        mode="644",
        create_remote_dir=True,
        conf=instance_conf("%i"),
    )
    systemd.daemon_reload(name="Reload systemd units (redis-server)", _if=any_changed(read_only, instance_read_only))
    settings = {
        **values,
        **acl(cluster.secrets),
        "private_ip": me,
        "sentinel": mode == "sentinel",
        "replication": mode != "standalone",
        "cluster": False,
        "node_timeout_ms": milliseconds(values["redis_cluster_node_timeout"]),
    }
    conf = render(
        CONF,
        name="Render redis.conf",
        owner="root:redis",
        mode="640",
        port=values["redis_port"],
        pidfile="/run/redis/redis-server.pid",
        dbfilename="dump.rdb",
        appenddirname="appendonlydir",
        **settings,
    )
    # Redis cannot reload its configuration: a changed file means a restart. With redis_mode=cluster the instances
    # below serve, and this one is stopped.
    standalone_or_sentinel = mode != "cluster"
    if standalone_or_sentinel:
        append_only_while_running(cluster, me, values["redis_port"], conf, "appendonlydir")
    systemd.service(
        name="Restart redis",
        service="redis-server",
        restarted=True,
        _if=lambda: standalone_or_sentinel and any_changed(conf, read_only)(),
    )
    systemd.service(
        name="Keep redis running and enabled (stopped with redis_mode=cluster)",
        service="redis-server",
        running=standalone_or_sentinel,
        enabled=standalone_or_sentinel,
    )
    # ROLE: "master" and its replicas, or "slave", its primary's address and port, ...
    answer = (
        (host.get_fact(Command, redis_cli(cluster, me, "ROLE", "|| true")) or "").split() if mode != "cluster" else []
    )  # cluster: this Redis is stopped, and no step below reads its role
    role = answer[0] if answer else ""
    if mode == "sentinel":
        primary = current_primary(cluster)
        follows = role == "slave" and answer[1:3] == [primary, str(values["redis_port"])]
        # No Sentinel answering (the first apply, or all of them down): a primary that has replicas is left alone
        leading = primary is None and role == "master" and len(answer) > 2
        primary = primary or cluster.first_ip("redis")
        server.shell(
            name=f"Replicate the primary ({primary})",
            commands=[redis_cli(cluster, me, f"REPLICAOF {primary} {values['redis_port']}")],
            _if=lambda: me != primary and not follows and not leading,
        )
    else:
        # Left a replica by redis_mode=sentinel (whose Sentinels retire_redis stopped first): the app's Redis is a
        # primary again, with the sessions it replicated.
        server.shell(
            name="Be the primary (REPLICAOF NO ONE)",
            commands=[redis_cli(cluster, me, "REPLICAOF NO ONE")],
            _if=lambda: mode == "standalone" and me == cluster.first_ip("redis") and role == "slave",
        )
    install_cluster_instances(cluster, settings, instance_read_only)


def install_cluster_instances(cluster: Cluster, settings: dict, read_only) -> None:
    """redis_mode=cluster: this host's instances (redis-server@PORT, each with its own redis-PORT.conf, snapshot and
    nodes file), and on the first redis host, once, the cluster made of them all (redis-cli --cluster create:
    three primaries, each with a replica on another host where there is one). Other modes: the kit's instances
    left running from cluster mode are stopped by retire_redis."""
    me = private_ip(host)
    instances = cluster.cluster_instances()
    ports = [node["port"] for node in instances if node["ip"] == me]
    for port in ports:
        conf = render(
            instance_conf(port),
            src=CONF,
            name=f"Render redis-{port}.conf (Redis Cluster)",
            owner="root:redis",
            mode="640",
            **{**settings, "cluster": True, "sentinel": False},
            port=port,
            pidfile=f"/run/redis-{port}/redis-server.pid",
            dbfilename=f"dump-{port}.rdb",
            appenddirname=f"appendonlydir-{port}",
        )
        append_only_while_running(cluster, me, port, conf, f"appendonlydir-{port}", unit=f"redis-server@{port}")
        systemd.service(
            name=f"Restart redis-server@{port}",
            service=f"redis-server@{port}",
            restarted=True,
            _if=any_changed(conf, read_only),
        )
        systemd.service(
            name=f"Keep redis-server@{port} running and enabled",
            service=f"redis-server@{port}",
            running=True,
            enabled=True,
        )
    if not instances or me != instances[0]["ip"]:
        return
    first = instances[0]["port"]
    # The first instance's nodes file (Redis' own, kept while it is stopped): more than itself, the cluster exists.
    known = (
        host.get_fact(
            Command,
            f"grep -v '^vars' /var/lib/redis/nodes-{first}.conf 2>/dev/null | cut -d' ' -f2 | cut -d@ -f1 || true",
        )
        or ""
    ).split()
    planned = sorted(f"{node['ip']}:{node['port']}" for node in instances)
    if len(known) > 1 and sorted(known) != planned:
        raise PyinfraError(
            f"{host.name}: the Redis Cluster here has the nodes {' '.join(sorted(known))}, the "
            f"inventory plans {' '.join(planned)}: the kit does not move a running cluster to other "
            "hosts (add or remove nodes with redis-cli --cluster, or start over)"
        )
    everyone = " ".join(f"{node['ip']}:{node['port']}" for node in instances)
    server.shell(
        name="Create the Redis Cluster (once)",
        commands=[
            redis_cli(
                cluster, None, f"--cluster create {everyone} --cluster-replicas {CLUSTER_REPLICAS} --cluster-yes"
            ),
            # every instance must see the whole cluster before the app nodes start on it
            StringCommand(
                "for i in $(seq 1 300); do",
                redis_cli(cluster, me, "CLUSTER INFO", "| grep -q cluster_state:ok", port=first),
                "&& exit 0; sleep 0.2; done; echo 'the cluster did not reach cluster_state:ok' >&2; exit 1",
            ),
        ],
        _if=lambda: len(known) < 2,
    )


@bounded_deploy("Redis Sentinel", data_defaults=REDIS_DEFAULTS)
def install_sentinel(cluster: Cluster) -> None:
    values = cluster.values(REDIS_DEFAULTS)
    install_packages("Install redis-sentinel", ["redis-sentinel"])
    written = _sentinel_conf_is_ours()
    sentinels = cluster.sentinel_nodes()
    down_after_ms = milliseconds(values["redis_sentinel_down_after"])
    conf = render(
        SENTINEL_CONF,
        name="Render sentinel.conf (once: then it is Sentinel's)",
        owner="redis:redis",
        mode="640",
        mark=SENTINEL_MARK,
        private_ip=private_ip(host),
        primary=current_primary(cluster) or cluster.first_ip("redis"),
        quorum=sentinel_quorum(len(sentinels)),
        down_after_ms=down_after_ms,
        replication_password=redis_quote(cluster.secrets["redis_replication_password"]),
        **values,
        _if=lambda: not written,
    )
    # Written once, so a changed redis_sentinel_down_after reaches a running Sentinel as SENTINEL SET (which Sentinel
    # then writes into its file itself).
    sentinel_cli = f"redis-cli -h {private_ip(host)} -p {values['redis_sentinel_port']} SENTINEL"
    master = values["redis_sentinel_master"]
    running = host.get_fact(Command, f"{sentinel_cli} master {master} 2>/dev/null || true") or ""
    fields = running.splitlines()  # one field a line, empty ones too (runid right after a failover)
    current = dict(zip(fields[::2], fields[1::2])).get("down-after-milliseconds")
    server.shell(
        name="Set the Sentinel's down-after-milliseconds",
        commands=[f"{sentinel_cli} SET {master} down-after-milliseconds {down_after_ms}"],
        _if=lambda: written and current is not None and current != str(down_after_ms),
    )
    systemd.service(name="Restart redis-sentinel", service="redis-sentinel", restarted=True, _if=conf.did_change)
    systemd.service(
        name="Keep redis-sentinel running and enabled", service="redis-sentinel", running=True, enabled=True
    )


@bounded_deploy("Redis of another redis_mode retired", data_defaults=REDIS_DEFAULTS)
def retire_redis(cluster: Cluster) -> None:
    """On every host, before Redis is deployed: what another redis_mode (or strategy) left running here and this one
    does not want, so that it no longer moves a primary or answers for the sessions.
    - A Sentinel the kit set up (sentinel.conf carries its mark) where none should run: stopped and disabled, and
      its file removed, so that a later redis_mode=sentinel starts from the primary the kit names, not from this
      Sentinel's memory of the cluster.
    - Redis Cluster instances (redis-server@PORT) this host should not run: stopped and disabled, their cluster
      state and data moved to RETIRED (a later cluster starts afresh).
    - The kit's Redis on a host that has left the redis group: stopped and disabled.
    Packages and the kit's files stay."""
    ours = not cluster.runs_sentinel() and _sentinel_conf_is_ours()
    stop_for_good("Stop the Sentinel left from redis_mode=sentinel", "redis-sentinel", _if=lambda: ours)
    files.file(name="Remove its sentinel.conf", path=SENTINEL_CONF, present=False, _if=lambda: ours)
    # A Redis of the kit's (its redis.conf carries the mark) on a host no longer in the redis group: its firewall rule
    # is gone with the role, so it stops instead of answering anyone.
    outside = not cluster.has_role("redis") and (
        host.get_fact(Command, f"head -n 1 {CONF} 2>/dev/null || true") or ""
    ).startswith(REDIS_MARK)
    stop_for_good("Stop the Redis of a host no longer in the redis group", "redis-server", _if=lambda: outside)
    wanted = {node["port"] for node in cluster.cluster_instances() if node["name"] == host.name}
    active = (
        host.get_fact(
            Command,
            "systemctl list-units --plain --no-legend --state=active "
            "'redis-server@*.service' 2>/dev/null | cut -d' ' -f1 || true",
        )
        or ""
    ).split()
    for unit in active:
        port = unit.removeprefix("redis-server@").removesuffix(".service")
        if port.isdigit() and int(port) not in wanted:
            stop_for_good(f"Stop {unit} (left from redis_mode=cluster)", unit)
            # Leaving the mode starts from an empty store (docs/deploying.md): the instance's cluster identity and
            # data are set aside (kept, not deleted), so that a later cluster, on these hosts or others, is created
            # afresh instead of being refused as another layout's.
            aside = f"{RETIRED}/{port}-$(date +%Y%m%dT%H%M%S)"
            server.shell(
                name=f"Set aside {unit}'s cluster state and data in {RETIRED}",
                commands=[
                    f"mkdir -p {aside} && cd /var/lib/redis && "
                    f"for f in nodes-{port}.conf dump-{port}.rdb appendonlydir-{port}; do "
                    f'if [ -e "$f" ]; then mv "$f" {aside}/; fi; done'
                ],
            )


def stop_for_good(name: str, service: str, **arguments):
    """A service stopped and disabled (pyinfra's global arguments, _if for one, pass through)."""
    return systemd.service(name=name, service=service, running=False, enabled=False, **arguments)


def _sentinel_conf_is_ours() -> bool:
    return (host.get_fact(Command, f"head -n 1 {SENTINEL_CONF} 2>/dev/null || true") or "").startswith(SENTINEL_MARK)


def current_primary(cluster: Cluster) -> str | None:
    """The primary's address as most of the Sentinels that answer name it (asked from this host; a redis host of the
    list), or None when none answers (the first apply)."""
    port, name = cluster.vars["redis_sentinel_port"], cluster.vars["redis_sentinel_master"]
    asked = " ".join(node["ip"] for node in cluster.sentinel_nodes())
    said = (
        host.get_fact(
            Command,
            f"for ip in {asked}; do redis-cli -h $ip -p {port} SENTINEL get-master-addr-by-name "
            f"{name} 2>/dev/null | head -n 1; done; true",
        )
        or ""
    ).split()
    redis_ips = {node["ip"] for node in cluster.nodes("redis")}
    named = [ip for ip in said if ip in redis_ips]
    return max(set(named), key=named.count) if named else None


def redis_cli(
    cluster: Cluster, address: str | None, command: str, tail: str = "", port: int | None = None
) -> StringCommand:
    """redis-cli as admin against one Redis (address None: no -h/-p, for --cluster), the password masked in pyinfra's
    output."""
    target = f" -h {address} -p {port or cluster.vars['redis_port']}" if address else ""
    return StringCommand(
        MaskString("REDISCLI_AUTH=" + shlex.quote(cluster.secrets["redis_admin_password"])),
        f"redis-cli --no-auth-warning --user admin{target}",
        command,
        *([tail] if tail else []),
    )


def append_only_while_running(cluster: Cluster, me: str, port: int, conf, directory: str, unit: str = "") -> None:
    """A Redis that runs without its append-only file and restarts into one would come back empty: Redis 7.0 starts
    a new, empty file and ignores its snapshot (checked with Debian 12's 7.0.15). So, before that restart, the file
    is turned on while Redis runs (CONFIG SET appendonly yes: everything in memory is written to it, then every
    change), and the restart reads it back. A Cluster instance shares /var/lib/redis with its neighbours and wrote
    to the shared default directory: once it is stopped (`unit`), its files move to its own (`directory`)."""
    if not cluster.vars["redis_appendonly"]:
        return
    running = host.get_fact(Command, redis_cli(cluster, me, "INFO persistence", "2>/dev/null || true", port=port))
    without = "aof_enabled:0" in (running or "")
    wait = StringCommand(  # one INFO a round: neither a rewrite in progress nor one scheduled
        "for i in $(seq 1 600); do",
        redis_cli(cluster, me, "INFO persistence", port=port),
        "| grep -cE '^aof_rewrite_(in_progress|scheduled):0' | grep -qx 2 && exit 0; sleep 0.1; done;",
        "echo 'Redis did not finish writing its append-only file in 60 s' >&2; exit 1",
    )
    commands = [redis_cli(cluster, me, "CONFIG SET appendonly yes", port=port), wait]
    if unit:
        commands += [
            f"systemctl stop {unit}",
            f"rm -rf /var/lib/redis/{directory} && mv /var/lib/redis/appendonlydir /var/lib/redis/{directory}",
        ]
    server.shell(
        name=f"Write the append-only file while Redis runs ({unit or 'redis-server'}: a restart would start empty)",
        commands=commands,
        _if=lambda: without and conf.did_change(),
    )


def instance_conf(port) -> str:
    """Where Debian's redis-server@PORT unit reads its configuration."""
    return f"/etc/redis/redis-{port}.conf"


def milliseconds(duration: str) -> int:
    return int(Duration(high=3600).seconds(duration) * 1000)


def redis_quote(value: str) -> str:
    """A string as redis.conf and sentinel.conf read it: in double quotes, \\ and " escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def acl(secrets: dict[str, str]) -> dict:
    """redis.conf's ACL values: the passwords' SHA-256 digests (what `user ... #DIGEST` takes), what the app's
    user may touch (from the app itself), and the replication user's password, which a replica sends."""
    from sample_app.stores.redis import ACL_COMMANDS, KEY_PATTERNS

    def digest(secret: str) -> str:
        return hashlib.sha256(secret.encode()).hexdigest()

    return {
        "app_digest": digest(secrets["redis_password"]),
        "admin_digest": digest(secrets["redis_admin_password"]),
        "replication_digest": digest(secrets["redis_replication_password"]),
        "replication_password": redis_quote(secrets["redis_replication_password"]),
        "key_patterns": KEY_PATTERNS,
        "commands": ACL_COMMANDS,
    }
