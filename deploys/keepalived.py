"""keepalived on the balancers: the floating address (lb_vip) that clients use, held by one lb host at a time.

VRRP over unicast between the lb hosts (version 2, so that it can be authenticated; the first 8 characters of the
inventory's vrrp_password secret), every host BACKUP with nopreempt so that the address never moves back on its
own, and a check on Nginx: a host whose Nginx stops accepting connections gives the address away. A host in lb
without lb_vip (or no longer in lb) has keepalived stopped. A changed configuration is reloaded (SIGHUP: the
holder keeps the address)."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api.exceptions import PyinfraError
from pyinfra.facts.server import Command
from pyinfra.operations import server, systemd
from pyinfra.operations.util import any_changed

from session_kit.defaults import NGINX_DEFAULTS

from .cluster import Cluster, bounded_deploy, install_packages, private_ip, render

CONF = "/etc/keepalived/keepalived.conf"
CHECK = "/etc/keepalived/session-kit-nginx-alive"
# VRRP's PASS authentication carries at most 8 characters.
PASS_LENGTH = 8
# The first lb host is the first to take the address when they all start together; the others follow in order.
TOP_PRIORITY = 150


def nginx_check_address(listen: str) -> tuple[str, str]:
    """(address, port) where the check reaches this host's Nginx: nginx_listen's, loopback for any address."""
    address, _, port = str(listen).rpartition(":")
    return (address if address and address != "0.0.0.0" else "127.0.0.1"), port


@bounded_deploy("keepalived: the balancers' floating address", data_defaults=NGINX_DEFAULTS)
def install_keepalived(cluster: Cluster) -> None:
    install_packages("Install keepalived", ["keepalived"])
    own_ip = private_ip(host)
    interface = (host.get_fact(Command, f"ip -o -4 addr show to {own_ip}/32 | awk '{{print $2}}'") or "").split()
    if not interface:
        raise PyinfraError(f"{host.name}: no network interface holds its private_ip {own_ip} (for lb_vip)")
    balancers = [node["ip"] for node in cluster.nodes("lb")]
    address, port = nginx_check_address(cluster.vars["nginx_listen"])
    check = render(
        CHECK, name="Render the Nginx check for keepalived", mode="755", owner="root:root", address=address, port=port
    )
    conf = render(
        CONF,
        name="Render keepalived.conf",
        mode="640",
        owner="root:root",
        host_name=host.name,
        vip=cluster.vars["lb_vip"],
        router_id=cluster.vars["lb_vrrp_router_id"],
        interface=interface[0],
        own_ip=own_ip,
        peers=[ip for ip in balancers if ip != own_ip],
        priority=TOP_PRIORITY - balancers.index(own_ip),
        password=cluster.secrets["vrrp_password"][:PASS_LENGTH],
        check=CHECK,
    )
    systemd.service(name="Keep keepalived running and enabled", service="keepalived", running=True, enabled=True)
    systemd.service(name="Reload keepalived", service="keepalived", reloaded=True, _if=any_changed(conf, check))


def retire_keepalived() -> None:
    """keepalived stopped and disabled where it no longer belongs (not a balancer, or no lb_vip): a host must not
    keep answering for a floating address the inventory no longer gives it."""
    enabled = (host.get_fact(Command, "systemctl is-enabled keepalived 2>/dev/null || true") or "").strip()
    if enabled == "enabled":
        server.shell(name="Stop keepalived (no floating address here)", commands=["systemctl disable --now keepalived"])
