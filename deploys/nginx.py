"""Nginx as the load balancer: one site, rendered per strategy; `nginx -t` before any reload; reload only on change.

With lb_tls (the default), the certificate and key come from the controller (session_kit/tls.py: the inventory's
own, or a self-signed pair made once per inventory) and a changed pair reloads Nginx like a changed site."""

from __future__ import annotations

from pyinfra.operations import files, server, systemd
from pyinfra.operations.util import any_changed

from session_kit import tls
from session_kit.defaults import NGINX_DEFAULTS
from session_kit.strategies import route_of

from .cluster import ROOT, Cluster, bounded_deploy, install_packages, private_ip, render

SITE = "/etc/nginx/sites-available/session-kit.conf"
# Where the site's ssl_certificate and ssl_certificate_key point (templates/etc/nginx/sites-available/...).
TLS_DIR = "/etc/nginx/session-kit"


@bounded_deploy("Nginx load balancer", data_defaults=NGINX_DEFAULTS)
def install_nginx(cluster: Cluster) -> None:
    install_packages("Install nginx", ["nginx"])
    pair = []
    if cluster.vars["lb_tls"]:
        names = tls.subject_names(
            [
                *(
                    name
                    for lb in cluster.groups["lb"]
                    for name in (lb.data.get("ssh_hostname") or lb.name, private_ip(lb))
                ),
                *([cluster.vars["lb_vip"]] if cluster.vars["lb_vip"] else []),
            ]
        )
        certificate, key = tls.pair(ROOT, cluster.vars, names)
        pair = [
            files.directory(name="TLS directory", path=TLS_DIR, user="root", group="root", mode="755"),
            files.put(
                name="TLS certificate",
                src=str(certificate),
                dest=f"{TLS_DIR}/tls.crt",
                user="root",
                group="root",
                mode="644",
            ),
            files.put(name="TLS key", src=str(key), dest=f"{TLS_DIR}/tls.key", user="root", group="root", mode="600"),
        ]
    site = render(
        SITE,
        name="Render the session-kit site",
        mode="644",
        strategy=cluster.strategy.name,
        lb_method=cluster.lb_method,
        app_nodes=[{**node, "route": route_of(node["name"])} for node in cluster.nodes("app")],
        app_port=cluster.vars["app_port"],
        **cluster.values(NGINX_DEFAULTS),
    )
    enabled = files.link(name="Enable the site", path="/etc/nginx/sites-enabled/session-kit.conf", target=SITE)
    default = files.link(name="Disable Debian's default site", path="/etc/nginx/sites-enabled/default", present=False)
    changed = any_changed(site, enabled, default, *pair)
    server.shell(name="Check the configuration (nginx -t)", commands=["nginx -t"], _if=changed)
    systemd.service(name="Keep nginx running and enabled", service="nginx", running=True, enabled=True)
    systemd.service(name="Reload nginx", service="nginx", reloaded=True, _if=changed)
