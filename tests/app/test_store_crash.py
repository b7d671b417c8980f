"""A store that crashes (every process killed at once, as the OOM killer or a segfault does) and comes back: the app
serves again within RECOVERY_GOAL of the store answering, and no session or answered increment is lost (PostgreSQL
by its write-ahead log; Redis by its append-only file, as the kit's redis.conf sets it)."""

from __future__ import annotations

import time

import psycopg
import pytest
import requests

from harness.client import SessionClient
from harness.cluster import Backends, Cluster
from harness.servers import PostgresServer, RedisServer

# From the store answering again to the app answering /healthz, a login and a session read.
RECOVERY_GOAL = 2.0
DOWN_SECONDS = 8.0  # a pool retrying after 1, 2, 4, 8 s would wait about 6 s more once PostgreSQL is back


def served(url: str, client: SessionClient) -> bool:
    try:
        return (
            requests.get(url + "/healthz", timeout=5).status_code == 200
            and SessionClient().login(url, "after").status_code == 200
            and client.get(url + "/session").status_code == 200
        )
    except requests.RequestException:
        return False


def recovery_seconds(url: str, client: SessionClient, limit: float = 20.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < limit:
        if served(url, client):
            return time.monotonic() - started
        time.sleep(0.05)
    return float("inf")


def postgres_answers(server: PostgresServer) -> bool:
    try:
        with psycopg.connect(server.url, connect_timeout=1, sslmode="require") as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def test_postgres_crash_the_app_serves_within_two_seconds_of_its_return():
    server = PostgresServer().start()
    cluster = Cluster("database", Backends(postgres=server), size=1, extra_env={"DATABASE_POOL_SIZE": "4"}).start()
    try:
        url = cluster.urls[0]
        client = SessionClient()
        assert client.login(url, "survivor").status_code == 200
        for _ in range(5):
            assert client.post(url + "/session/counter").status_code == 200
        server.crash()
        deadline = time.monotonic() + DOWN_SECONDS
        while time.monotonic() < deadline:  # requests while it is down: every pooled connection dies and retries
            assert client.get(url + "/session").status_code == 503
            assert SessionClient().login(url, "during").status_code == 503
            time.sleep(0.2)
        server.start()
        assert postgres_answers(server)
        took = recovery_seconds(url, client)
        print(f"\n    app serving {took:.2f} s after PostgreSQL answered again (goal <= {RECOVERY_GOAL:g} s)")
        assert took <= RECOVERY_GOAL, f"the app served {took:.2f} s after PostgreSQL came back"
        assert client.get(url + "/session").json()["counter"] == 5
    finally:
        cluster.destroy()
        server.destroy()


@pytest.mark.parametrize("strategy", ["redis", "token"])
def test_redis_crash_with_the_kits_append_only_file_loses_nothing_answered_a_second_before(strategy):
    """appendonly yes, appendfsync everysec (the kit's default): what was answered a second before the crash is on
    disk; the app's connections (and the reads' tracking connection) come back by themselves."""
    server = RedisServer(extra=("--appendonly", "yes", "--appendfsync", "everysec")).start()
    cluster = Cluster(strategy, Backends(redis=server), size=2).start()
    try:
        clients = [SessionClient(bearer=cluster.bearer) for _ in range(20)]
        for i, client in enumerate(clients):
            assert client.login(cluster.urls[i % 2], f"user{i}").status_code == 200
            for _ in range(5):
                assert client.post(cluster.urls[(i + 1) % 2] + "/session/counter").status_code == 200
        time.sleep(1.5)  # appendfsync everysec: answered a second before the crash, on disk
        server.proc.kill()
        server.proc.wait(10)
        server.start()
        took = recovery_seconds(cluster.urls[0], clients[0])
        assert took <= RECOVERY_GOAL, f"the app served {took:.2f} s after Redis came back"
        for i, client in enumerate(clients):
            response = client.get(cluster.urls[i % 2] + "/session")
            assert response.status_code == 200, f"client {i}: {response.status_code} {response.text}"
            assert response.json()["counter"] == 5, f"client {i}: {response.json()}"
    finally:
        cluster.destroy()
        server.destroy()
