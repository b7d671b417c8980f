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
    def __init__(
        self,
        strategy: str,
        backends: Backends,
        size: int = 3,
        ttl: int = 1800,
        extra_env: dict[str, str] | None = None,
        hosts: list[str] | None = None,
        routed: bool = False,
    ):
        """hosts: one loopback address per node, all on one port (as the kit's servers); routed: each node marks
        the sessions it creates with its name (SESSION_ROUTE, cookie routing)."""
        self.strategy, self.bearer = strategy, strategy in BEARER
        env = {**strategy_env(strategy, backends, ttl), **(extra_env or {})}
        if hosts:
            port = free_port()
            addresses = [(host, port) for host in hosts]
        else:
            addresses = [("127.0.0.1", free_port()) for _ in range(size)]
        self.nodes = []
        for i, (host, port) in enumerate(addresses):
            node_env = {**env, **({"SESSION_ROUTE": f"node{i + 1}"} if routed else {})}
            if strategy == "replication":
                node_env["PEERS"] = ",".join(f"http://{h}:{p}" for h, p in addresses if (h, p) != (host, port))
            self.nodes.append(AppNode(f"node{i + 1}", node_env, port, host=host))
        self.env = env

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def start(self) -> Cluster:
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
            return all(
                peer["state"] == "up"
                for node in self.nodes
                if node.proc and node.proc.poll() is None
                for peer in requests.get(node.url + "/_replication/status", timeout=2).json()["peers"].values()
            )

        wait_until(all_up, timeout, "replication between the nodes")

    def destroy(self) -> None:
        for node in self.nodes:
            node.destroy()

    def crash(self) -> None:
        """destroy(), without each node's drain first: faster where the test is not about stopping."""
        for node in self.nodes:
            node.kill()
        self.destroy()
