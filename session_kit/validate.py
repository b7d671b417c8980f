"""Checks on the inventory, run before any host is touched: a wrong or missing variable, or a strategy whose group
is empty, stops the run with one line that names it."""

from __future__ import annotations

import difflib
import ipaddress
import re
from typing import Any, Mapping

from .defaults import ALL_DEFAULTS
from .strategies import LB_METHODS, STRATEGIES

_PREFIXES = ("nginx_", "redis_", "postgres_", "app_")
_INTS = {"nginx_keepalive": (1, 10000), "nginx_max_fails": (0, 100), "redis_port": (1, 65535),
         "postgres_port": (1, 65535), "postgres_max_connections": (10, 10000), "postgres_version": (15, 15),
         "app_port": (1, 65535), "app_session_ttl": (1, 30 * 86400), "app_database_pool_size": (1, 100)}
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class KitError(Exception):
    """An inventory mistake; str() is one line that starts with what is wrong."""


def check_data(data: Mapping[str, Any], host_name: str = "") -> None:
    """The variables of one host (group data, host data and --data overrides merged)."""
    where = f" (host {host_name})" if host_name else ""
    for key in data:
        if key.startswith(_PREFIXES) and key not in ALL_DEFAULTS:
            close = difflib.get_close_matches(key, ALL_DEFAULTS, n=1)
            raise KitError(f"{key}: unknown variable{where}" + (f"; did you mean {close[0]}?" if close else ""))
    strategy = data.get("session_strategy")
    if strategy not in STRATEGIES:
        raise KitError(f"session_strategy: must be one of {', '.join(STRATEGIES)}, got {strategy!r}{where}")
    method = data.get("lb_method")
    if method is not None and method not in LB_METHODS:
        raise KitError(f"lb_method: must be one of {', '.join(LB_METHODS)}, got {method!r}{where}")
    if strategy == "sticky" and method == "round_robin":
        raise KitError("lb_method: round_robin cannot serve session_strategy=sticky (a session lives on one node); "
                       "use ip_hash or hash_cookie")
    for key, (low, high) in _INTS.items():
        value = data.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise KitError(f"{key}: must be an integer from {low} to {high}, got {value!r}{where}")
    for key in ("postgres_database", "postgres_user", "app_user"):
        if not isinstance(data.get(key), str) or not _NAME.fullmatch(data.get(key).replace("-", "_")):
            raise KitError(f"{key}: must be a simple name (letters, digits, _), got {data.get(key)!r}{where}")
    if not isinstance(data.get("inventory_name"), str) or not _NAME.fullmatch(data.get("inventory_name") or ""):
        raise KitError(f"inventory_name: every inventory sets it (it names the secrets file), got "
                       f"{data.get('inventory_name')!r}{where}")
    private = data.get("private_ip") or data.get("ssh_hostname")
    if private:
        try:
            address = ipaddress.ip_address(private)
        except ValueError:
            address = None
        if address is not None and address.is_unspecified:
            raise KitError(f"private_ip: services never bind to {private}{where}; give the host's private address")


def check_groups(strategy: str, groups: Mapping[str, list[str]]) -> None:
    """The groups the strategy needs hold hosts; there are at least two app nodes."""
    for group in STRATEGIES[strategy].needs:
        if not groups.get(group):
            raise KitError(f"{group}: group is empty, but session_strategy={strategy} needs it")
    if len(groups.get("app", [])) < 2:
        raise KitError(f"app: needs two or more hosts to share sessions across, has {len(groups.get('app', []))}")
    if len(groups.get("lb", [])) != 1:
        raise KitError(f"lb: needs exactly one host, has {len(groups.get('lb', []))}")
