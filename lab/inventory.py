"""The running lab as pyinfra groups: which lab host plays which role, and how to reach it over SSH."""

from __future__ import annotations

import json

from . import config
from .sh import LabError


def lab_hosts() -> list[dict]:
    path = config.paths().inventory
    if not path.exists():
        raise LabError(f"the lab is not up ({path} is missing): run `python -m lab up` first")
    return json.loads(path.read_text())["hosts"]


def roles(names: list[str]) -> dict[str, list[str]]:
    """lab1 is the load balancer and holds Redis and PostgreSQL; the others are app nodes. With fewer than three
    hosts every host is an app node too."""
    app = names[1:] if len(names) >= 3 else names
    return {"lb": names[:1], "app": app, "redis": names[:1], "db": names[:1]}


def groups(inventory_name: str = "lab") -> dict[str, list[tuple[str, dict]]]:
    described = json.loads(config.paths().inventory.read_text()) if config.paths().inventory.exists() else None
    hosts = lab_hosts()
    by_name = {
        host["name"]: (host["name"], {
            "ssh_hostname": host["ip"], "ssh_user": "root", "ssh_key": described["ssh_key"],
            "ssh_known_hosts_file": described["known_hosts"], "ssh_strict_host_key_checking": "yes",
            "ssh_allow_agent": False, "ssh_look_for_keys": False,
            "private_ip": host["ip"], "inventory_name": inventory_name,
            "nginx_unlimited_sources": config.load_generator_sources(),
            # this machine deploys, drills and checks health on the app nodes directly
            "firewall_allow_from": [f"{config.bridge_ip()}/32"],
        }) for host in hosts}
    return {role: [by_name[name] for name in names] for role, names in roles([h["name"] for h in hosts]).items()}
