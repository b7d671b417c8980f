"""Every inventory variable, with its default, its type and what it means: the one place to look them up.

Set them in group data (inventories/group_data/*.py), per host, or on the command line (`--data key=value`; pyinfra
parses those values as bool, int, JSON, else string). Each component's deploy takes its own block as
`data_defaults`. Before any host is touched (session_kit/validate.py), every value is checked against its type
(session_kit/variables.py), a variable the kit does not know is an error (pyinfra's own connection settings and
`_` arguments excepted), and a variable marked `same` must hold one value on every host.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .strategies import LB_METHODS, ONE_WORKER, STRATEGIES
from .variables import (
    Address,
    Bool,
    Choice,
    ControllerFile,
    Duration,
    Int,
    Listen,
    Name,
    Networks,
    Path,
    Port,
    Rate,
    RedisSave,
    Size,
    Type,
    Workers,
)


class Var(NamedTuple):
    default: Any
    type: Type
    same: bool = False  # must hold the same value on every host of the inventory


KIT = {
    # Where sessions live: cookie | sticky | database | replication | redis | token (see session_kit/strategies.py).
    "session_strategy": Var("redis", Choice(*STRATEGIES), same=True),
    # How Nginx spreads requests: round_robin | ip_hash | hash_cookie. None: the strategy's default
    # (ip_hash for sticky, round_robin for the others). Replication may use hash_cookie (docs/strategies.md).
    "lb_method": Var(None, Choice(*LB_METHODS, optional=True), same=True),
    # replication: how a node answers a change. sync: only after every live peer acknowledged it (a client that
    # moves from node to node sees its own writes); async: at once, the peers follow a few milliseconds later.
    "replication_mode": Var("sync", Choice("sync", "async"), same=True),
    # The address the host's services bind to and its peers use: an IPv4 address, never 0.0.0.0.
    # Default: ssh_hostname (which must then be an address).
    "private_ip": Var(None, Address(optional=True)),
    # Where the controller keeps generated secrets (one git-ignored JSON file per inventory, mode 0600); relative
    # paths are under the kit's directory.
    "secrets_dir": Var("secrets", Path(), same=True),
}

NGINX = {
    # Address and port the load balancer listens on (the only public entry of the cluster): PORT or ADDRESS:PORT.
    # With lb_tls, every request there is answered with a 308 redirect to the same URL over HTTPS.
    "nginx_listen": Var("0.0.0.0:80", Listen()),
    # TLS at the load balancer: HTTPS on nginx_listen_tls (TLS 1.2 and 1.3, Strict-Transport-Security), the app's
    # SESSION cookie marked Secure. False: plain HTTP on nginx_listen only.
    "lb_tls": Var(True, Bool(), same=True),
    "nginx_listen_tls": Var("0.0.0.0:443", Listen()),
    # The balancer's certificate chain and its key, PEM files on the controller (relative paths are under the kit's
    # directory), both or neither. None: a self-signed pair made once per inventory next to its secrets
    # (secrets_dir/<inventory_name>-tls.crt and .key, the key mode 0600), naming the lb host's address(es).
    "lb_tls_certificate": Var(None, ControllerFile(optional=True), same=True),
    "lb_tls_key": Var(None, ControllerFile(optional=True), same=True),
    # Idle keepalive connections from Nginx to each app node.
    "nginx_keepalive": Var(32, Int(1, 10000)),
    # An app node that fails this many times within nginx_fail_timeout is skipped for nginx_fail_timeout
    # (0: never marked down). Durations in Nginx's syntax: 5s, 1m30s (500ms for the timeouts below).
    "nginx_max_fails": Var(1, Int(0, 100)),
    "nginx_fail_timeout": Var("5s", Duration(high=3600, seconds_only=True)),
    # Timeouts towards the app nodes (Nginx caps the connect timeout at 75s).
    "nginx_connect_timeout": Var("2s", Duration(high=75)),
    "nginx_read_timeout": Var("10s", Duration(high=3600)),
    # Logins (POST /login) per client address: a steady rate and a burst above it answered at once; beyond, 429.
    "nginx_login_rate": Var("10r/s", Rate()),
    "nginx_login_burst": Var(20, Int(0, 100000)),
    # Addresses or networks never limited (a load generator, a monitor): ["10.0.0.5", "10.0.1.0/24"].
    "nginx_unlimited_sources": Var([], Networks()),
    # The balancers' floating address (an IPv4 address on the lb hosts' network, not any host's own), the one
    # clients are given: held by one lb host at a time and moved by keepalived (VRRP over unicast, authenticated)
    # when that host or its Nginx dies; it does not move back when the old holder returns. Needed with two or more
    # lb hosts; None: no keepalived, clients use the lb host's own address.
    "lb_vip": Var(None, Address(optional=True), same=True),
    # VRRP's virtual router id for the lb_vip (1-255): unique among the VRRP routers on that network.
    "lb_vrrp_router_id": Var(51, Int(1, 255), same=True),
}

FIREWALL = {
    # A host firewall (nftables, deploys/firewall.py) on every host: Redis and PostgreSQL answer only the app nodes,
    # the app's port only the load balancers and app nodes; SSH and other ports are left alone. False: none deployed
    # (a table already loaded stays until `nft delete table inet session_kit`).
    "firewall": Var(True, Bool()),
    # IPv4 addresses or networks that reach every service port besides those (a monitor, the deploying machine).
    "firewall_allow_from": Var([], Networks(ipv4=True)),
}

REDIS = {
    "redis_port": Var(6379, Port(), same=True),
    # The ACL user the app logs in as (password: secrets, redis_password), limited to the session keys and the
    # commands the app sends; operators and the kit's drills log in as `admin` (redis_admin_password); with
    # redis_mode=sentinel, replicas and Sentinels log in as `replication` (redis_replication_password), limited to
    # what replication and failover take.
    "redis_user": Var("session-kit", Name(dash=True), same=True),
    # Memory cap (bytes, or 512mb, 1gb, ...; 0: none) and eviction: sessions must not be evicted silently, so the
    # default policy refuses writes when full.
    "redis_maxmemory": Var("256mb", Size()),
    "redis_maxmemory_policy": Var(
        "noeviction",
        Choice(
            "noeviction",
            "allkeys-lru",
            "allkeys-lfu",
            "allkeys-random",
            "volatile-lru",
            "volatile-lfu",
            "volatile-random",
            "volatile-ttl",
        ),
    ),
    # Keys Redis remembers for the app's client-side caching (tracking-table-max-keys): every session key an app node
    # read and kept a copy of, and every unknown one asked for. Beyond it Redis drops keys at random (the nodes lose
    # those copies, nothing else), so it bounds the table's memory (about 100-200 bytes a key) under a flood of made-up
    # session ids. 0: no limit.
    "redis_tracking_table_max_keys": Var(100000, Int(0, 100_000_000)),
    # Snapshots to disk, as pairs of "SECONDS CHANGES": "" disables. Alone (redis_appendonly False) they keep sessions
    # across a clean restart, not a crash: Redis comes back from its last snapshot, minutes old.
    "redis_save": Var("300 10 60 10000", RedisSave()),
    # The append-only file (AOF): every change written out before its answer is sent, so a crash of Redis's process
    # (OOM killer, segfault, SIGKILL) loses no answered write, and under Sentinel a primary restarted by systemd comes
    # back whole instead of wiping its replicas with an older snapshot. What a crash of the whole host (power loss)
    # can lose is redis_appendfsync's choice: everysec, the last second of writes (Redis' own default; the answer
    # does not wait for the disk); always, nothing (each write waits for fsync: slower, see docs/benchmarks.md); no,
    # what the OS had not flushed yet (about 30 s on Linux). docs/deploying.md: persistence.
    "redis_appendonly": Var(True, Bool()),
    "redis_appendfsync": Var("everysec", Choice("everysec", "always", "no")),
    # standalone: one Redis, the first host of the `redis` group (any others get a Redis that is not used).
    # sentinel: a primary (at first the group's first host) and replicas (the group's other hosts, two or more hosts
    # in all), watched by Redis Sentinel on every redis host and, up to three Sentinels, on the first app nodes
    # (session_kit/strategies.py: sentinel_hosts); when the primary fails, the Sentinels promote a replica and the app
    # follows it (it finds the primary through the Sentinels).
    # cluster: Redis Cluster, REDIS_CLUSTER_INSTANCES instances (three primaries, each with a replica) spread over the
    # group's hosts, several on a host when the group has fewer than six (session_kit/strategies.py:
    # cluster_layout), on ports from redis_cluster_port up; the app follows the slot map. One host is enough to run
    # it, three or more to survive losing one.
    "redis_mode": Var("standalone", Choice("standalone", "sentinel", "cluster"), same=True),
    "redis_sentinel_port": Var(26379, Port(), same=True),
    # The primary's name in Sentinel (the app's REDIS_SENTINEL_MASTER).
    "redis_sentinel_master": Var("sessions", Name(dash=True), same=True),
    # How long a primary must be unreachable before the Sentinels agree it is down and fail over (Redis' own default
    # is 30s). Shorter: a quicker failover, and more of them for a pause that was not a failure.
    "redis_sentinel_down_after": Var("5s", Duration(high=3600), same=True),
    # sentinel: the primary refuses writes unless this many replicas are connected, with a lag of at most
    # redis_min_replicas_max_lag seconds. 0 (the default, Redis' own): writes never wait for replicas, and a primary cut
    # off from the others keeps accepting writes that are lost when a replica is promoted in its place. 1 or more:
    # such a primary stops accepting writes after the lag (each is a 503 to the client), so at most those seconds of
    # writes can be lost, but losing the replicas stops all writes too. Replication itself stays asynchronous.
    "redis_min_replicas_to_write": Var(0, Int(0, 100), same=True),
    "redis_min_replicas_max_lag": Var(10, Int(1, 3600), same=True),
    # cluster: the first instance's port on each host (the next ones: +1, +2, ...); the cluster bus on port + 10000.
    "redis_cluster_port": Var(7000, Port(), same=True),
    # cluster: how long a primary must be unreachable before its replica takes over (cluster-node-timeout).
    "redis_cluster_node_timeout": Var("5s", Duration(high=3600), same=True),
}

POSTGRES = {
    "postgres_port": Var(5432, Port(), same=True),
    # The sessions database and the role the app logs in as (password: secrets, postgres_password).
    "postgres_database": Var("sessions", Name(), same=True),
    "postgres_user": Var("session_kit", Name(), same=True),
    "postgres_max_connections": Var(100, Int(10, 10000)),
}

APP = {
    "app_port": Var(8000, Port(), same=True),
    # Seconds of inactivity before a session expires (SESSION_TTL).
    "app_session_ttl": Var(1800, Int(1, 30 * 86400), same=True),
    # Mark the SESSION cookie Secure (True/False): set it when TLS terminates in front of the cluster.
    "app_cookie_secure": Var(False, Bool(), same=True),
    # Processes serving the app on each node (WORKERS, sample_app/serve.py): an integer from 1 to 64, or "auto": as
    # many as the node has cores (`nproc` on the host, at deploy time). sticky and replication keep sessions in one
    # process's memory: 1 or auto, which is 1 for them. A change restarts the nodes, rolling.
    "app_workers": Var("auto", Workers()),
    # PostgreSQL connections per app process: a node holds app_workers times as many.
    "app_database_pool_size": Var(4, Int(1, 100)),
    # redis, token: sessions each app process keeps a copy of, kept fresh by Redis (client-side caching; reads still
    # wait for one round trip, so every node reads every write); 0: off. Not used with redis_mode=cluster.
    "app_redis_cache_sessions": Var(10000, Int(0, 1_000_000)),
    # debug | info | warning | error
    "app_log_level": Var("info", Choice("debug", "info", "warning", "error")),
    # How many app nodes a deploy restarts at a time (the others keep serving).
    "app_rolling_batch": Var(1, Int(1, 1000), same=True),
    # Where the app lives on the hosts, and the system user it runs as.
    "app_dir": Var("/opt/session-kit", Path(absolute=True)),
    "app_user": Var("session-kit", Name(dash=True)),
}

VARIABLES: dict[str, Var] = {**KIT, **NGINX, **FIREWALL, **REDIS, **POSTGRES, **APP}


def app_workers(value: int | str, strategy: str, cores: int | None) -> int:
    """The app's WORKERS on a node: app_workers as set, or for "auto" the node's cores (1 for the strategies whose
    sessions live in one process, and when the cores are unknown), at most 64 (what the app accepts)."""
    if value != "auto":
        return int(value)
    if strategy in ONE_WORKER or not cores:
        return 1
    return max(1, min(64, cores))


def _defaults(table: dict[str, Var]) -> dict[str, Any]:
    return {name: var.default for name, var in table.items()}


KIT_DEFAULTS = _defaults(KIT)
NGINX_DEFAULTS = _defaults(NGINX)
FIREWALL_DEFAULTS = _defaults(FIREWALL)
REDIS_DEFAULTS = _defaults(REDIS)
POSTGRES_DEFAULTS = _defaults(POSTGRES)
APP_DEFAULTS = _defaults(APP)
ALL_DEFAULTS = _defaults(VARIABLES)
