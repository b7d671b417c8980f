"""The Nginx site as the kit renders it: cookie routing's map and per-node upstreams, the server lines the rolling
deploy's drain edits, and `nginx -t` on every balancing method (with the drain's ` down` applied too), with TLS
(lb_tls: the plain listener only redirects, the TLS server holds everything) and without."""

from __future__ import annotations

import re
import shutil

import pytest

from harness.nginx import SiteNginx, render_site
from harness.servers import free_port
from session_kit.strategies import LB_METHODS, route_of

NODES = [
    {"name": name, "ip": f"10.0.0.{i}", "route": route_of(name)}
    for i, name in enumerate(("lab2", "lab3", "app4.example.org"), start=2)
]
# The one form every server line keeps: `server IP:PORT <params>;  # NODE_NAME` (the drain's sed relies on it).
SERVER_LINE = re.compile(r"^    server (\d+\.\d+\.\d+\.\d+):(\d+)((?: [a-z_]+(?:=\w+)?)*);  # (\S+)$")


def site(lb_method: str, **values) -> str:
    return render_site(strategy="replication", lb_method=lb_method, app_nodes=NODES, app_port=8000, **values)


def upstreams(text: str) -> dict[str, list[re.Match]]:
    """Each upstream block's server lines, parsed."""
    blocks = re.findall(r"^upstream (\S+) \{\n(.*?)^\}", text, re.M | re.S)
    return {
        name: [SERVER_LINE.match(line) for line in body.splitlines() if line.startswith("    server ")]
        for name, body in blocks
    }


@pytest.mark.parametrize("lb_method", LB_METHODS)
def test_every_server_line_keeps_the_form_the_drain_edits(lb_method):
    text = site(lb_method)
    lines = [line for line in text.splitlines() if line.startswith("    server ")]
    assert lines, "no server lines rendered"
    for line in lines:
        match = SERVER_LINE.match(line)
        assert match, f"server line not in the form `server IP:PORT <params>;  # NODE_NAME`: {line!r}"
        assert {"name": match[4], "ip": match[1]} in [{"name": n["name"], "ip": n["ip"]} for n in NODES]


def test_cookie_routing_sends_each_mark_to_its_node_and_the_others_are_backups():
    text = site("hash_cookie")
    blocks = upstreams(text)
    routes = dict(re.findall(r"^    ~\\\.(\S+)\$ (\S+);$", text, re.M))
    assert routes == {n["route"]: f"session_kit_route_{n['route']}" for n in NODES}
    assert re.search(r"^    default session_kit_app;$", text, re.M), "a request without a mark must be balanced"
    assert "proxy_pass http://$session_kit_upstream;" in text
    for node in NODES:
        servers = blocks[f"session_kit_route_{node['route']}"]
        primary = [m[4] for m in servers if "backup" not in m[3]]
        assert primary == [node["name"]], f"{node['name']}'s upstream must have it, and only it, as primary"
        assert sorted(m[4] for m in servers) == sorted(n["name"] for n in NODES), "every other node is a backup"
    assert all("backup" not in m[3] for m in blocks["session_kit_app"]), "the balanced upstream has no backups"
    assert "hash " not in text and "ip_hash" not in text


@pytest.mark.parametrize("lb_method", ["round_robin", "ip_hash"])
def test_without_cookie_routing_one_balanced_upstream(lb_method):
    text = site(lb_method)
    assert list(upstreams(text)) == ["session_kit_app"]
    assert "proxy_pass http://session_kit_app;" in text and "map $cookie" not in text and "backup" not in text
    assert ("ip_hash;" in text) == (lb_method == "ip_hash")


def test_routes_are_what_the_app_accepts_as_session_route():
    from sample_app.settings import Settings

    for node in NODES:
        env = {"SESSION_STRATEGY": "sticky", "SESSION_ROUTE": node["route"]}
        assert Settings.from_env(env).session_route == node["route"]
    assert route_of("app4.example.org") == "app4-example-org"


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    from session_kit import tls

    return tls.self_signed(tmp_path_factory.mktemp("tls"), "test", ["127.0.0.1", "localhost"])


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed (apt-get install nginx-light)")
@pytest.mark.parametrize("lb_tls", [True, False])
@pytest.mark.parametrize("lb_method", LB_METHODS)
def test_nginx_accepts_the_site_and_the_drained_site(lb_method, lb_tls, pair):
    port, tls_port = free_port(), free_port()
    text = site(lb_method, nginx_listen=f"127.0.0.1:{port}", nginx_listen_tls=f"127.0.0.1:{tls_port}", lb_tls=lb_tls)
    drained = re.sub(r"^(    server \S+ [^;]*);(  # lab3)$", r"\1 down;\2", text, flags=re.M)
    assert drained.count(" down;") == (len(NODES) + 1 if lb_method == "hash_cookie" else 1)
    for variant in (text, drained):
        nginx = SiteNginx(variant, port, tls=pair if lb_tls else None, tls_port=tls_port if lb_tls else None)
        try:
            result = nginx.test()
            assert result.returncode == 0, result.stderr
        finally:
            nginx.destroy()


# -- TLS (lb_tls, the default) -------------------------------------------------------------------------------------


def servers(text: str) -> list[str]:
    """Each top-level `server { ... }` block's text."""
    return re.findall(r"^server \{\n(.*?)^\}", text, re.M | re.S)


def test_without_tls_one_plain_server_and_no_redirect():
    text = site("round_robin", lb_tls=False)
    [plain] = servers(text)
    assert "listen 0.0.0.0:80 default_server;" in plain
    assert "ssl" not in text and "Strict-Transport-Security" not in text and "return 308" not in text


@pytest.mark.parametrize("lb_method", LB_METHODS)
def test_with_tls_the_plain_listener_only_redirects_and_the_tls_server_holds_everything(lb_method):
    text = site(lb_method)  # lb_tls is on by default
    plain, secure = servers(text)
    assert plain.strip().splitlines()[0] == "listen 0.0.0.0:80 default_server;"
    assert "return 308 https://$host$request_uri;" in plain, "443: no port in the redirect"
    assert "location" not in plain and "proxy_pass" not in plain, "the plain listener serves nothing itself"
    assert "listen 0.0.0.0:443 ssl default_server;" in secure
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in secure and "ssl_session_cache shared:" in secure
    assert 'add_header Strict-Transport-Security "max-age=31536000" always;' in secure
    # everything the plain server held without TLS, once, in the TLS server
    without = servers(site(lb_method, lb_tls=False))[0]
    assert without.splitlines()[0] == "    " + plain.strip().splitlines()[0]
    assert secure.endswith("\n".join(without.splitlines()[1:]) + "\n")
    # Nginx drops the server's add_header lines in a location that has one of its own: none has
    locations = re.findall(r"^    location [^\n]*\{\n(.*?)^    \}", secure, re.M | re.S)
    assert len(locations) == 5 and not any("add_header" in body for body in locations)


def test_the_redirect_names_the_tls_port_unless_443():
    text = site("round_robin", nginx_listen="8080", nginx_listen_tls="10.0.0.5:8443")
    assert "return 308 https://$host:8443$request_uri;" in text
    assert "listen 10.0.0.5:8443 ssl default_server;" in text and "listen 8080 default_server;" in text
