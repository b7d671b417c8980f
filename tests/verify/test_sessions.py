"""Sessions through the load balancer, as a user sees them: shared across the app nodes (sticky: pinned to one),
counting exactly, gone everywhere after logout. Token clients send no cookie at all. With lb_tls (the default): over
HTTPS, verified against the inventory's certificate; plain HTTP only redirects (308) there; HSTS on every answer;
the SESSION cookie Secure."""

from __future__ import annotations

import time

import pytest
import requests

from harness.client import SessionClient
from session_kit.strategies import route_of

REQUESTS = 50  # reads and increments each: 50 consecutive increments, each seen exactly once


def client_for(deployment) -> SessionClient:
    return SessionClient(bearer=deployment.strategy.bearer, verify=deployment.tls_verify)


def test_load_balancer_answers(lb_url, tls_verify):
    response = requests.get(lb_url + "/healthz", timeout=10, verify=tls_verify)
    assert response.status_code == 200, f"GET {lb_url}/healthz: {response.status_code} {response.text[:200]}"
    assert "X-Served-By" in response.headers


def promises_read_your_writes(deployment) -> bool:
    """Every strategy but replication in async mode answers a read with the client's last write, on any node."""
    return not (deployment.strategy.name == "replication" and deployment.vars.get("replication_mode") == "async")


def read(client, lb_url, deployment, counter: int) -> requests.Response:
    """GET /session. Only async replication may answer with an older state (or 401 right after login) for a few
    milliseconds; then the client waits, as it would have to (bounded: 3 s). Every other strategy gets no retry."""
    deadline = time.monotonic() + 3
    while True:
        response = client.get(lb_url + "/session")
        current = response.status_code == 200 and response.json().get("counter") == counter
        if current or promises_read_your_writes(deployment) or time.monotonic() > deadline:
            return response
        STALE_READS.append(response.headers.get("X-Served-By"))
        time.sleep(0.01)


STALE_READS: list[str] = []


def test_session_is_shared_across_nodes_or_pinned(deployment, lb_url, proven):
    client = client_for(deployment)
    login = client.login(lb_url, "verifier")
    assert login.status_code == 200, f"login: {login.status_code} {login.text[:200]}"
    creator = login.headers.get("X-Served-By")
    served, counter, crossed = [], 0, 0
    last_writer = creator  # the node that made the change this read must see (the login first)
    for i in range(REQUESTS):
        response = read(client, lb_url, deployment, counter)
        node = response.headers.get("X-Served-By")
        crossed += node != last_writer
        assert response.status_code == 200, f"read {i} on {node}: {response.status_code} {response.text[:200]}"
        assert response.json()["user"] == "verifier", f"{node}: session of another user"
        assert response.json()["counter"] == counter, (
            f"{node}: counter {response.json()['counter']}, expected {counter}"
        )
        served.append(node)
        response = client.post(lb_url + "/session/counter")
        node = response.headers.get("X-Served-By")
        assert response.status_code == 200, f"increment {i} on {node}: {response.status_code} {response.text[:200]}"
        counter += 1
        assert response.json()["counter"] == counter, (
            f"{node}: counter {response.json()['counter']}, expected {counter}"
        )
        served.append(node)
        last_writer = node
    nodes = set(served)
    if deployment.strategy.shared and deployment.lb_method == "round_robin":
        assert len(nodes) >= 2, f"every request went to {nodes}: round robin should spread them"
        # read-your-writes across nodes: reads right after a change (the login included) on another node than the
        # one that made it, each correct at once (no retry unless async replication)
        assert crossed > 0, "no read landed on another node than the last change: nothing proven across nodes"
    else:
        assert len(nodes) == 1, f"a pinned session moved between nodes: {sorted(nodes)}"
    if deployment.lb_method == "hash_cookie":  # cookie routing: the node that created the session serves it
        assert nodes == {creator}, f"created on {creator}, then served by {sorted(nodes)}"
        assert client.handle.rsplit(".", 1)[-1] == route_of(creator), f"the cookie is not marked with {creator}'s route"
    app_names = {node.name for node in deployment.role("app")}
    assert nodes <= app_names, f"answers from unknown nodes {nodes - app_names}"
    if STALE_READS:
        print(
            f"replication: {len(STALE_READS)} reads found a node not yet updated and waited "
            f"(nodes: {sorted(set(STALE_READS))})"
        )
    spread = "shared by every app node" if len(nodes) > 1 else "pinned to one node"
    proven(f"a session {spread} ({len(nodes)} of {len(app_names)} served it)")
    if crossed:
        proven(
            f"reads its own writes on other nodes: {crossed} of {REQUESTS} reads came right after a change made "
            f"on another node"
        )
    proven(
        f"counts exactly: {REQUESTS} increments, each seen once"
        + (f" ({len(STALE_READS)} reads waited for replication)" if STALE_READS else ", no read needed a retry")
    )


