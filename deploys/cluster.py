"""What the deploys read from the inventory: the merged variables of a host (with defaults), the hosts of each role,
and the inventory's secrets. Validation runs here, before any operation is declared."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pyinfra.api.exceptions import PyinfraError

from session_kit import secrets as kit_secrets
from session_kit.defaults import ALL_DEFAULTS
from session_kit.strategies import STRATEGIES, Strategy, lb_method
from session_kit.validate import KitError, check_data, check_groups

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates"
ROLES = ("lb", "app", "redis", "db")


def template(path: str) -> str:
    """A template by its target path: template('etc/redis/redis.conf') -> templates/etc/redis/redis.conf.j2."""
    return str(TEMPLATES / (path.lstrip("/") + ".j2"))


def variables(host) -> dict[str, Any]:
    """Every kit variable of a host: inventory values over the documented defaults, extra keys kept for checking."""
    data = dict(host.data.dict()) if hasattr(host.data, "dict") else {}
    merged = {key: host.data.get(key, default) for key, default in ALL_DEFAULTS.items()}
    return {**data, **merged, "inventory_name": host.data.get("inventory_name")}


def private_ip(host) -> str:
    return host.data.get("private_ip") or host.data.get("ssh_hostname") or host.name


def members(inventory, role: str) -> list:
    try:
        return list(inventory.get_group(role))
    except Exception:  # pyinfra raises NoGroupError for a group the inventory does not define
        return []


class Cluster:
    """The whole inventory as the deploys need it, checked."""

    def __init__(self, host, inventory):
        self.host = host
        self.vars = variables(host)
        self.groups = {role: members(inventory, role) for role in ROLES}
        try:
            check_data(self.vars, host.name)
            check_groups(self.vars["session_strategy"], {r: [h.name for h in hs] for r, hs in self.groups.items()})
        except KitError as error:
            raise PyinfraError(str(error)) from None
        self.strategy: Strategy = STRATEGIES[self.vars["session_strategy"]]
        self.lb_method = lb_method(self.vars)
        self.secrets = kit_secrets.load(ROOT / self.vars["secrets_dir"], self.vars["inventory_name"])

    def has_role(self, role: str) -> bool:
        return self.host in self.groups[role]

    def nodes(self, role: str) -> list[dict[str, str]]:
        return [{"name": h.name, "ip": private_ip(h)} for h in self.groups[role]]

    def first_ip(self, role: str) -> str | None:
        nodes = self.nodes(role)
        return nodes[0]["ip"] if nodes else None
