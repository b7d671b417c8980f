"""The redis and token strategies on a real Redis Cluster (3 primaries, 3 replicas, on loopback), and on Redis with an
ACL user: sessions shared by the app nodes and spread over the primaries, a primary's failover under load (503s or
successes, never a 500, no acknowledged increment lost), a slot migrated under a live session (ASK, then MOVED), and
an ACL user limited to the commands and keys the app declares (sample_app/stores/redis.py)."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import threading
import time
import types

import pytest
import requests

from harness.client import SessionClient
from harness.cluster import Backends, Cluster
from harness.redis_cluster import RedisCluster
from harness.servers import RedisServer
from sample_app.settings import Settings
from sample_app.stores import build_store
from sample_app.stores.base import Change, Session, StoreUnavailable
from sample_app.stores.redis import ACL_COMMANDS, KEY_PATTERNS

APP_USER, APP_PASSWORD = "app", "app-user-password"
# Only what the app says it needs: a command or key it forgot would fail these tests.
ACL_RULES = " ".join(["resetchannels", "-@all", *(f"+{c}" for c in ACL_COMMANDS), *(f"~{p}" for p in KEY_PATTERNS)])


@pytest.fixture(scope="module")
def redis_cluster():
    cluster = RedisCluster(acl_user=(APP_USER, APP_PASSWORD, ACL_RULES)).start()
    yield cluster
    cluster.destroy()


def on_cluster(strategy: str, redis_cluster: RedisCluster, size: int = 2) -> Cluster:
    url = redis_cluster.url(APP_USER, APP_PASSWORD)
    return Cluster(
        strategy,
        Backends(redis=types.SimpleNamespace(url=url)),
        size=size,
        extra_env={"REDIS_URL": url, "REDIS_CLUSTER_NODES": redis_cluster.seeds},
    ).start()


def key_of(strategy: str, handle: str) -> str:
    return "session:" + handle if strategy == "redis" else "token:" + hashlib.sha256(handle.encode()).hexdigest()


def exercise(cluster: Cluster, users: int = 30) -> list[SessionClient]:
    """The contract across two nodes: login on one, change and read on the other, data, rotate, logout."""
    first, second = cluster.urls
    clients = []
    for i in range(users):
        client = SessionClient(bearer=cluster.bearer)
        assert client.login(first, f"user{i}").status_code == 200
        clients.append(client)
    for client in clients:
        for n in range(1, 4):
            response = client.post((first, second)[n % 2] + "/session/counter")
            assert response.status_code == 200 and response.json()["counter"] == n, response.text
    for client in clients[:5]:
        assert client.request("PUT", first + "/session/data/cart", json={"items": [1, 2]}).status_code == 200
        assert client.get(second + "/session").json()["data"] == {"cart": {"items": [1, 2]}}
        assert client.request("DELETE", second + "/session/data/cart").json()["deleted"] is True
        assert client.get(first + "/session").json()["data"] == {}
    # Login on a live session moves it to a new handle (most likely in another slot, on another primary).
    rotating = clients[0]
    old = rotating.handle
    assert rotating.login(second, "user0").status_code == 200 and rotating.handle != old
    assert rotating.get(first + "/session").json()["counter"] == 3, "the rotated session kept its counter"
    stale = SessionClient(bearer=cluster.bearer)
    stale.handle = old
    assert stale.get(second + "/session").status_code == 401, "the old handle must be dead after a rotation"
    # Logout on one node ends the session on the other.
    leaving = SessionClient(bearer=cluster.bearer)
    leaving.handle = clients[1].handle
    assert leaving.post(second + "/logout").status_code == 200
    leaving.handle = clients[1].handle
    assert leaving.get(first + "/session").status_code == 401, "a logout must end the session on every node"
    return clients


@pytest.mark.parametrize("strategy", ["redis", "token"])
def test_sessions_on_a_cluster_are_shared_and_spread_over_the_primaries(redis_cluster, strategy):
    before = {port: redis_cluster.dbsize(port) for port in redis_cluster.primary_ports()}
    cluster = on_cluster(strategy, redis_cluster)
    try:
        clients = exercise(cluster)
        for client in clients[2:]:
            assert client.get(cluster.urls[1] + "/session").json()["counter"] == 3
        grown = {port: redis_cluster.dbsize(port) - count for port, count in before.items()}
        assert sum(grown.values()) >= 28, grown
        assert sum(1 for n in grown.values() if n > 0) >= 2, f"every session on one primary: {grown}"
        # Each key lives on the primary its slot says (the app routed by CRC16 and hash tags as Redis does).
        key = key_of(strategy, clients[5].handle)
        owner = redis_cluster.slot_owner(redis_cluster.keyslot(key))
        assert int(redis_cluster.cli(owner, "CLUSTER", "COUNTKEYSINSLOT", str(redis_cluster.keyslot(key)))) >= 1
        assert redis_cluster.cli(owner, "EXISTS", key) == "1"
        if strategy == "token":
            # /logout/all ends every token of the user, whichever primaries they are on, and empties the index.
            other = SessionClient(bearer=True)
            other.login(cluster.urls[1], "user7")
            ended = clients[7].post(cluster.urls[0] + "/logout/all")
            assert ended.status_code == 200 and ended.json()["sessions_ended"] == 2, ended.text
            assert other.get(cluster.urls[0] + "/session").status_code == 401
            index_owner = redis_cluster.slot_owner(redis_cluster.keyslot("user-tokens:user7"))
            assert redis_cluster.cli(index_owner, "EXISTS", "user-tokens:user7") == "0"
    finally:
        cluster.destroy()


def test_a_slot_migrated_under_a_live_session_is_followed(redis_cluster):
    """ASK while the slot's keys are on the new primary but the slot is not yet its; MOVED once it is."""
    cluster = on_cluster("redis", redis_cluster)
    try:
        client = SessionClient()
        client.login(cluster.urls[0], "migrant")
        client.post(cluster.urls[1] + "/session/counter")
        key = key_of("redis", client.handle)
        slot = redis_cluster.keyslot(key)
        source = redis_cluster.slot_owner(slot)
        target = next(port for port in redis_cluster.primary_ports() if port != source)

        redis_cluster.move_slot(slot, target, finish=False)
        # Without ASKING the importing primary sends the client back, and the source sends it on: ASK.
        assert redis_cluster.cli(target, "HGET", key, "counter").startswith("MOVED")
        assert redis_cluster.cli(source, "HGET", key, "counter").startswith("ASK")
        for url in cluster.urls:  # ASK: each node must send ASKING and the script to the importing primary
            response = client.post(url + "/session/counter")
            assert response.status_code == 200, response.text
        assert client.get(cluster.urls[0] + "/session").json()["counter"] == 3

        redis_cluster.finish_move(slot, target)
        assert redis_cluster.slot_owner(slot) == target
        assert "MOVED" in redis_cluster.cli(source, "HGET", key, "counter")
        for url in cluster.urls:  # MOVED: each node must follow it
            response = client.post(url + "/session/counter")
            assert response.status_code == 200, response.text
        body = client.get(cluster.urls[1] + "/session").json()
        assert body["counter"] == 5 and body["user"] == "migrant"
        assert redis_cluster.cli(target, "HGET", key, "counter") == "5"
    finally:
        cluster.destroy()


