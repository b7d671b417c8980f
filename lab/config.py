"""Where the lab keeps things and what it calls them. Every name it creates starts with PREFIX, so that `up` and
`down` recognise their own leftovers (and only those) after a run that was killed."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from pathlib import Path

PREFIX = "skl"  # session-kit lab: netns skl-lab1, veth skl-lab1, bridge sklbr0, cgroups skl/lab1
BRIDGE = f"{PREFIX}br0"
# Debian releases the lab can make hosts of (python -m lab up --release), the first the default. The kit deploys onto
# the releases session_kit/platforms.py lists; a host of another is for proving that it is refused.
RELEASES = ("bookworm", "trixie")
SUITE = RELEASES[0]
DEFAULT_HOSTS = 4  # lab1: load balancer + Redis + PostgreSQL; lab2-lab4: app nodes (see inventories/lab.py)
MAX_HOSTS = 40
PROXY_PORT = 3142 + 10_000  # apt-cacher-ng's port + 10000: not the packaged instance's
# How the lab makes its hosts: "lab" (root logs in with the lab's key; lab1 holds the balancer and both stores) or
# "servers" (as servers come: root login over SSH refused, a `deploy` user with sudo and the key; a host per role,
# in the shape of inventories/example.py: lab/inventory.py).
SHAPES = ("lab", "servers")
SERVER_USER = "deploy"
BASE_PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "iproute2",
    "ca-certificates",
    "python3",
    "curl",
    "procps",
    "netbase",
    "sudo",
    "gnupg",
)


def _below(parent: str, name: str) -> property:
    """One of the lab's paths: `name` below another of them (`parent`, an attribute of Paths)."""
    return property(lambda paths: getattr(paths, parent) / name)


@dataclasses.dataclass(frozen=True)
class Paths:
    state: Path  # the running lab: hosts, keys, proxy, inventory data
    cache: Path  # the debootstrap image, kept across labs (down --purge drops it)

    hosts = _below("state", "hosts")
    ssh = _below("state", "ssh")
    key = _below("ssh", "id_ed25519")
    known_hosts = _below("ssh", "known_hosts")
    ssh_config = _below("ssh", "config")
    proxy = _below("state", "proxy")
    inventory = _below("state", "hosts.json")

    @property
    def base(self) -> Path:
        return self.base_of(SUITE)

    def base_of(self, release: str) -> Path:
        """The cached image of one release."""
        return self.cache / f"base-{release}"


def paths() -> Paths:
    return Paths(
        state=Path(os.environ.get("LAB_DIR", "/var/lib/session-kit-lab")),
        cache=Path(os.environ.get("LAB_CACHE", "/var/cache/session-kit-lab")),
    )


def subnet() -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(os.environ.get("LAB_SUBNET", "10.213.0.0/24"))


def bridge_ip() -> ipaddress.IPv4Address:
    return subnet().network_address + 1


CLIENT_NETWORKS = 16  # /24s a load generator on this machine may send from (lab/network.py: client_addresses)


def load_generator_sources() -> list[str]:
    """Where this machine's load generators, drills and tests send from: the bridge's address and the client /24s
    next to the lab's own (10.213.1.0/24 ... for the default subnet). The lab's balancer leaves them unlimited
    (nginx_unlimited_sources): a drill's 200 logins must not be mistaken for a password guesser."""
    base = int(subnet().network_address)
    return [
        f"{bridge_ip()}/32",
        *(str(ipaddress.IPv4Network((base + k * 256, 24))) for k in range(1, CLIENT_NETWORKS + 1)),
    ]


def floating_ip() -> ipaddress.IPv4Address:
    """The HA lab's floating address (lb_vip): next to the hosts' (lab1 is .11), owned by none of them."""
    return subnet().network_address + 10


def host_name(index: int) -> str:
    return f"lab{index}"


def host_ip(index: int) -> ipaddress.IPv4Address:
    return subnet().network_address + 10 + index


def netns(name: str) -> str:
    return f"{PREFIX}-{name}"
