"""Sessions expire after SESSION_TTL seconds without use, and each use slides the expiry (every strategy)."""

from __future__ import annotations

import time

import pytest

from harness.client import SessionClient
from harness.cluster import Cluster
from sample_app.settings import STRATEGIES

TTL = 3  # the cookie signs whole seconds: its real life is TTL - 1 to TTL s, so 2 left too little slack


@pytest.fixture(scope="module", params=STRATEGIES)
def short_lived(request, backends):
    cluster = Cluster(request.param, backends, size=2, ttl=TTL).start()
    yield cluster
    cluster.destroy()


def test_idle_session_expires(short_lived):
    client = SessionClient(bearer=short_lived.bearer)
    url = short_lived.urls[0]
    client.login(url, "sleepy")
    assert client.get(url + "/session").status_code == 200
    time.sleep(TTL + 1.2)
    response = client.get(url + "/session")
    assert response.status_code == 401 and response.json()["error"] == "no_session"
    assert client.post(url + "/session/counter").status_code == 401


def test_use_slides_the_expiry(short_lived):
    client = SessionClient(bearer=short_lived.bearer)
    url = short_lived.urls[0]
    client.login(url, "busy")
    for _ in range(8):  # 4.8 s in all, well past one TTL, with a change every 0.6 s
        time.sleep(0.6)
        response = client.post(url + "/session/counter")
        assert response.status_code == 200, "a session in use must not expire"
    assert client.get(url + "/session").json()["counter"] == 8


def test_expired_rows_are_purged_from_postgresql(backends):
    """database: expired sessions are not just invisible but deleted (every min(60 s, TTL/4) by one node)."""
    import psycopg

    cluster = Cluster("database", backends, size=2, ttl=TTL).start()
    try:
        client = SessionClient()
        client.login(cluster.urls[0], "purged")
        with psycopg.connect(backends.postgres.url, autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM sessions WHERE username = 'purged'").fetchone()[0] == 1
            deadline = time.monotonic() + TTL + 5
            while time.monotonic() < deadline:
                left = conn.execute("SELECT count(*) FROM sessions WHERE username = 'purged'").fetchone()[0]
                if left == 0:
                    break
                time.sleep(0.2)
            assert left == 0, "the expired session's row was never purged"
    finally:
        cluster.destroy()