def test_a_primary_killed_under_load_fails_over_with_503s_only_and_loses_nothing():
    redis_cluster = RedisCluster(acl_user=(APP_USER, APP_PASSWORD, ACL_RULES)).start()
    cluster = None
    try:
        cluster = on_cluster("redis", redis_cluster)
        clients = [SessionClient(timeout=10) for _ in range(12)]
        for i, client in enumerate(clients):
            assert client.login(cluster.urls[i % 2], f"load{i}").status_code == 200
        owners = [redis_cluster.slot_owner(redis_cluster.keyslot(key_of("redis", c.handle))) for c in clients]
        victim = max(set(owners), key=owners.count)  # the primary holding the most of these sessions
        on_victim = [i for i, owner in enumerate(owners) if owner == victim]

        acked = [0] * len(clients)
        failed = [0] * len(clients)
        statuses: dict[int, int] = {}
        answered: list[float] = []  # when each answer came
        bad: list[str] = []
        stop = threading.Event()

        def hammer(indexes: list[int]) -> None:
            n = 0
            while not stop.is_set():
                i = indexes[n % len(indexes)]
                n += 1
                try:
                    response = clients[i].post(cluster.urls[n % 2] + "/session/counter")
                except requests.RequestException as error:  # no answer: the increment may or may not have applied
                    failed[i] += 1
                    bad.append(f"no answer: {error}")
                    continue
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                answered.append(time.monotonic())
                if response.status_code == 200:
                    acked[i] += 1
                    if response.json()["counter"] < acked[i]:
                        bad.append(f"session {i}: counter {response.json()['counter']} after {acked[i]} increments")
                else:
                    failed[i] += 1
                    if response.status_code != 503 or response.json().get("error") != "store_unavailable":
                        bad.append(f"{response.status_code} {response.text[:200]}")

        threads = [
            threading.Thread(target=hammer, args=([i for i in range(len(clients)) if i % 4 == t],)) for t in range(4)
        ]
        for thread in threads:
            thread.start()
        try:
            time.sleep(0.5)
            redis_cluster.kill(victim)
            killed_at = time.monotonic()
            redis_cluster.wait_failover(victim, timeout=20)
            failover_s = time.monotonic() - killed_at
            # After the failover every session answers again, the ones on the killed primary included (bounded).
            before = list(acked)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not all(acked[i] > before[i] for i in range(len(clients))):
                time.sleep(0.05)
        finally:
            stop.set()
            for thread in threads:
                thread.join(15)
        assert not bad, f"requests neither served nor a JSON 503: {bad[:5]} (statuses {statuses})"
        assert all(acked[i] > before[i] for i in range(len(clients))), (
            f"sessions not served again 10 s after the failover ({failover_s:.1f} s): {acked} vs {before}"
        )
        assert on_victim, "no session on the killed primary: the test proved nothing"
        for i, client in enumerate(clients):
            response = client.get(cluster.urls[i % 2] + "/session")
            assert response.status_code == 200, response.text
            counter = response.json()["counter"]
            # A 503 may come after Redis applied the change (the connection died before the answer), never the reverse.
            assert acked[i] <= counter <= acked[i] + failed[i], (
                f"session {i}: {acked[i]} acknowledged, {failed[i]} failed, counter {counter}"
            )
        during = sum(1 for at in answered if killed_at <= at <= killed_at + failover_s)
        assert during > 0, "no request was answered during the failover: the test proved nothing"
    finally:
        if cluster:
            cluster.destroy()
        redis_cluster.destroy()


