"""Sessions expire after SESSION_TTL seconds without use, and each use slides the expiry (every strategy)."""

from __future__ import annotations

import time

import pytest

from sample_app.settings import STRATEGIES
from tests.support.client import SessionClient
from tests.support.cluster import Cluster

TTL = 2


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
    for _ in range(6):  # 3.6 s in all, well past one TTL, with a change every 0.6 s
        time.sleep(0.6)
        response = client.post(url + "/session/counter")
        assert response.status_code == 200, "a session in use must not expire"
    assert client.get(url + "/session").json()["counter"] == 6
