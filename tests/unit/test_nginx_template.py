"""The Nginx site as the kit renders it: cookie routing's map and per-node upstreams, the server lines the rolling
deploy's drain edits, and `nginx -t` on every balancing method (with the drain's ` down` applied too)."""

from __future__ import annotations

import re
import shutil

import pytest

from session_kit.strategies import LB_METHODS, route_of
from tests.support.servers import SiteNginx, free_port, render_site

NODES = [{"name": name, "ip": f"10.0.0.{i}", "route": route_of(name)}
         for i, name in enumerate(("lab2", "lab3", "app4.example.org"), start=2)]
# The one form every server line keeps: `server IP:PORT <params>;  # NODE_NAME` (the drain's sed relies on it).
SERVER_LINE = re.compile(r"^    server (\d+\.\d+\.\d+\.\d+):(\d+)((?: [a-z_]+(?:=\w+)?)*);  # (\S+)$")


def site(lb_method: str, **values) -> str:
    return render_site(strategy="replication", lb_method=lb_method, app_nodes=NODES, app_port=8000, **values)


def upstreams(text: str) -> dict[str, list[re.Match]]:
    """Each upstream block's server lines, parsed."""
    blocks = re.findall(r"^upstream (\S+) \{\n(.*?)^\}", text, re.M | re.S)
    return {name: [SERVER_LINE.match(line) for line in body.splitlines() if line.startswith("    server ")]
            for name, body in blocks}


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


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed (apt-get install nginx-light)")
@pytest.mark.parametrize("lb_method", LB_METHODS)
def test_nginx_accepts_the_site_and_the_drained_site(lb_method):
    text = site(lb_method, nginx_listen=f"127.0.0.1:{free_port()}")
    drained = re.sub(r"^(    server \S+ [^;]*);(  # lab3)$", r"\1 down;\2", text, flags=re.M)
    assert drained.count(" down;") == (len(NODES) + 1 if lb_method == "hash_cookie" else 1)
    for variant in (text, drained):
        nginx = SiteNginx(variant, free_port())
        try:
            result = nginx.test()
            assert result.returncode == 0, result.stderr
        finally:
            nginx.destroy()