def test_logout_ends_the_session_on_every_node(deployment, lb_url, proven):
    client = client_for(deployment)
    client.login(lb_url, "leaver")
    handle = client.handle
    for _ in deployment.role("app"):  # replication: every node knows the session before it is ended
        read(client, lb_url, deployment, 0)
    response = client.post(lb_url + "/logout")
    assert response.status_code == 200, f"logout on {response.headers.get('X-Served-By')}: {response.text[:200]}"
    stale = client_for(deployment)
    stale.handle = handle
    if deployment.strategy.name == "cookie":
        # Documented (README, "cookie"): the server keeps no state, so a copy taken before logout still works.
        replay = stale.get(lb_url + "/session")
        assert replay.status_code == 200, "a copied cookie is expected to outlive logout (nothing to revoke it)"
        proven("logout drops the browser's cookie; a copy taken before it still works until it expires (measured)")
        return
    refused_by = set()
    for _ in range(6 * len(deployment.role("app"))):
        response = stale.get(lb_url + "/session")
        if response.status_code == 401:
            refused_by.add(response.headers["X-Served-By"])
        else:
            assert deployment.strategy.name == "replication", (
                f"{response.headers['X-Served-By']}: session still valid after logout ({response.status_code})"
            )
            time.sleep(0.05)
    if deployment.strategy.shared and deployment.lb_method == "round_robin":
        assert refused_by == {node.name for node in deployment.role("app")}, f"only {refused_by} refused it"
    proven(f"logout ends the session ({len(refused_by)} node(s) then refused it)")


def test_token_works_without_any_cookie(deployment, lb_url, tls_verify, proven):
    if not deployment.strategy.bearer:
        pytest.skip(f"{deployment.strategy.name} carries its session in a cookie, not a bearer token")
    client = client_for(deployment)
    login = client.login(lb_url, "mobile")
    assert "Set-Cookie" not in login.headers and "token" in login.json()
    for _ in range(6):
        response = client.post(lb_url + "/session/counter")
        assert response.status_code == 200 and "Set-Cookie" not in response.headers
    assert (
        requests.get(lb_url + "/session", cookies={"SESSION": client.handle}, timeout=10, verify=tls_verify).status_code
        == 401
    )
    proven("the token works with no cookie at all, and is refused as a cookie")


def test_internal_endpoints_are_not_public(deployment, lb_url, tls_verify):
    response = requests.get(lb_url + "/_replication/status", timeout=10, verify=tls_verify)
    assert response.status_code == 404, "the load balancer must not expose /_replication/"


def test_https_only_with_hsts_and_secure_cookies(deployment, lb_url, tls_verify, proven):
    """lb_tls: plain HTTP answers every request (a POST too) with 308 to the same URL over HTTPS; HTTPS answers carry
    Strict-Transport-Security; a cookie strategy's SESSION cookie is Secure."""
    if not deployment.vars.get("lb_tls"):
        pytest.skip("lb_tls = False: the balancer speaks plain HTTP")
    if not lb_url.startswith("https://"):
        pytest.skip(f"--lb-url {lb_url} is not an HTTPS URL")
    plain = deployment.lb_http_url
    for method, path in (("GET", "/session?from=verify"), ("POST", "/login")):
        response = requests.request(
            method,
            plain + path,
            allow_redirects=False,
            timeout=10,
            json={"username": "plain"} if method == "POST" else None,
        )
        assert response.status_code == 308, f"{method} {plain}{path}: {response.status_code}, not 308 to HTTPS"
        assert response.headers.get("Location") == deployment.lb_url + path, (
            f"{method} {plain}{path}: redirected to {response.headers.get('Location')}, not {deployment.lb_url}{path}"
        )
    health = requests.get(lb_url + "/healthz", timeout=10, verify=tls_verify)
    assert health.headers.get("Strict-Transport-Security") == "max-age=31536000", (
        f"{lb_url}/healthz: Strict-Transport-Security is {health.headers.get('Strict-Transport-Security')!r}"
    )
    secure = ""
    if not deployment.strategy.bearer:
        client = client_for(deployment)
        login = client.login(lb_url, "secure")
        cookies = [c for c in login.raw.headers.getlist("Set-Cookie") if c.startswith("SESSION=")]
        assert login.status_code == 200 and cookies, f"login: {login.status_code}, Set-Cookie {cookies}"
        assert all("; Secure" in c for c in cookies), f"the SESSION cookie is not Secure: {cookies}"
        secure = ", the SESSION cookie Secure"
    trusted = f"verified against {deployment.tls_ca.name}" if deployment.tls_ca else "verified by the system's CAs"
    proven(f"HTTPS only ({trusted}): plain HTTP answers 308 to HTTPS, a POST too; HSTS on every answer{secure}")
