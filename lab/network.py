"""The lab's network: one bridge in the root namespace, and per host a network namespace joined to it by a veth."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

from . import config
from .sh import LabError, run


def _links() -> list[dict]:
    return json.loads(run(["ip", "-j", "link", "show"]).stdout or "[]")


def link_exists(name: str) -> bool:
    return any(link["ifname"] == name for link in _links())


def own_links() -> list[str]:
    return [link["ifname"] for link in _links() if link["ifname"].startswith(config.PREFIX)]


def own_netns() -> list[str]:
    names = run(["ip", "netns", "list"]).stdout.split()
    return [name for name in names if name.startswith(config.PREFIX + "-")]


def check_subnet_free() -> None:
    """The lab's /24 must not overlap an address or route this machine already has (other than the lab's own)."""
    subnet = config.subnet()
    for entry in json.loads(run(["ip", "-j", "-4", "addr", "show"]).stdout or "[]"):
        if entry["ifname"] == config.BRIDGE:
            continue
        for addr in entry.get("addr_info", []):
            network = ipaddress.IPv4Interface(f"{addr['local']}/{addr['prefixlen']}").network
            if network.overlaps(subnet):
                raise LabError(f"address range {subnet} is already in use on {entry['ifname']} ({addr['local']}): "
                               f"set LAB_SUBNET to a free /24")
    for route in json.loads(run(["ip", "-j", "-4", "route", "show"]).stdout or "[]"):
        if route.get("dev") == config.BRIDGE or route["dst"] == "default":
            continue
        if ipaddress.IPv4Network(route["dst"], strict=False).overlaps(subnet):
            raise LabError(f"address range {subnet} overlaps the route {route['dst']} via {route.get('dev')}: "
                           f"set LAB_SUBNET to a free /24")


def ensure_bridge() -> bool:
    """Create the bridge with the lab's gateway address; True when it was created now."""
    created = False
    if not link_exists(config.BRIDGE):
        run(["ip", "link", "add", config.BRIDGE, "type", "bridge"])
        created = True
    address = f"{config.bridge_ip()}/{config.subnet().prefixlen}"
    if address.split("/")[0] not in run(["ip", "-4", "addr", "show", "dev", config.BRIDGE]).stdout:
        run(["ip", "addr", "add", address, "dev", config.BRIDGE])
    run(["ip", "link", "set", config.BRIDGE, "up"])
    return created


def remove_bridge() -> None:
    if link_exists(config.BRIDGE):
        run(["ip", "link", "del", config.BRIDGE])


def add_host(name: str, ip: ipaddress.IPv4Address) -> None:
    ns, veth = config.netns(name), config.netns(name)
    remove_host(name)
    run(["ip", "netns", "add", ns])
    run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns])
    run(["ip", "link", "set", veth, "master", config.BRIDGE, "up"])
    run(["ip", "-n", ns, "addr", "add", f"{ip}/{config.subnet().prefixlen}", "dev", "eth0"])
    run(["ip", "-n", ns, "link", "set", "eth0", "up"])
    run(["ip", "-n", ns, "link", "set", "lo", "up"])
    # No default route: the hosts reach each other, the machine and the apt proxy on the bridge, nothing else.


def remove_host(name: str) -> None:
    ns = config.netns(name)
    if Path(f"/run/netns/{ns}").exists():
        run(["ip", "netns", "del", ns])
    if link_exists(ns):
        # Deleting the namespace takes its veth end with it, and the kernel removes the peer shortly after:
        # the link may be gone by the time we delete it, which is fine.
        result = run(["ip", "link", "del", ns], check=False)
        if result.returncode != 0 and link_exists(ns):
            raise LabError(f"ip link del {ns}: {result.stderr.strip()}")