def test_a_batch_over_several_primaries_fails_only_the_keys_of_the_one_that_fails(redis_cluster):
    """One batch of increments (one event-loop turn) goes to every primary; one primary refusing the script fails the
    requests of its keys only (a 503 each), the others are answered."""
    url = redis_cluster.url(APP_USER, APP_PASSWORD)
    settings = Settings.from_env(
        {
            "SESSION_STRATEGY": "redis",
            "REDIS_URL": url,
            "NODE_NAME": "batch",
            "REDIS_CLUSTER_NODES": redis_cluster.seeds,
        }
    )
    _, store = build_store(settings)
    loop = asyncio.new_event_loop()
    refusing = None
    try:
        handles = [loop.run_until_complete(store.create(Session(user=f"batch{i}"))) for i in range(24)]
        owners = [redis_cluster.slot_owner(redis_cluster.keyslot(key_of("redis", h))) for h in handles]
        refusing = max(set(owners), key=owners.count)
        assert len(set(owners)) > 1
        assert redis_cluster.cli(refusing, "ACL", "SETUSER", APP_USER, "-evalsha", "-eval") == "OK"

        async def increments():
            return await asyncio.gather(*(store.increment(h) for h in handles), return_exceptions=True)

        results = loop.run_until_complete(increments())
        for owner, result in zip(owners, results):
            if owner == refusing:
                assert isinstance(result, StoreUnavailable), result
            else:
                assert isinstance(result, Change) and result.value == 1, result
        assert redis_cluster.cli(refusing, "ACL", "SETUSER", APP_USER, "+evalsha", "+eval") == "OK"
        refused, refusing = refusing, None
        # The refused increments changed nothing; the answered ones counted once.
        results = loop.run_until_complete(increments())
        assert [r.value for r in results] == [1 if owner == refused else 2 for owner in owners]
    finally:
        if refusing:
            redis_cluster.cli(refusing, "ACL", "SETUSER", APP_USER, "+evalsha", "+eval")
        loop.run_until_complete(store.close())
        loop.close()


