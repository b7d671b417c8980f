"""Nginx as the load balancer: one site, rendered per strategy; `nginx -t` before any reload; reload only on change."""

from __future__ import annotations

from pyinfra.operations import files, server, systemd
from pyinfra.operations.util import any_changed

from session_kit.defaults import NGINX_DEFAULTS
from session_kit.strategies import route_of

from .cluster import Cluster, bounded_deploy, install_packages, template

SITE = "/etc/nginx/sites-available/session-kit.conf"


@bounded_deploy("Nginx load balancer", data_defaults=NGINX_DEFAULTS)
def install_nginx(cluster: Cluster) -> None:
    install_packages("Install nginx", ["nginx"])
    site = files.template(
        name="Render the session-kit site", src=template(SITE), dest=SITE, mode="644",
        strategy=cluster.strategy.name, lb_method=cluster.lb_method,
        app_nodes=[{**node, "route": route_of(node["name"])} for node in cluster.nodes("app")],
        app_port=cluster.vars["app_port"], **cluster.values(NGINX_DEFAULTS))
    enabled = files.link(name="Enable the site", path="/etc/nginx/sites-enabled/session-kit.conf", target=SITE)
    default = files.link(name="Disable Debian's default site", path="/etc/nginx/sites-enabled/default", present=False)
    changed = any_changed(site, enabled, default)
    server.shell(name="Check the configuration (nginx -t)", commands=["nginx -t"], _if=changed)
    systemd.service(name="Keep nginx running and enabled", service="nginx", running=True, enabled=True)
    systemd.service(name="Reload nginx", service="nginx", reloaded=True, _if=changed)
