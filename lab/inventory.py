"""The running lab as pyinfra groups: which lab host plays which role, and how to reach it over SSH.

In the lab's own shape, lab1 holds the balancer and both stores and root logs in. In the servers shape
(`python -m lab up --servers`), the groups are inventories/example.py's, read from that file: the same groups, the
same number of hosts in each, the same SSH user and `_sudo`, and every other value of the example's hosts kept,
except what only the lab can know (addresses, the key, the known hosts, the inventory's name). So what the
end-to-end suite applies is the example as written, on the lab's hosts, and the two cannot drift apart.
"""

from __future__ import annotations

import json
import runpy
from pathlib import Path

from . import config
from .sh import LabError

ROLES = ("lb", "app", "redis", "db")
EXAMPLE = Path(__file__).resolve().parent.parent / "inventories" / "example.py"
# What the lab sets on an example host: where it is and how to trust it (the rest is the example's own).
LAB_OWNED = ("ssh_hostname", "private_ip", "ssh_key", "ssh_known_hosts_file", "inventory_name")


def lab_hosts() -> list[dict]:
    path = config.paths().inventory
    if not path.exists():
        raise LabError(f"the lab is not up ({path} is missing): run `python -m lab up` first")
    return json.loads(path.read_text())["hosts"]


def roles(names: list[str], redis_hosts: int = 1, lb_hosts: int = 1) -> dict[str, list[str]]:
    """lab1 is the load balancer and holds Redis and PostgreSQL; the others are app nodes. With fewer than three
    hosts every host is an app node too. redis_hosts > 1: Redis on that many hosts from lab1 on (the others app
    nodes as well), for redis_mode=sentinel. lb_hosts > 1: that many balancers from lab1 on, sharing the lab's
    floating address."""
    app = names[1:] if len(names) >= 3 else names
    return {"lb": names[: max(1, lb_hosts)], "app": app, "redis": names[: max(1, redis_hosts)], "db": names[:1]}


def example_groups(path: Path = EXAMPLE) -> dict[str, list[tuple[str, dict]]]:
    """inventories/example.py's groups as pyinfra reads them: role -> [(host name, host data)]."""
    namespace = runpy.run_path(str(path))
    groups = {}
    for role in ROLES:
        entries = namespace.get(role, [])
        groups[role] = [entry if isinstance(entry, tuple) else (entry, {}) for entry in entries]
    return groups


def example_hosts(path: Path = EXAMPLE) -> list[str]:
    """The example's distinct hosts, in the order the groups first name them."""
    return list(dict.fromkeys(name for entries in example_groups(path).values() for name, _ in entries))


def lab_data(described: dict, host: dict, inventory_name: str) -> dict:
    """What every lab host needs in the inventory: how to reach and trust it, and the lab's own allowances."""
    return {
        "ssh_hostname": host["ip"],
        "ssh_user": described.get("user", "root"),
        "ssh_key": described["ssh_key"],
        "ssh_known_hosts_file": described["known_hosts"],
        "ssh_strict_host_key_checking": "yes",
        "ssh_allow_agent": False,
        "ssh_look_for_keys": False,
        "private_ip": host["ip"],
        "inventory_name": inventory_name,
        "nginx_unlimited_sources": config.load_generator_sources(),
        # this machine deploys, drills and checks health on the app nodes directly
        "firewall_allow_from": [f"{config.bridge_ip()}/32"],
    }


def groups(inventory_name: str = "lab", redis_hosts: int = 1, lb_hosts: int = 1) -> dict[str, list[tuple[str, dict]]]:
    hosts = lab_hosts()
    described = json.loads(config.paths().inventory.read_text())
    if described.get("shape", "lab") == "servers":
        return servers_groups(described, hosts, inventory_name)
    floating = {"lb_vip": str(config.floating_ip())} if lb_hosts > 1 else {}
    by_name = {
        host["name"]: (host["name"], {**lab_data(described, host, inventory_name), **floating}) for host in hosts
    }
    return {
        role: [by_name[name] for name in names]
        for role, names in roles([h["name"] for h in hosts], redis_hosts, lb_hosts).items()
    }


def servers_groups(
    described: dict, hosts: list[dict], inventory_name: str, example: Path = EXAMPLE
) -> dict[str, list[tuple[str, dict]]]:
    """The example's groups on the lab's hosts: its n-th distinct host is lab host n, with the example's data for
    it, and the lab's values for what only the lab knows (LAB_OWNED, and the lab's allowances)."""
    wanted = example_hosts(example)
    if len(hosts) != len(wanted):
        raise LabError(
            f"the lab has {len(hosts)} host(s), {example.name} names {len(wanted)}: python -m lab up --servers"
        )
    lab_host = dict(zip(wanted, hosts))
    result = {}
    for role, entries in example_groups(example).items():
        result[role] = []
        for name, data in entries:
            host = lab_host[name]
            own = lab_data(described, host, inventory_name)
            merged = {**data, **{k: v for k, v in own.items() if k in LAB_OWNED or k not in data}}
            result[role].append((host["name"], merged))
    return result
