"""What one strategy does beyond the shared contract: cookie keys and size, token without cookies, replication's
authentication, lag and catch-up, Redis through Sentinel, and the stores surviving an outage."""

from __future__ import annotations

import contextlib
import secrets
import time

import pytest
import requests

from harness.client import SessionClient
from harness.cluster import Backends, Cluster
from harness.servers import AppNode, RedisServer, SentinelServer
from sample_app.stores.replicated import AUTH_HEADER, sign

from .conftest import eventually


def one_cluster(strategy, backends, size=2, **extra_env):
    return Cluster(strategy, backends, size=size, extra_env=extra_env or None).start()


# -- cookie -----------------------------------------------------------------------------------------------------


def test_cookie_key_rotation(backends):
    old, new = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    before = one_cluster("cookie", backends, size=1, SECRET_KEYS=old)
    client = SessionClient()
    try:
        client.login(before.urls[0], "rotor")
        client.post(before.urls[0] + "/session/counter")
    finally:
        before.destroy()
    rotated = one_cluster("cookie", backends, size=1, SECRET_KEYS=f"{new},{old}")
    dropped = one_cluster("cookie", backends, size=1, SECRET_KEYS=new)
    try:
        assert client.get(rotated.urls[0] + "/session").json()["counter"] == 1, "an old key must still verify"
        client.post(rotated.urls[0] + "/session/counter")  # re-signed with the new key
        assert client.get(dropped.urls[0] + "/session").json()["counter"] == 2, "the new key must sign"
    finally:
        rotated.destroy()
        dropped.destroy()


def test_cookie_refuses_to_grow_past_4096_bytes(backends):
    cluster = one_cluster("cookie", backends, size=1)
    try:
        url = cluster.urls[0]
        client = SessionClient()
        client.login(url, "hoarder")
        kept = None
        for i in range(20):
            response = client.request(
                "PUT", f"{url}/session/data/blob{i}", json=secrets.token_hex(350)
            )  # random: the serializer compresses
            if response.status_code != 200:
                kept = i
                break
        assert kept is not None, "the cookie never hit its size limit"
        assert response.status_code == 413 and response.json()["error"] == "cookie_too_large"
        assert "Set-Cookie" not in response.headers, "a refused change must not replace the client's cookie"
        assert len(client.handle) + len("SESSION=") <= 4096
        body = client.get(url + "/session").json()
        assert sorted(body["data"]) == sorted(f"blob{i}" for i in range(kept)), "the old session must stay intact"
    finally:
        cluster.destroy()


def test_cookie_secure_when_configured(backends):
    for strategy in ("cookie", "redis"):
        cluster = one_cluster(strategy, backends, size=1, COOKIE_SECURE="true")
        try:
            response = SessionClient().login(cluster.urls[0], "tls")
            assert response.headers["Set-Cookie"].endswith("; Secure"), response.headers["Set-Cookie"]
        finally:
            cluster.destroy()


# -- token ------------------------------------------------------------------------------------------------------


def test_token_ignores_cookies_and_sets_none(backends):
    cluster = one_cluster("token", backends)
    try:
        client = SessionClient(bearer=True)
        response = client.login(cluster.urls[0], "mobile")
        token = response.json()["token"]
        assert "Set-Cookie" not in response.headers
        for url in cluster.urls:
            assert requests.get(url + "/session", cookies={"SESSION": token}, timeout=5).status_code == 401
            reply = client.get(url + "/session")
            assert reply.status_code == 200 and "Set-Cookie" not in reply.headers
        assert "Set-Cookie" not in client.post(cluster.urls[1] + "/session/counter").headers
        stored = backends.redis.cli("KEYS", "token:*")
        assert token not in stored, "the token itself must never be stored, only its hash"
    finally:
        cluster.destroy()


# -- replication ------------------------------------------------------------------------------------------------


