"""The strategy table: for each session strategy, the groups it needs, its default load-balancing method and the
app settings it takes. Inventory validation, the deploys, the templates and the verification all read this."""

from __future__ import annotations

import dataclasses
import re
from urllib.parse import quote

# hash_cookie: cookie routing (the name is kept from when Nginx hashed the cookie). The node that creates a session
# marks its SESSION cookie with its route (SESSION_ROUTE), and Nginx sends a marked request to that node, or to
# another only while it is down (templates/etc/nginx/sites-available/session-kit.conf.j2).
LB_METHODS = ("round_robin", "ip_hash", "hash_cookie")


REDIS_SECRETS = ("redis_password", "redis_admin_password", "redis_replication_password")


@dataclasses.dataclass(frozen=True)
class Strategy:
    name: str
    needs: tuple[str, ...]  # inventory groups that must hold at least one host
    lb_method: str  # default Nginx balancing
    shared: bool  # every app node sees every session (False: pinned to one node)
    bearer: bool = False  # the client carries an Authorization token, not a cookie
    secrets: tuple[str, ...] = ()  # the generated secrets its app settings use
    one_process: bool = False  # sessions in one process's memory: one app worker per node (the app refuses more)


STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy("cookie", ("lb", "app"), "round_robin", shared=True, secrets=("cookie_secret_key",)),
        Strategy("sticky", ("lb", "app"), "ip_hash", shared=False, one_process=True),
        Strategy("database", ("lb", "app", "db"), "round_robin", shared=True, secrets=("postgres_password",)),
        Strategy(
            "replication", ("lb", "app"), "round_robin", shared=True, secrets=("replication_key",), one_process=True
        ),
        Strategy("redis", ("lb", "app", "redis"), "round_robin", shared=True, secrets=REDIS_SECRETS),
        Strategy("token", ("lb", "app", "redis"), "round_robin", shared=True, bearer=True, secrets=REDIS_SECRETS),
    )
}


def redis_mode(data, strategy: Strategy) -> str:
    """The redis_mode in effect: the inventory's for a strategy that uses Redis, "standalone" (nothing extra to run)
    for one that does not."""
    return (data.get("redis_mode") or "standalone") if "redis" in strategy.needs else "standalone"


SENTINELS = 3  # at least this many Sentinels (a majority of them must agree that the primary is down)


def sentinel_hosts(redis: list, app: list) -> list:
    """With redis_mode=sentinel, where Sentinels run: on every redis host, and on the first app nodes until there are
    SENTINELS of them (so that one lost host leaves a majority)."""
    extra = [node for node in app if node not in redis]
    return list(redis) + extra[: max(0, SENTINELS - len(redis))]


CLUSTER_PRIMARIES, CLUSTER_REPLICAS = 3, 1  # Redis Cluster: three primaries, each with one replica


def cluster_layout(redis: list, first_port: int) -> list[tuple[object, int]]:
    """With redis_mode=cluster, the (host, port) of each Redis Cluster instance: spread over the redis hosts in turn
    (instance i on host i mod N), so that a host holds as few as it can and, with three hosts or more, redis-cli
    can put each replica on another host than its primary."""
    count = CLUSTER_PRIMARIES * (1 + CLUSTER_REPLICAS)
    return [(redis[i % len(redis)], first_port + i // len(redis)) for i in range(count)]


def sentinel_quorum(count: int) -> int:
    """How many Sentinels must agree that the primary is down: a majority."""
    return count // 2 + 1


def lb_method(data) -> str:
    return data.get("lb_method") or STRATEGIES[data.get("session_strategy")].lb_method


def route_of(node: str) -> str:
    """A node's route in cookies and in Nginx: its name, with anything but A-Z a-z 0-9 _ - made a "-"."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", node)[:64]


def app_environment(
    strategy: Strategy,
    data,
    secrets: dict[str, str],
    node: str,
    private_ip: str,
    peers: list[str],
    redis_ip: str | None,
    db_ip: str | None,
    sentinels: list[str] = (),
    cluster_nodes: list[tuple[str, int]] = (),
) -> dict[str, str]:
    """The sample app's environment (its settings, see sample_app/settings.py) on one app node."""
    env = {
        "SESSION_STRATEGY": strategy.name,
        "NODE_NAME": node,
        "APP_HOST": private_ip,
        "APP_PORT": str(data.get("app_port")),
        "SESSION_TTL": str(data.get("app_session_ttl")),
        # Behind the balancer's TLS (lb_tls) the cookie is Secure: a browser never sends it over plain HTTP.
        "COOKIE_SECURE": "true" if data.get("app_cookie_secure") or data.get("lb_tls") else "false",
        "LOG_LEVEL": data.get("app_log_level"),
    }
    if (data.get("lb_method") or strategy.lb_method) == "hash_cookie":
        env["SESSION_ROUTE"] = route_of(node)
    if strategy.name == "cookie":
        env["SECRET_KEYS"] = secrets["cookie_secret_key"]
    if strategy.name in ("redis", "token"):
        password = quote(secrets["redis_password"], safe="")  # percent-encoded: any character round-trips
        user = quote(str(data.get("redis_user")), safe="")
        env["REDIS_URL"] = f"redis://{user}:{password}@{redis_ip}:{data.get('redis_port')}/0"
        env["REDIS_CACHE_SESSIONS"] = str(data.get("app_redis_cache_sessions"))
        if data.get("redis_mode") == "cluster":  # the slot map comes from these (REDIS_URL: user, password)
            env["REDIS_CLUSTER_NODES"] = ",".join(f"{ip}:{port}" for ip, port in cluster_nodes)
        if data.get("redis_mode") == "sentinel":  # the primary comes from the Sentinels (REDIS_URL: user, password)
            env["REDIS_SENTINELS"] = ",".join(f"{ip}:{data.get('redis_sentinel_port')}" for ip in sentinels)
            env["REDIS_SENTINEL_MASTER"] = str(data.get("redis_sentinel_master"))
    if strategy.name == "database":
        password = quote(secrets["postgres_password"], safe="")
        env["DATABASE_URL"] = (
            f"postgresql://{data.get('postgres_user')}:{password}@{db_ip}:"
            f"{data.get('postgres_port')}/{data.get('postgres_database')}?sslmode=require"
        )
        env["DATABASE_POOL_SIZE"] = str(data.get("app_database_pool_size"))
    if strategy.name == "replication":
        env["PEERS"] = ",".join(f"http://{ip}:{data.get('app_port')}" for ip in peers)
        env["REPLICATION_KEY"] = secrets["replication_key"]
        env["REPLICATION_MODE"] = data.get("replication_mode", "sync")
    return env


# The strategies whose sessions live in one process's memory: one worker per node.
ONE_WORKER = tuple(name for name, s in STRATEGIES.items() if s.one_process)
