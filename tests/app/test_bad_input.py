"""Bad input never gives a 500: every refusal is a 4xx with a JSON error, and the stored session is left intact."""

from __future__ import annotations

import pytest
import requests

from tests.support.client import SessionClient


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
        handle[:middle] + flip + handle[middle + 1:],  # one character changed
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
        for method, path in (("GET", "/session"), ("POST", "/session/counter"), ("PUT", "/session/data/x"),
                             ("DELETE", "/session/data/keep"), ("POST", "/logout")):
            response = forger.request(method, url + path, headers=headers, json=1 if method == "PUT" else None)
            assert_json_error(response, 401, "no_session")


def test_malformed_authorization_and_cookie_headers(cluster, victim):
    client, url = victim
    for headers in ({"Authorization": "Bearer"}, {"Authorization": "Basic Zm9vOmJhcg=="},
                    {"Authorization": "Bearer a b c"}, {"Cookie": "SESSION"}, {"Cookie": ";;;=;SESSION=;"},
                    {"Cookie": 'SESSION="unterminated'}):
        response = SessionClient().get(url + "/session", headers=headers)
        assert_json_error(response, 401, "no_session")


@pytest.mark.parametrize("body, code", [
    (b"{not json", "invalid_json"),
    (b"\xff\xfe", "invalid_json"),
    (b"[]", "invalid_username"),
    (b'{"username": 7}', "invalid_username"),
    (b'{"username": ""}', "invalid_username"),
    (b'{"username": "a b"}', "invalid_username"),
    (b'{"username": "' + b"x" * 65 + b'"}', "invalid_username"),
])
def test_bad_login_bodies_are_400(cluster, victim, body, code):
    client, url = victim
    response = client.post(url + "/login", data=body, headers={"Content-Type": "application/json"})
    assert_json_error(response, 400, code)


def test_oversized_body_is_413(cluster, victim):
    client, url = victim
    big = b'{"username": "' + b"x" * 70_000 + b'"}'
    assert_json_error(client.post(url + "/login", data=big), 413, "body_too_large")
    # A body that lies about its size (chunked, no Content-Length) is cut off as well.
    assert_json_error(client.request("PUT", url + "/session/data/big", data=iter([b"[" + b"1," * 40_000 + b"1]"])),
                      413, "body_too_large")


def test_oversized_value_is_413(cluster, victim):
    client, url = victim
    response = client.request("PUT", url + "/session/data/big", json="x" * 9000)
    assert_json_error(response, 413, "value_too_large")


@pytest.mark.parametrize("key, status, code", [
    ("a" * 65, 400, "invalid_key"), ("with space", 400, "invalid_key"), ("%C3%A9", 400, "invalid_key"),
    ("sl%2Fash", 404, "not_found"),  # decodes to a deeper path: no such route
])
def test_bad_data_keys_are_4xx(cluster, victim, key, status, code):
    client, url = victim
    assert_json_error(client.request("PUT", f"{url}/session/data/{key}", json=1), status, code)


def test_invalid_json_value_is_400(cluster, victim):
    client, url = victim
    response = client.request("PUT", url + "/session/data/k", data=b"{oops", headers={"Content-Type": "application/json"})
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
    assert_json_error(client.request("DELETE", url + "/session"), 405, "method_not_allowed")
    assert_json_error(client.get(url + "/login"), 405, "method_not_allowed")
