"""Through the kit's real Nginx site (rendered from its template, run by the Debian package's nginx) in front of three
real app nodes, each on its own loopback address and the same port, as the kit deploys them:

- cookie routing (lb_method hash_cookie): the node that creates a session marks its SESSION cookie with its route,
  Nginx sends every later request of that session to it, and to another node only while it is down (sticky: that
  node does not know the session, 401, and a new login sticks there; replication: the session goes on);
- round robin with replication in sync mode: every request may land anywhere and still sees its own writes;
- logins limited per client address: a burst beyond the limit gets 429 JSON, the sessions already made go on, and an
  unlimited source is not counted.
"""

from __future__ import annotations

import contextlib
import shutil

import pytest

from harness.client import SessionClient
from harness.cluster import Backends, Cluster
from harness.nginx import SiteNginx, render_site
from harness.servers import free_port
from session_kit.strategies import route_of

pytestmark = pytest.mark.skipif(
    shutil.which("nginx") is None, reason="nginx is not installed (apt-get install nginx-light)"
)

HOSTS = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]


@contextlib.contextmanager
def balanced_site(
    strategy: str,
    lb_method: str,
    tls: tuple | None = None,
    backends: Backends | None = None,
    extra_env: dict | None = None,
    **site,
):
    """The kit's site in front of a cluster of the strategy: (cluster, SiteNginx). tls: the (certificate, key) pair
    of a site with lb_tls (its HTTPS at nginx.tls_url, the plain listener at nginx.url); None: plain HTTP."""
    cluster = Cluster(
        strategy, backends or Backends(), hosts=HOSTS, routed=lb_method == "hash_cookie", extra_env=extra_env
    )
    nginx = None
    try:
        cluster.start()
        port, tls_port = free_port(), free_port()
        site = render_site(
            strategy=strategy,
            lb_method=lb_method,
            app_port=cluster.nodes[0].port,
            app_nodes=[{"name": n.name, "ip": n.host, "route": route_of(n.name)} for n in cluster.nodes],
            nginx_listen=f"127.0.0.1:{port}",
            nginx_listen_tls=f"127.0.0.1:{tls_port}",
            lb_tls=tls is not None,
            **site,
        )
        nginx = SiteNginx(site, port, tls=tls, tls_port=tls_port if tls else None).start()
        yield cluster, nginx
    finally:
        if nginx:
            nginx.destroy()
        cluster.crash()


@contextlib.contextmanager
def balanced(strategy: str, lb_method: str, **site):
    """The kit's site without TLS (lb_tls=False) in front of a cluster of the strategy: (cluster, its URL)."""
    with balanced_site(strategy, lb_method, **site) as (cluster, nginx):
        yield cluster, nginx.url


@pytest.mark.parametrize("strategy", ["sticky", "replication"])
def test_cookie_routing_sticks_and_falls_back_only_when_the_node_is_down(strategy):
    with balanced(strategy, "hash_cookie") as (cluster, lb):
        client = SessionClient()
        login = client.login(lb, "pinned")
        assert login.status_code == 200
        owner = login.headers["X-Served-By"]
        assert client.handle.endswith("." + owner), f"the cookie must carry its node's route: {client.handle}"
        for n in range(1, 25):
            read = client.get(lb + "/session")
            assert (read.status_code, read.headers["X-Served-By"]) == (200, owner), read.text
            change = client.post(lb + "/session/counter")
            assert (change.status_code, change.json()["counter"], change.headers["X-Served-By"]) == (200, n, owner)
        logins = {SessionClient().login(lb, f"user{i}").headers["X-Served-By"] for i in range(6)}
        assert logins == {"node1", "node2", "node3"}, "requests without a mark are balanced over every node"

        next(node for node in cluster.nodes if node.name == owner).kill()
        read = client.get(lb + "/session")
        assert read.headers["X-Served-By"] != owner, "the marked node is down: another must answer"
        if strategy == "sticky":
            assert read.status_code == 401 and read.json()["error"] == "no_session"
            again = client.login(lb, "pinned")
            assert again.status_code == 200
            owner = again.headers["X-Served-By"]
            assert client.handle.endswith("." + owner)
            expected = range(1, 6)
        else:
            assert read.status_code == 200 and read.json()["counter"] == 24, "replication: the session goes on"
            expected = range(25, 30)
        for n in expected:
            change = client.post(lb + "/session/counter")
            assert change.status_code == 200 and change.json()["counter"] == n, change.text
            if strategy == "sticky":
                assert change.headers["X-Served-By"] == owner


def test_round_robin_replication_in_sync_mode_reads_its_writes_through_the_balancer():
    with balanced("replication", "round_robin") as (cluster, lb):
        client = SessionClient()
        login = client.login(lb, "wanderer")
        assert login.status_code == 200 and "." not in client.handle, "no route mark without cookie routing"
        served = [login.headers["X-Served-By"]]
        read = client.get(lb + "/session")
        assert read.status_code == 200 and read.json()["user"] == "wanderer", "a read right after login"
        served.append(read.headers["X-Served-By"])
        for n in range(1, 51):
            change = client.post(lb + "/session/counter")
            assert change.status_code == 200 and change.json()["counter"] == n, change.text
            served.append(change.headers["X-Served-By"])
        assert set(served) == {"node1", "node2", "node3"}, f"round robin must use every node: {set(served)}"
        marked = SessionClient()
        marked.handle = client.handle + ".node2"  # a cookie from when routing was on: still the same session
        assert marked.get(lb + "/session").json()["counter"] == 50
        copied = client.handle
        assert client.post(lb + "/logout").status_code == 200
        thief = SessionClient()
        thief.handle = copied
        assert [thief.get(url + "/session").status_code for url in cluster.urls] == [401, 401, 401]


def test_a_burst_of_logins_from_one_address_is_limited_and_sessions_go_on():
    with balanced(
        "replication",
        "round_robin",
        nginx_login_rate="1r/s",
        nginx_login_burst=5,
        nginx_unlimited_sources=["127.0.0.9"],
    ) as (cluster, lb):
        first = SessionClient()
        assert first.login(lb, "first").status_code == 200
        statuses = [SessionClient().login(lb, f"burst{i}") for i in range(30)]
        limited = [r for r in statuses if r.status_code == 429]
        assert len(limited) >= 20, [r.status_code for r in statuses]  # 1 r/s with a burst of 5, in a second or two
        assert all(r.json()["error"] == "too_many_requests" for r in limited)
        assert {r.status_code for r in statuses} <= {200, 429}
        assert limited[0].headers.get("X-Content-Type-Options") == "nosniff"
        # what a limited login refuses is only new logins from that address: the session made before goes on
        for n in range(1, 4):
            change = first.post(lb + "/session/counter")
            assert change.status_code == 200 and change.json()["counter"] == n, change.text
        # a source listed in nginx_unlimited_sources is never limited
        import requests

        unlimited = requests.Session()
        unlimited.mount("http://", _SourceAdapter("127.0.0.9"))
        codes = [unlimited.post(lb + "/login", json={"username": f"u{i}"}, timeout=10).status_code for i in range(30)]
        assert codes == [200] * 30, codes


class _SourceAdapter(__import__("requests").adapters.HTTPAdapter):
    """Sends from a given loopback address."""

    def __init__(self, source: str):
        self.source = source
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.source, 0)
        super().init_poolmanager(*args, **kwargs)
