"""The HTTP contract, for every strategy, on three nodes: sharing (sticky: pinning), counter, data, logout, fixation."""

from __future__ import annotations

import pytest

from harness.client import SessionClient

from .conftest import eventually


def client_for(cluster) -> SessionClient:
    return SessionClient(bearer=cluster.bearer)


def sharing_urls(cluster) -> list[str]:
    """The nodes that know a session made on the first node: all of them, or for sticky only the first."""
    return cluster.urls[:1] if cluster.strategy == "sticky" else cluster.urls


def session_on(client: SessionClient, url: str, expect: int = 200, when=lambda body: True):
    """GET /session on one node, waiting (replication is asynchronous) for the expected status and content."""

    def attempt():
        response = client.get(url + "/session")
        if response.status_code == expect and (expect != 200 or when(response.json())):
            return response
        return None

    response = eventually(attempt)
    assert response is not None, f"{url}: GET /session never answered {expect} as expected"
    return response


def test_healthz_and_served_by(cluster):
    for node in cluster.nodes:
        response = SessionClient().get(node.url + "/healthz")
        assert response.status_code == 200
        assert response.json() == {"status": "ok", "node": node.name, "strategy": cluster.strategy}
        assert response.headers["X-Served-By"] == node.name


def test_login_is_seen_on_every_node_except_sticky(cluster):
    client = client_for(cluster)
    response = client.login(cluster.urls[0], "alice")
    assert response.status_code == 200
    assert response.json()["user"] == "alice" and response.json()["node"] == "node1"
    for node in cluster.nodes:
        if cluster.strategy == "sticky" and node.name != "node1":
            reply = client.get(node.url + "/session")
            assert reply.status_code == 401, f"sticky: {node.name} must not know node1's session"
            assert reply.json()["error"] == "no_session"
            continue
        body = session_on(client, node.url).json()
        assert body["user"] == "alice" and body["node"] == node.name and body["strategy"] == cluster.strategy
        assert body["counter"] == 0 and body["data"] == {}


def test_session_cookie_attributes(cluster):
    client = client_for(cluster)
    response = client.login(cluster.urls[0], "alice")
    cookies = response.raw.headers.getlist("Set-Cookie")
    if cluster.bearer:
        assert cookies == [] and "token" in response.json()
        assert len(response.json()["token"]) >= 22  # at least 128 random bits, URL-safe base64
        return
    assert len(cookies) == 1
    cookie = cookies[0].lower()
    assert cookie.startswith("session=")
    for attribute in ("httponly", "samesite=lax", "path=/"):
        assert attribute in cookie
    assert "secure" not in cookie.replace("samesite", "")


def test_counter_grows_by_one_per_increment_across_nodes(cluster):
    client = client_for(cluster)
    client.login(cluster.urls[0], "bob")
    urls = sharing_urls(cluster)
    for n in range(1, 10):
        url = urls[n % len(urls)]
        if cluster.strategy == "replication":
            # Asynchronous copies: wait until this node has the previous value, as a sticky balancer would ensure.
            session_on(client, url, when=lambda body, n=n: body["counter"] == n - 1)
        response = client.post(url + "/session/counter")
        assert response.status_code == 200, response.text
        assert response.json()["counter"] == n
    assert session_on(client, urls[0], when=lambda body: body["counter"] == 9).json()["counter"] == 9


def test_data_set_and_delete_across_nodes(cluster):
    client = client_for(cluster)
    first, second, third = (sharing_urls(cluster) * 3)[:3]
    client.login(first, "carol")
    value = {"items": [1, 2, 3], "note": "übergrößen ✓"}
    assert client.request("PUT", first + "/session/data/cart", json=value).status_code == 200
    assert session_on(client, second, when=lambda b: "cart" in b["data"]).json()["data"] == {"cart": value}
    response = client.request("DELETE", second + "/session/data/cart")
    assert response.status_code == 200 and response.json()["deleted"] is True
    assert session_on(client, third, when=lambda b: "cart" not in b["data"]).json()["data"] == {}
    response = client.request("DELETE", third + "/session/data/cart")
    assert response.status_code == 200 and response.json()["deleted"] is False