def test_replication_refuses_unauthenticated_deltas(backends):
    cluster = one_cluster("replication", backends)
    try:
        url = cluster.urls[0]
        delta = (
            b'[{"origin": "evil", "seq": 1, "ts": 0, "clock": 1, "op": "put", "sid": "'
            + b"A" * 43
            + b'", "session": {"user": "root", "counter": 0, "data": {}, "created": 0}}]'
        )
        for headers in (
            {},
            {AUTH_HEADER: "0:00"},
            {AUTH_HEADER: sign(b"wrong key", "POST", "/_replication/deltas", delta)},
            {
                AUTH_HEADER: sign(
                    cluster.env["REPLICATION_KEY"].encode(),
                    "POST",
                    "/_replication/deltas",
                    delta,
                    now=time.time() - 3600,
                )
            },
        ):
            response = requests.post(url + "/_replication/deltas", data=delta, headers=headers, timeout=5)
            assert response.status_code == 401 and response.json()["error"] == "unauthenticated"
        assert requests.post(url + "/_replication/snapshot", timeout=5).status_code == 401
        forged = SessionClient()
        forged.handle = "A" * 43
        assert forged.get(url + "/session").status_code == 401
        good = sign(cluster.env["REPLICATION_KEY"].encode(), "POST", "/_replication/deltas", b"{bad")
        response = requests.post(url + "/_replication/deltas", data=b"{bad", headers={AUTH_HEADER: good}, timeout=5)
        assert response.status_code == 400
    finally:
        cluster.destroy()


def test_replication_exposes_lag_and_a_new_node_catches_up(backends):
    cluster = one_cluster("replication", backends)
    late = None
    try:
        client = SessionClient()
        client.login(cluster.urls[0], "lagged")
        for _ in range(5):
            client.post(cluster.urls[0] + "/session/counter")

        def caught_up():
            status = requests.get(cluster.urls[1] + "/_replication/status", timeout=5).json()
            return status if status["received"] >= 6 else None

        status = eventually(caught_up)
        assert status is not None
        lag = status["lag_ms"]
        assert lag["samples"] >= 6 and 0 <= lag["p50"] <= lag["p99"] <= lag["max"] < 5000
        sender = requests.get(cluster.urls[0] + "/_replication/status", timeout=5).json()
        assert sender["peers"][cluster.urls[1]]["sent"] >= 6
        # A node started later pulls the whole state from a peer.
        late = AppNode("node9", {**cluster.env, "PEERS": ",".join(cluster.urls)}).start()
        assert client.get(late.url + "/session").json()["counter"] == 5
        assert requests.get(late.url + "/_replication/status", timeout=5).json()["snapshot_from"] in cluster.urls
    finally:
        if late:
            late.destroy()
        cluster.destroy()


# -- redis through Sentinel -------------------------------------------------------------------------------------


def test_redis_through_sentinel(backends):
    master = RedisServer().start()
    sentinel = SentinelServer(master).start()
    cluster = None
    try:
        cluster = Cluster(
            "redis",
            Backends(redis=master),
            size=2,
            extra_env={
                "REDIS_URL": f"redis://:{master.password}@127.0.0.1:1/0",  # host and port unused: Sentinel says where
                "REDIS_SENTINELS": f"127.0.0.1:{sentinel.port}",
                "REDIS_SENTINEL_MASTER": "mymaster",
            },
        ).start()
        client = SessionClient()
        assert client.login(cluster.urls[0], "sentinel").status_code == 200
        assert client.post(cluster.urls[1] + "/session/counter").json()["counter"] == 1
        assert master.cli("DBSIZE") == "1"
    finally:
        if cluster:
            cluster.destroy()
        sentinel.destroy()
        master.destroy()


