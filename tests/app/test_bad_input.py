"""Bad input never gives a 500: every refusal is a 4xx with a JSON error, and the stored session is left intact."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from harness.client import SessionClient
from harness.cluster import Backends, Cluster
from harness.servers import ROOT, PostgresServer, RedisServer

from .test_store_properties import json_equal


@pytest.fixture
def victim(cluster):
    """A live session with known content; each test checks it is unchanged after the bad requests."""
    client = SessionClient(bearer=cluster.bearer)
    url = cluster.urls[0]
    assert client.login(url, "mallory-target").status_code == 200
    client.post(url + "/session/counter")
    client.request("PUT", url + "/session/data/keep", json={"a": 1})
    yield client, url
    body = client.get(url + "/session").json()
    assert body["counter"] == 1 and body["data"] == {"keep": {"a": 1}}, "a bad request changed the stored session"


def assert_json_error(response: requests.Response, status: int, code: str | None = None) -> None:
    assert response.status_code == status, f"{response.status_code} {response.text[:200]}"
    body = response.json()
    assert isinstance(body.get("error"), str) and isinstance(body.get("message"), str)
    if code:
        assert body["error"] == code
    assert "X-Served-By" in response.headers


def tampered(handle: str) -> list[str]:
    middle = len(handle) // 2
    flip = "A" if handle[middle] != "A" else "B"
    return [
        handle[:middle] + flip + handle[middle + 1 :],  # one character changed
        handle[:-1],  # truncated
        handle + "x",  # extended
        handle.upper(),
        "",
        "x" * 5000,  # longer than any cookie
        "not a session \u00e9\u4e2d",
        "../../etc/passwd",
        "A" * 43,  # well-formed, never issued
        ".".join(handle.split(".")[:1] + ["e30"] + handle.split(".")[2:]) if "." in handle else handle[::-1],
    ]


def test_tampered_forged_and_malformed_handles_are_401(cluster, victim):
    client, url = victim
    for handle in tampered(client.handle):
        forger = SessionClient(bearer=cluster.bearer)
        raw = handle.encode("utf-8").decode("latin-1")  # non-ASCII bytes on the wire, as a hostile client sends them
        headers = {"Authorization": f"Bearer {raw}"} if cluster.bearer else {"Cookie": f"SESSION={raw}"}
        for method, path in (
            ("GET", "/session"),
            ("POST", "/session/counter"),
            ("PUT", "/session/data/x"),
            ("DELETE", "/session/data/keep"),
            ("POST", "/logout"),
        ):
            response = forger.request(method, url + path, headers=headers, json=1 if method == "PUT" else None)
            assert_json_error(response, 401, "no_session")


def test_malformed_authorization_and_cookie_headers(cluster, victim):
    client, url = victim
    for headers in (
        {"Authorization": "Bearer"},
        {"Authorization": "Basic Zm9vOmJhcg=="},
        {"Authorization": "Bearer a b c"},
        {"Cookie": "SESSION"},
        {"Cookie": ";;;=;SESSION=;"},
        {"Cookie": 'SESSION="unterminated'},
    ):
        response = SessionClient().get(url + "/session", headers=headers)
        assert_json_error(response, 401, "no_session")


@pytest.mark.parametrize(
    "body, code",
    [
        (b"{not json", "invalid_json"),
        (b"\xff\xfe", "invalid_json"),
        (b"[]", "invalid_username"),
        (b'{"username": 7}', "invalid_username"),
        (b'{"username": ""}', "invalid_username"),
        (b'{"username": "a b"}', "invalid_username"),
        (b'{"username": "' + b"x" * 65 + b'"}', "invalid_username"),
    ],
)
def test_bad_login_bodies_are_400(cluster, victim, body, code):
    client, url = victim
    response = client.post(url + "/login", data=body, headers={"Content-Type": "application/json"})
    assert_json_error(response, 400, code)


def test_oversized_body_is_413(cluster, victim):
    client, url = victim
    big = b'{"username": "' + b"x" * 70_000 + b'"}'
    assert_json_error(client.post(url + "/login", data=big), 413, "body_too_large")
    # A body that lies about its size (chunked, no Content-Length) is cut off as well.
    assert_json_error(
        client.request("PUT", url + "/session/data/big", data=iter([b"[" + b"1," * 40_000 + b"1]"])),
        413,
        "body_too_large",
    )


def test_oversized_value_is_413(cluster, victim):
    client, url = victim
    response = client.request("PUT", url + "/session/data/big", json="x" * 9000)
    assert_json_error(response, 413, "value_too_large")


@pytest.mark.parametrize(
    "key, status, code",
    [
        ("a" * 65, 400, "invalid_key"),
        ("with space", 400, "invalid_key"),
        ("%C3%A9", 400, "invalid_key"),
        ("sl%2Fash", 404, "not_found"),  # decodes to a deeper path: no such route
    ],
)
def test_bad_data_keys_are_4xx(cluster, victim, key, status, code):
    client, url = victim
    assert_json_error(client.request("PUT", f"{url}/session/data/{key}", json=1), status, code)


def test_invalid_json_value_is_400(cluster, victim):
    client, url = victim
    response = client.request(
        "PUT", url + "/session/data/k", data=b"{oops", headers={"Content-Type": "application/json"}
    )
    assert_json_error(response, 400, "invalid_json")


def test_too_many_keys_is_413(cluster, victim):
    client, url = victim
    stored = 1  # "keep"
    for i in range(63):
        response = client.request("PUT", f"{url}/session/data/k{i}", json=i)
        assert response.status_code == 200, response.text
        stored += 1
    assert_json_error(client.request("PUT", url + "/session/data/one-too-many", json=0), 413, "too_many_keys")
    # replacing an existing key is still allowed at the limit
    assert client.request("PUT", url + "/session/data/k0", json="again").status_code == 200
    for i in range(63):
        assert client.request("DELETE", f"{url}/session/data/k{i}").status_code == 200


def test_unknown_paths_and_methods_are_json(cluster, victim):
    client, url = victim
    assert_json_error(client.get(url + "/nowhere"), 404, "not_found")
    assert_json_error(client.get(url + "/session/"), 404, "not_found")  # not an empty redirect to /session
    assert_json_error(client.request("PUT", url + "/session/data/.."), 404, "not_found")  # sent as /session/
    assert_json_error(client.request("DELETE", url + "/session"), 405, "method_not_allowed")
    assert_json_error(client.get(url + "/login"), 405, "method_not_allowed")


# -- JSON the app does not accept (README.md, "The sample app"): refused with 400, whatever the strategy ---------------
# Each was once a 500, or a 200 that broke every later read of the session.

HOSTILE_JSON = [
    pytest.param(b"[" * 5000, "too_deep", id="5000-open-brackets"),  # json.loads would hit RecursionError
    pytest.param(b"[" * 33 + b"]" * 33, "too_deep", id="33-deep-array"),
    pytest.param(b'{"a":' * 3000 + b"1" + b"}" * 3000, "too_deep", id="3000-deep-object"),
    pytest.param(b"NaN", "invalid_value", id="NaN"),
    pytest.param(b"Infinity", "invalid_value", id="Infinity"),
    pytest.param(b"[-Infinity]", "invalid_value", id="minus-Infinity"),
    pytest.param(b"1e400", "invalid_value", id="1e400"),  # Python reads it as inf
    pytest.param(b'{"n": -1e400}', "invalid_value", id="minus-1e400-nested"),
    pytest.param(b'"\\u0000"', "invalid_value", id="NUL"),  # PostgreSQL's jsonb refuses it
    pytest.param(b'{"a\\u0000b": 1}', "invalid_value", id="NUL-in-a-key"),
    pytest.param(b'"\\ud800"', "invalid_value", id="lone-high-surrogate"),  # UTF-8 cannot encode it
    pytest.param(b'[{"\\udc00": 1}]', "invalid_value", id="lone-low-surrogate-in-a-key"),
    pytest.param(b'"\xed\xa0\x80"', "invalid_json", id="surrogate-as-utf8-bytes"),
    pytest.param(b"1" * 5000, "invalid_value", id="5000-digit-integer"),
]


def as_login(body: bytes) -> bytes:
    """The hostile JSON inside an otherwise valid login body: refused for the JSON, not for the username."""
    return b'{"username": "mallory-target", "extra": ' + body + b"}"


@pytest.mark.parametrize("body, code", HOSTILE_JSON)
def test_hostile_json_data_is_400_and_the_session_still_reads(cluster, victim, body, code):
    client, url = victim
    response = client.request("PUT", url + "/session/data/x", data=body, headers={"Content-Type": "application/json"})
    assert_json_error(response, 400, code)
    read = client.get(url + "/session")  # once, one NaN made every later read a 500
    assert read.status_code == 200 and "x" not in read.json()["data"]


@pytest.mark.parametrize("body, code", HOSTILE_JSON)
def test_hostile_json_login_is_400_and_does_not_rotate(cluster, victim, body, code):
    client, url = victim
    handle = client.handle
    response = client.post(url + "/login", data=as_login(body), headers={"Content-Type": "application/json"})
    assert_json_error(response, 400, code)
    assert client.handle == handle, "a refused login handed out a new session"
    # as a bare body too (not an object: the JSON is refused before the username is looked at)
    assert_json_error(client.post(url + "/login", data=body), 400, code)


def test_what_the_rule_accepts_round_trips(cluster, victim):
    """The edge of the rule from the accepting side: 32 levels, huge and tiny numbers, every other character."""
    client, url = victim
    accepted = {
        "deep": b"[" * 32 + b"1" + b"]" * 32,
        "numbers": b"[9007199254740993, 1e308, -1.5e300, 5e-324, -0.0, 1E-400, 0.1]",
        "text": '{"\\u0001\\u001f": "\\ud83d\\ude00 \u00e9\u4e2d \\u2028", "": [null, true, false]}'.encode(),
    }
    for key, body in accepted.items():
        response = client.request("PUT", f"{url}/session/data/{key}", data=body)
        assert response.status_code == 200, f"{key}: {response.status_code} {response.text[:200]}"
    stored = client.get(url + "/session").json()["data"]
    for key, body in accepted.items():
        assert json_equal(stored[key], json.loads(body)), f"{key}: stored {stored[key]!r}"
        assert client.request("DELETE", f"{url}/session/data/{key}").status_code == 200


# -- a store outage is a 503, never a 500 or a hang ------------------------------------------------------------------

# STORE_TIMEOUT (2 s) plus Redis's watchdog period (0.5 s) and a busy machine's slack; below twice STORE_TIMEOUT, so
# that requests failing one batch after another, or after a cancel awaited in line, would not pass
FROZEN_BOUND = 3.8


@pytest.mark.parametrize("strategy", ["redis", "token", "database"])
def test_store_that_accepts_but_never_answers_is_503_then_recovers(strategy):
    """SIGSTOP to the store's server: the kernel still accepts connections and acknowledges what is sent on them, but
    nothing answers (a hung host, a frozen VM). Reads and increments on the connections already open (PostgreSQL:
    the batched statements' own), a login (PostgreSQL: the pool's connections), and many requests at once all get a
    JSON 503 within a few seconds, never a hang; after SIGCONT the same session reads again, intact."""
    server = RedisServer().start() if strategy != "database" else PostgresServer().start()
    backends = Backends(redis=server) if strategy != "database" else Backends(postgres=server)
    cluster = Cluster(strategy, backends, size=1).start()
    client, probe = SessionClient(bearer=cluster.bearer, timeout=20), SessionClient(timeout=20)
    try:
        url = cluster.urls[0]
        assert client.login(url, "paused").status_code == 200
        assert client.request("PUT", url + "/session/data/k", json=[1, 2]).status_code == 200
        assert client.post(url + "/session/counter").status_code == 200
        server.freeze()
        try:
            attempts = {
                "a read": lambda: client.get(url + "/session"),
                "an increment": lambda: client.post(url + "/session/counter"),
                "a read after the store failed": lambda: client.get(url + "/session"),
                "a login": lambda: SessionClient(bearer=cluster.bearer, timeout=20).login(url, "new"),
            }
            for attempt, request in attempts.items():
                started = time.monotonic()
                response = request()
                took = time.monotonic() - started
                assert_json_error(response, 503, "store_unavailable")
                assert took < FROZEN_BOUND, f"{attempt}: 503 after {took:.1f} s"
            started = time.monotonic()
            with ThreadPoolExecutor(8) as pool:
                statuses = list(pool.map(lambda _: client.post(url + "/session/counter").status_code, range(8)))
            took = time.monotonic() - started
            assert statuses == [503] * 8 and took < FROZEN_BOUND, f"8 requests at once: {statuses} after {took:.1f} s"
            assert_json_error(probe.get(url + "/healthz"), 503, "store_unavailable")
        finally:
            server.thaw()
        deadline = time.monotonic() + 15
        while (response := client.get(url + "/session")).status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert response.status_code == 200, f"no recovery after SIGCONT: {response.status_code} {response.text}"
        body = response.json()
        # The one increment answered, and at most one more: an increment the server had received when it froze
        # (the database's lane had sent it) may be applied when it thaws, after its requests were failed.
        assert body["data"] == {"k": [1, 2]} and body["counter"] in (1, 2), body
        response = client.post(url + "/session/counter")
        assert response.status_code == 200 and response.json()["counter"] == body["counter"] + 1, response.text
    finally:
        for idle in (client, probe):  # an idle keep-alive connection would hold up the node's stop (its drain)
            idle.http.close()
        cluster.destroy()
        server.destroy()


def test_rediss_url_is_refused_at_start():
    """The app does not speak TLS to Redis: a rediss:// URL would send the password in the clear, so it stops the
    app before it serves, with one line naming the setting."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SESSION_STRATEGY": "redis",
        "REDIS_URL": "rediss://:secret-password@127.0.0.1:6380/0",
    }
    result = subprocess.run(
        [sys.executable, "-m", "sample_app"], env=env, capture_output=True, text=True, timeout=30, cwd=ROOT
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "REDIS_URL" in lines[0] and "rediss://" in lines[0], lines
    assert "secret-password" not in result.stderr
