"""App clusters on loopback: N sample_app nodes of one strategy, wired to real Redis/PostgreSQL and to each other."""

from __future__ import annotations

import dataclasses
import secrets

import requests

from .servers import AppNode, PostgresServer, RedisServer, free_port, wait_until

BEARER = {"token"}
ATOMIC = {"database", "redis", "token"}


@dataclasses.dataclass
class Backends:
    redis: RedisServer | None = None
    postgres: PostgresServer | None = None


def strategy_env(strategy: str, backends: Backends, ttl: int = 1800) -> dict[str, str]:
    env = {"SESSION_STRATEGY": strategy, "SESSION_TTL": str(ttl)}
    if strategy == "cookie":
        env["SECRET_KEYS"] = secrets.token_urlsafe(32)
    if strategy in ("redis", "token"):
        assert backends.redis is not None
        env["REDIS_URL"] = backends.redis.url
    if strategy == "database":
        assert backends.postgres is not None
        env["DATABASE_URL"] = backends.postgres.url
    if strategy == "replication":
        env["REPLICATION_KEY"] = secrets.token_urlsafe(32)
    return env


class Cluster:
    def __init__(self, strategy: str, backends: Backends, size: int = 3, ttl: int = 1800,
                 extra_env: dict[str, str] | None = None):
        self.strategy, self.bearer = strategy, strategy in BEARER
        env = {**strategy_env(strategy, backends, ttl), **(extra_env or {})}
        ports = [free_port() for _ in range(size)]
        self.nodes = []
        for i, port in enumerate(ports):
            node_env = dict(env)
            if strategy == "replication":
                node_env["PEERS"] = ",".join(f"http://127.0.0.1:{p}" for p in ports if p != port)
            self.nodes.append(AppNode(f"node{i + 1}", node_env, port))
        self.env = env

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def start(self) -> "Cluster":
        for node in self.nodes:
            node.start(wait=False)
        for node in self.nodes:
            node.wait_ready()
        if self.strategy == "replication":
            self.wait_replicating()
        return self

    def wait_replicating(self, timeout: float = 10) -> None:
        """Until every node counts every other one as live (replication: sync mode waits for live peers only)."""
        def all_up() -> bool:
            return all(peer["state"] == "up" for node in self.nodes if node.proc and node.proc.poll() is None
                       for peer in requests.get(node.url + "/_replication/status", timeout=2).json()["peers"].values())

        wait_until(all_up, timeout, "replication between the nodes")

    def destroy(self) -> None:
        for node in self.nodes:
            node.destroy()
