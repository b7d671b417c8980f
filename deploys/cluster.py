"""What the deploys read from the inventory: the merged variables of a host (with defaults), the hosts of each role,
and the inventory's secrets. Validation runs here, before any operation is declared."""

from __future__ import annotations

from pathlib import Path

from pyinfra.api.exceptions import PyinfraError

from session_kit import secrets as kit_secrets
from session_kit.inventory import check, private_ip
from session_kit.strategies import STRATEGIES, Strategy, lb_method
from session_kit.validate import KitError

__all__ = ["Cluster", "ROOT", "private_ip", "template"]

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates"


def template(path: str) -> str:
    """A template by its target path: template('etc/redis/redis.conf') -> templates/etc/redis/redis.conf.j2."""
    return str(TEMPLATES / (path.lstrip("/") + ".j2"))


class Cluster:
    """The whole inventory as the deploys need it, checked."""

    def __init__(self, host, inventory):
        self.host = host
        try:
            self.vars, self.groups = check(host, inventory)
            self.secrets = kit_secrets.load(ROOT / self.vars["secrets_dir"], self.vars["inventory_name"])
        except KitError as error:
            raise PyinfraError(str(error)) from None
        self.strategy: Strategy = STRATEGIES[self.vars["session_strategy"]]
        self.lb_method = lb_method(self.vars)

    def values(self, defaults: dict) -> dict:
        """One component's variables (its block of session_kit/defaults.py), as merged for this host."""
        return {key: self.vars[key] for key in defaults}

    def has_role(self, role: str) -> bool:
        return self.host in self.groups[role]

    def nodes(self, role: str) -> list[dict[str, str]]:
        return [{"name": h.name, "ip": private_ip(h)} for h in self.groups[role]]

    def first_ip(self, role: str) -> str | None:
        nodes = self.nodes(role)
        return nodes[0]["ip"] if nodes else None
