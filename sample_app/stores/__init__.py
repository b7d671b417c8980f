"""The strategy table: for each SESSION_STRATEGY, how its store is built and how the client carries the handle.

A new strategy is one new module beside this one and one new row here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from ..settings import Settings
from .base import Limits, SessionStore


def _cookie(settings: Settings, limits: Limits) -> SessionStore:
    from .signed_cookie import SignedCookieStore

    return SignedCookieStore(limits, settings.secret_keys)


def _sticky(settings: Settings, limits: Limits) -> SessionStore:
    from .memory import MemoryStore

    return MemoryStore(limits)


def _database(settings: Settings, limits: Limits) -> SessionStore:
    from .postgres import PostgresStore

    return PostgresStore(limits, settings.database_url, settings.database_pool_size, poll=_poll(settings))


def _replication(settings: Settings, limits: Limits) -> SessionStore:
    from .replicated import ReplicatedStore

    return ReplicatedStore(limits, settings.node_name, settings.peers, settings.replication_key)


def _poll(settings: Settings) -> float:
    """Seconds the event loop polls while a batch is out (batching.py)."""
    return settings.store_poll_us / 1_000_000


def _lean_redis(settings: Settings):
    """Redis Cluster when REDIS_CLUSTER_NODES is set (REDIS_URL: its user and password), else one Redis, found
    through Sentinel when REDIS_SENTINELS is set."""
    from .resp import LeanRedis
    from .resp_cluster import ClusterRedis

    if settings.redis_cluster_nodes:
        return ClusterRedis(settings.redis_url, settings.redis_cluster_nodes)
    return LeanRedis(settings.redis_url, settings.redis_sentinels, settings.redis_sentinel_master)


def _redis_connections(settings: Settings):
    """The store's connection (_lean_redis), and the one its reads go over, answered from the node's copies
    (client_cache.py), which connects where the store's is; None on Redis Cluster or with REDIS_CACHE_SESSIONS=0."""
    from .client_cache import ClientCache
    from .resp import LeanRedis

    redis = _lean_redis(settings)
    if settings.redis_cluster_nodes or not settings.redis_cache_sessions:
        return redis, None
    return redis, LeanRedis(settings.redis_url, tracker=ClientCache(settings.redis_cache_sessions), follows=redis)


def _redis(settings: Settings, limits: Limits) -> SessionStore:
    from .redis import RedisStore

    redis, reads = _redis_connections(settings)
    return RedisStore(limits, redis, poll=_poll(settings), reads=reads)


def _token(settings: Settings, limits: Limits) -> SessionStore:
    from .token import TokenStore

    redis, reads = _redis_connections(settings)
    return TokenStore(limits, redis, poll=_poll(settings), reads=reads)


@dataclasses.dataclass(frozen=True)
class Strategy:
    name: str
    build: Callable[[Settings, Limits], SessionStore]
    carrier: str  # "cookie": the SESSION cookie; "bearer": the Authorization header


STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy("cookie", _cookie, "cookie"),
        Strategy("sticky", _sticky, "cookie"),
        Strategy("database", _database, "cookie"),
        Strategy("replication", _replication, "cookie"),
        Strategy("redis", _redis, "cookie"),
        Strategy("token", _token, "bearer"),
    )
}


def build_store(settings: Settings) -> tuple[Strategy, SessionStore]:
    strategy = STRATEGIES[settings.session_strategy]
    limits = Limits(ttl=settings.session_ttl, max_data_keys=settings.max_data_keys)
    return strategy, strategy.build(settings, limits)