@contextlib.contextmanager
def sentinel_pair(size: int):
    """A master, its replica online, a Sentinel that has seen the replica, and `size` app nodes of the redis strategy
    that find the master through that Sentinel: yields (master, replica, sentinel, cluster)."""
    master = RedisServer().start()
    replica = RedisServer(extra=("--replicaof", "127.0.0.1", str(master.port))).start()
    sentinel = cluster = None
    try:
        # The replica's first full sync takes a moment; WAIT only counts a replica that is online, and Sentinel can
        # only promote a replica it has seen in the master's INFO.
        assert eventually(lambda: "state=online" in master.cli("INFO", "replication"), timeout=30, interval=0.2), (
            "the replica never came online"
        )
        sentinel = SentinelServer(master).start()
        assert eventually(
            lambda: str(replica.port) in sentinel.cli("SENTINEL", "REPLICAS", "mymaster"), timeout=30, interval=0.2
        ), "Sentinel never saw the replica"
        cluster = Cluster(
            "redis",
            Backends(redis=master),
            size=size,
            extra_env={
                "REDIS_URL": f"redis://:{master.password}@127.0.0.1:1/0",
                "REDIS_SENTINELS": f"127.0.0.1:{sentinel.port}",
            },
        ).start()
        yield master, replica, sentinel, cluster
    finally:
        if cluster:
            cluster.destroy()
        if sentinel:
            sentinel.destroy()
        replica.destroy()
        master.destroy()


def _answered(call):
    """eventually() of a request: its response once it is a 200, else None."""

    def once():
        response = call()
        return response if response.status_code == 200 else None

    return eventually(once, timeout=30, interval=0.2)


def test_redis_sentinel_failover_keeps_sessions():
    """The master dies; Sentinel promotes the replica; the app finds the new master and the session is still there."""
    with sentinel_pair(size=2) as (master, replica, _, cluster):
        client = SessionClient()
        client.login(cluster.urls[0], "survivor")
        assert client.post(cluster.urls[1] + "/session/counter").json()["counter"] == 1
        assert master.cli("WAIT", "1", "5000") == "1", "the replica did not acknowledge the writes"
        master.proc.kill()  # no shutdown, no save: the master is simply gone
        response = _answered(lambda: client.get(cluster.urls[0] + "/session"))
        assert response is not None, "the app never reached the promoted replica"
        assert response.json()["counter"] == 1
        assert client.post(cluster.urls[1] + "/session/counter").json()["counter"] == 2
        assert replica.cli("ROLE").splitlines()[0] == "master"


def test_a_master_demoted_while_the_app_stays_connected_is_left_for_the_new_one():
    """A failover that leaves the old master running (SENTINEL FAILOVER here; on the lab, a host cut off the network
    and back, whose own app node kept its connection): Redis closes its clients' connections when it is demoted, and
    the app's next request asks Sentinel again: writes work again within seconds, on the new master, and nothing
    written before is lost."""
    with sentinel_pair(size=1) as (master, replica, sentinel, cluster):
        client = SessionClient()
        url = cluster.urls[0]
        client.login(url, "demoted")
        assert client.post(url + "/session/counter").json()["counter"] == 1
        assert master.cli("WAIT", "1", "5000") == "1"
        assert "OK" in sentinel.cli("SENTINEL", "FAILOVER", "mymaster")
        assert eventually(lambda: replica.cli("ROLE").splitlines()[0] == "master", timeout=30, interval=0.2)
        assert eventually(lambda: master.cli("ROLE").splitlines()[0] == "slave", timeout=30, interval=0.2)
        response = _answered(lambda: client.post(url + "/session/counter"))
        assert response is not None, "writes never came back after the failover"
        assert response.json()["counter"] == 2
        assert replica.cli("HGET", master.cli("KEYS", "*").split()[0], "counter") == "2"


# -- outages ----------------------------------------------------------------------------------------------------


def _outage(cluster, stop, start):
    client = SessionClient(bearer=cluster.bearer)
    url = cluster.urls[0]
    client.login(url, "survivor")
    client.post(url + "/session/counter")
    client.request("PUT", url + "/session/data/k", json=[1, 2])
    stop()
    try:
        health = requests.get(url + "/healthz", timeout=10)
        assert health.status_code == 503 and health.json()["error"] == "store_unavailable"
        for method, path in (("GET", "/session"), ("POST", "/session/counter"), ("POST", "/login")):
            response = client.request(method, url + path, json={"username": "x"} if path == "/login" else None)
            assert response.status_code == 503, f"{method} {path}: {response.status_code} {response.text}"
            assert response.json()["error"] == "store_unavailable"
    finally:
        start()
    for node_url in cluster.urls:
        assert eventually(
            lambda url=node_url: requests.get(url + "/healthz", timeout=10).status_code == 200, timeout=15
        )
    body = client.get(cluster.urls[1] + "/session").json()
    assert body["counter"] == 1 and body["data"] == {"k": [1, 2]}, "the outage lost or changed the session"


