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
                raise LabError(
                    f"address range {subnet} is already in use on {entry['ifname']} ({addr['local']}): "
                    f"set LAB_SUBNET to a free /24"
                )
    for route in json.loads(run(["ip", "-j", "-4", "route", "show"]).stdout or "[]"):
        if route.get("dev") == config.BRIDGE or route["dst"] == "default":
            continue
        if ipaddress.IPv4Network(route["dst"], strict=False).overlaps(subnet):
            raise LabError(
                f"address range {subnet} overlaps the route {route['dst']} via {route.get('dev')}: "
                f"set LAB_SUBNET to a free /24"
            )


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
    # The same MAC address for the same IP, whenever a host is made again: the machine and the other hosts keep a
    # host's address in their neighbour caches, and with a new MAC each time, a remade host (grow, scale-out) was
    # unreachable until those entries went stale (30-45 s of SSH connect timeouts in `lab up`).
    run(["ip", "-n", ns, "link", "set", "eth0", "address", host_mac(ip)])
    run(["ip", "-n", ns, "addr", "add", f"{ip}/{config.subnet().prefixlen}", "dev", "eth0"])
    run(["ip", "-n", ns, "link", "set", "eth0", "up"])
    run(["ip", "-n", ns, "link", "set", "lo", "up"])
    # No default route: the hosts reach each other, the machine and the apt proxy on the bridge, nothing else.


def set_link(name: str, up: bool) -> None:
    """The host's cable: its veth's end on the bridge down (the host sees its link lose carrier, its peers get no
    answer at all, as from a dead host or a pulled cable) or up again."""
    veth = config.netns(name)
    if not link_exists(veth):
        raise LabError(f"{name}: no link {veth} (is the host up?)")
    run(["ip", "link", "set", veth, "up" if up else "down"])


def host_mac(ip: ipaddress.IPv4Address) -> str:
    """A locally administered unicast MAC address made of the host's IPv4 address: 02:00:a:b:c:d."""
    return ":".join(f"{byte:02x}" for byte in (0x02, 0x00, *ipaddress.IPv4Address(ip).packed))


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


def client_networks(count: int) -> list[ipaddress.IPv4Network]:
    """The /24s next to the lab's own (10.213.1.0/24, 10.213.2.0/24, ... for the default subnet)."""
    if count > config.CLIENT_NETWORKS:
        raise LabError(f"at most {config.CLIENT_NETWORKS} client networks (lab/config.py: CLIENT_NETWORKS)")
    return [ipaddress.IPv4Network(net) for net in config.load_generator_sources()[1 : count + 1]]


def client_addresses(count: int) -> list[str]:
    """`count` source addresses for a load generator on this machine, each in its own /24, as clients of many
    networks look to Nginx's ip_hash (which hashes the first three octets only). Each lives on the lab's bridge, and
    every host routes its /24 back through the bridge's address; they go away with the bridge (`down`). Only ranges
    this machine does not use otherwise are taken."""
    if not link_exists(config.BRIDGE):
        raise LabError("the lab is not up: no bridge for client addresses")
    taken = []
    for entry in json.loads(run(["ip", "-j", "-4", "addr", "show"]).stdout or "[]"):
        for addr in entry.get("addr_info", []):
            taken.append((entry["ifname"], ipaddress.IPv4Interface(f"{addr['local']}/{addr['prefixlen']}").network))
    addresses = []
    for network in client_networks(count):
        address = network.network_address + 1
        mine = any(ifname == config.BRIDGE and net == network for ifname, net in taken)
        if not mine:
            clash = [ifname for ifname, net in taken if net.overlaps(network)]
            if clash:
                raise LabError(f"client range {network} is already in use on {clash[0]}: set LAB_SUBNET elsewhere")
            run(["ip", "addr", "add", f"{address}/24", "dev", config.BRIDGE])
        for ns in own_netns():
            run(["ip", "-n", ns, "route", "replace", str(network), "via", str(config.bridge_ip())])
        addresses.append(str(address))
    return addresses