# -- an ACL user ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["redis", "token"])
def test_the_app_logs_in_as_an_acl_user_with_the_default_user_off(strategy):
    redis = RedisServer().start()
    admin = ["redis-cli", "-p", str(redis.port), "--no-auth-warning", "--user", "admin", "--pass", "admin-pw"]

    def as_admin(*args: str) -> str:
        return subprocess.run([*admin, *args], capture_output=True, text=True, timeout=10).stdout.strip()

    cluster = None
    try:
        assert redis.cli("ACL", "SETUSER", "admin", "on", ">admin-pw", "~*", "&*", "+@all") == "OK"
        assert as_admin("ACL", "SETUSER", APP_USER, "reset", "on", f">{APP_PASSWORD}", *ACL_RULES.split()) == "OK"
        assert as_admin("ACL", "SETUSER", "default", "off") == "OK"
        url = f"redis://{APP_USER}:{APP_PASSWORD}@127.0.0.1:{redis.port}/0"
        cluster = Cluster(strategy, Backends(redis=types.SimpleNamespace(url=url)), size=2).start()
        exercise(cluster, users=4)
        if strategy == "token":
            client = SessionClient(bearer=True)
            client.login(cluster.urls[0], "many")
            SessionClient(bearer=True).login(cluster.urls[1], "many")
            assert client.post(cluster.urls[1] + "/logout/all").json()["sessions_ended"] == 2
        users = {
            field.split("=", 1)[1]
            for line in as_admin("CLIENT", "LIST").splitlines()
            for field in line.split()
            if field.startswith("user=")
        }
        assert APP_USER in users, f"the app's connections are not the ACL user's: {users}"
        assert as_admin("ACL", "LOG") == "", "the app ran into a command or key its ACL user lacks"
        keys = as_admin("KEYS", "*").split()
        assert keys and all(any(key.startswith(p.rstrip("*")) for p in KEY_PATTERNS) for key in keys), keys
        # A wrong password is the store being unavailable (a JSON 503), not an error of the app.
        wrong = Cluster(
            strategy,
            Backends(redis=types.SimpleNamespace(url=f"redis://{APP_USER}:wrong@127.0.0.1:{redis.port}/0")),
            size=1,
        )
        try:
            wrong.nodes[0].start()
            health = requests.get(wrong.urls[0] + "/healthz", timeout=10)
            assert health.status_code == 503 and health.json()["error"] == "store_unavailable"
        finally:
            wrong.destroy()
    finally:
        if cluster:
            cluster.destroy()
        if redis.proc and redis.proc.poll() is None:  # the default user is off: redis.stop() could not SHUTDOWN
            redis.proc.terminate()
            redis.proc.wait(10)
        redis.destroy()
