"""TLS at the balancer (lb_tls, the kit's default), through the kit's real Nginx site (rendered from its template, run
by the Debian package's nginx) in front of three real app nodes on loopback, with a self-signed pair made as the kit
makes it (session_kit/tls.py):

- HTTPS verified against that certificate as the only CA: login and increments work, every answer (the app's and
  Nginx's own: 404, 429, 503) carries Strict-Transport-Security; the SESSION cookie is Secure;
- plain HTTP answers every request with 308 to the same URL over HTTPS: a POST stays a POST (never 301/302);
- the login limit still applies over HTTPS.
"""

from __future__ import annotations

import shutil

import pytest
import requests

from harness.client import SessionClient
from session_kit import tls
from session_kit.defaults import ALL_DEFAULTS
from session_kit.strategies import STRATEGIES, app_environment
from tests.app.test_routing import balanced_site

pytestmark = pytest.mark.skipif(
    shutil.which("nginx") is None, reason="nginx is not installed (apt-get install nginx-light)"
)

HSTS = "max-age=31536000"


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return tls.self_signed(tmp_path_factory.mktemp("tls"), "test", ["127.0.0.1", "localhost"])


def kit_env(strategy: str) -> dict[str, str]:
    """COOKIE_SECURE as the kit's deploy writes it for lb_tls (its default) and app_cookie_secure False."""
    env = app_environment(
        STRATEGIES[strategy],
        {**ALL_DEFAULTS, "inventory_name": "test"},
        {"cookie_secret_key": "k" * 43, "replication_key": "r"},
        node="n1",
        private_ip="127.0.0.2",
        peers=[],
        redis_ip=None,
        db_ip=None,
    )
    assert ALL_DEFAULTS["lb_tls"] is True and ALL_DEFAULTS["app_cookie_secure"] is False
    return {"COOKIE_SECURE": env["COOKIE_SECURE"]}


def test_https_sessions_with_the_certificate_as_ca_and_plain_http_redirected(pair):
    certificate = str(pair[0])
    with balanced_site("cookie", "round_robin", tls=pair, extra_env=kit_env("cookie")) as (cluster, nginx):
        https, http = nginx.tls_url, nginx.url
        client = SessionClient(verify=certificate)
        login = client.login(https, "secure")
        assert login.status_code == 200, login.text
        assert login.headers.get("Strict-Transport-Security") == HSTS
        cookie = login.raw.headers.getlist("Set-Cookie")
        assert any(c.startswith("SESSION=") and "; Secure" in c for c in cookie), f"not Secure: {cookie}"
        served = set()
        for n in range(1, 11):
            change = client.post(https + "/session/counter")
            assert change.status_code == 200 and change.json()["counter"] == n, change.text
            assert change.headers.get("Strict-Transport-Security") == HSTS
            assert change.headers.get("X-Content-Type-Options") == "nosniff"
            served.add(change.headers["X-Served-By"])
        assert len(served) > 1, "round robin over HTTPS"
        refused = requests.get(https + "/_replication/status", verify=certificate, timeout=10)
        assert refused.status_code == 404 and refused.headers.get("Strict-Transport-Security") == HSTS
        with pytest.raises(requests.exceptions.SSLError):  # verified: not trusted without the certificate
            requests.get(https + "/healthz", timeout=10)

        # plain HTTP: every request, whatever its method and path, to the same URL over HTTPS, with 308
        for method, path in (
            ("GET", "/session?x=1"),
            ("POST", "/login"),
            ("POST", "/session/counter"),
            ("GET", "/_replication/status"),
            ("GET", "/"),
        ):
            answer = requests.request(
                method,
                http + path,
                json={"username": "plain"} if method == "POST" else None,
                allow_redirects=False,
                timeout=10,
            )
            assert answer.status_code == 308, f"{method} {path}: {answer.status_code}"
            assert answer.headers["Location"] == https + path
        # a client that follows it sends the POST again, with its body, over HTTPS
        followed = requests.post(http + "/login", json={"username": "followed"}, verify=certificate, timeout=10)
        assert [r.status_code for r in followed.history] == [308] and followed.status_code == 200, followed.text
        assert followed.url == https + "/login" and followed.json()["user"] == "followed"

        # Nginx's own 503 when no app node answers: JSON, and the headers too
        for node in cluster.nodes:
            node.kill()
        down = requests.get(https + "/session", verify=certificate, timeout=10)
        assert down.status_code == 503 and down.json()["error"] == "unavailable"
        assert down.headers.get("Strict-Transport-Security") == HSTS


def test_replication_behind_https_keeps_its_peers_on_plain_http(pair):
    """The nodes replicate to each other over the private network (http), whatever the balancer speaks."""
    with balanced_site("replication", "round_robin", tls=pair, extra_env=kit_env("replication")) as (_, nginx):
        client = SessionClient(verify=str(pair[0]))
        assert client.login(nginx.tls_url, "replicated").status_code == 200
        for n in range(1, 6):
            change = client.post(nginx.tls_url + "/session/counter")
            assert change.status_code == 200 and change.json()["counter"] == n, change.text


def test_the_login_limit_applies_over_https(pair):
    with balanced_site("replication", "round_robin", tls=pair, nginx_login_rate="1r/s", nginx_login_burst=5) as (
        _,
        nginx,
    ):
        https = nginx.tls_url
        first = SessionClient(verify=str(pair[0]))
        assert first.login(https, "first").status_code == 200
        answers = [SessionClient(verify=str(pair[0])).login(https, f"burst{i}") for i in range(30)]
        limited = [r for r in answers if r.status_code == 429]
        assert len(limited) >= 20, [r.status_code for r in answers]
        assert {r.status_code for r in answers} <= {200, 429}
        assert all(r.json()["error"] == "too_many_requests" for r in limited)
        assert limited[0].headers.get("Strict-Transport-Security") == HSTS
        change = first.post(https + "/session/counter")
        assert change.status_code == 200 and change.json()["counter"] == 1, "the session made before goes on"


def test_the_drills_load_generator_over_https(pair):
    """drills/load.py, given an ssl.SSLContext trusting the certificate (as the drills give it, from
    Deployment.ssl_context()): every request answered, no session lost; without it, every connection refused."""
    import asyncio
    import ssl

    from drills.load import Load, summarize

    async def drive(context) -> Load:
        load = Load(nginx.tls_url, clients=20, think=0.01, limit_seconds=1.5, ssl_context=context)
        await load.open()
        try:
            await load.log_in_all(tries=1)
            await load.run()
            await load.check_all()
        finally:
            await load.close()
        return load

    with balanced_site("cookie", "round_robin", tls=pair, extra_env=kit_env("cookie")) as (_, nginx):
        load = asyncio.run(drive(ssl.create_default_context(cafile=str(pair[0]))))
        figures = summarize(load.outcomes)
        assert figures["requests"] > 50 and figures["failed"] == 0, figures
        assert not any(client.lost for client in load.clients)
        untrusted = asyncio.run(drive(None))  # the system's CAs: the self-signed certificate is refused
        assert untrusted.outcomes and all(o.status == 0 for o in untrusted.outcomes)
        assert "ClientConnectorCertificateError" in {o.error for o in untrusted.outcomes}