@pytest.mark.parametrize("strategy", ["redis", "token"])
def test_redis_outage_is_503_and_loses_nothing(strategy):
    redis = RedisServer().start()
    cluster = Cluster(strategy, Backends(redis=redis), size=2).start()
    try:
        _outage(cluster, lambda: redis.stop(save=True), redis.start)
    finally:
        cluster.destroy()
        redis.destroy()


@pytest.mark.parametrize("strategy", ["redis", "token"])
def test_a_redis_restart_shorter_than_the_store_timeout_fails_no_request(strategy):
    """Redis away for about a second (a `systemctl restart`, a package upgrade): a request sent meanwhile waits for it
    (sample_app/stores/resp.py, RECONNECT_WITHIN) and is answered, instead of a 503 at once."""
    import threading

    from sample_app.stores.resp import RECONNECT_WITHIN

    redis = RedisServer().start()
    cluster = Cluster(strategy, Backends(redis=redis), size=1).start()
    try:
        client = SessionClient(bearer=cluster.bearer)
        url = cluster.urls[0]
        client.login(url, "patient")
        assert client.post(url + "/session/counter").json()["counter"] == 1
        redis.stop(save=True)
        back = threading.Timer(0.8, redis.start)
        back.start()
        started = time.monotonic()
        response = client.post(url + "/session/counter")
        waited = time.monotonic() - started
        back.join()
        assert response.status_code == 200, f"{response.status_code} {response.text}"
        assert response.json()["counter"] == 2
        assert 0.5 < waited < RECONNECT_WITHIN + 1, f"answered after {waited:.2f} s"
    finally:
        cluster.destroy()
        redis.destroy()


def test_postgres_outage_is_503_and_loses_nothing(backends):
    cluster = Cluster("database", backends, size=2).start()
    try:
        _outage(cluster, backends.postgres.stop, backends.postgres.start)
    finally:
        cluster.destroy()


def test_every_request_succeeds_at_once_after_a_postgres_restart(backends):
    """Every connection of the app (the pool's and the batched statements' own) dies with the server, but no request
    after the restart fails: not the reads, not the first increment, and not the first logins, which a pool of dead
    idle connections would fail one per connection."""
    cluster = Cluster("database", backends, size=1, extra_env={"DATABASE_POOL_SIZE": "4"}).start()
    try:
        url = cluster.urls[0]
        client = SessionClient()
        client.login(url, "restarted")
        for _ in range(8):  # use every pooled connection (logins go through the pool; reads and increments not)
            assert SessionClient().login(url, "warm").status_code == 200
            assert client.get(url + "/session").status_code == 200
            assert client.post(url + "/session/counter").status_code == 200
        backends.postgres.stop()
        backends.postgres.start()
        response = client.get(url + "/session")
        assert response.status_code == 200, f"first read after the restart: {response.status_code} {response.text}"
        response = client.post(url + "/session/counter")
        assert response.status_code == 200 and response.json()["counter"] == 9, (
            f"first increment after the restart: {response.status_code} {response.text}"
        )
        for i in range(6):  # more logins than the pool has connections
            response = SessionClient().login(url, f"after{i}")
            assert response.status_code == 200, (
                f"login {i + 1} after the restart: {response.status_code} {response.text}"
            )
        response = client.request("PUT", url + "/session/data/k", json=[1])
        assert response.status_code == 200, response.text
        body = client.get(url + "/session").json()
        assert body["counter"] == 9 and body["data"] == {"k": [1]}, body
    finally:
        cluster.destroy()