def test_logout_refuses_the_session_on_every_node(cluster):
    client = client_for(cluster)
    client.login(cluster.urls[0], "dave")
    copied = client.handle
    session_on(client, sharing_urls(cluster)[-1])  # replication: every node has it before logout
    response = client.post(cluster.urls[0] + "/logout")
    assert response.status_code == 200 and response.json()["status"] == "logged_out"
    if not cluster.bearer:
        assert client.handle is None, "logout must expire the SESSION cookie"
    thief = SessionClient(bearer=cluster.bearer)
    thief.handle = copied
    for url in cluster.urls:
        if cluster.strategy == "cookie":
            # Documented: a signed cookie cannot be revoked by the server; a copy stays valid until it expires.
            assert thief.get(url + "/session").status_code == 200
            continue
        session_on(thief, url, expect=401)
    assert client.get(cluster.urls[0] + "/session").status_code == 401
    assert client.post(cluster.urls[0] + "/logout").status_code == 401


def test_login_always_starts_a_new_session_id(cluster):
    client = client_for(cluster)
    url = cluster.urls[0]
    client.login(url, "erin")
    client.request("PUT", url + "/session/data/theme", json="dark")
    client.post(url + "/session/counter")
    before = client.handle
    response = client.login(url, "erin")
    assert response.status_code == 200
    assert client.handle and client.handle != before, "login must issue a new session id"
    body = client.get(url + "/session").json()
    assert body["user"] == "erin" and body["data"] == {"theme": "dark"} and body["counter"] == 1
    if cluster.strategy != "cookie":
        old = SessionClient(bearer=cluster.bearer)
        old.handle = before
        assert old.get(url + "/session").status_code == 401, "the pre-login id must be dead"


def test_login_as_another_user_does_not_inherit_the_session(cluster):
    client = client_for(cluster)
    url = cluster.urls[0]
    client.login(url, "frank")
    client.request("PUT", url + "/session/data/secret", json="frank's")
    client.login(url, "grace")
    body = client.get(url + "/session").json()
    assert body["user"] == "grace" and body["data"] == {} and body["counter"] == 0


def test_attacker_supplied_id_is_never_adopted(cluster):
    """Fixation: an id the attacker planted before the victim logs in is not the id the victim ends up with."""
    planted = "A" * 43
    victim = client_for(cluster)
    victim.handle = planted
    victim.login(cluster.urls[0], "heidi")
    assert victim.handle != planted
    attacker = SessionClient(bearer=cluster.bearer)
    attacker.handle = planted
    assert attacker.get(cluster.urls[0] + "/session").status_code == 401


def test_logout_everywhere(cluster):
    first, second = client_for(cluster), client_for(cluster)
    first.login(cluster.urls[0], "ivan")
    second.login(cluster.urls[0], "ivan")
    response = first.post(cluster.urls[0] + "/logout/all")
    if cluster.strategy != "token":
        assert response.status_code == 404 and response.json()["error"] == "not_supported"
        return
    assert response.status_code == 200 and response.json()["sessions_ended"] == 2
    for url in cluster.urls:
        assert second.get(url + "/session").status_code == 401


@pytest.mark.parametrize("path", ["/session", "/session/counter"])
def test_no_session_is_401_json(cluster, path):
    method = "GET" if path == "/session" else "POST"
    response = SessionClient(bearer=cluster.bearer).request(method, cluster.urls[0] + path)
    assert response.status_code == 401
    assert response.json()["error"] == "no_session"
    assert response.headers["X-Served-By"] == "node1"


def test_index_page_for_a_person(cluster):
    response = SessionClient().get(cluster.urls[1] + "/")
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/html")
    assert "node2" in response.text and cluster.strategy in response.text
