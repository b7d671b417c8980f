"""Checks on the inventory, run before any host is touched: a wrong, missing, unknown or mistyped variable, a value
that differs between hosts where it must agree, or a strategy whose group is empty stops the run with one line that
names it. What each variable accepts is in session_kit/variables.py; each variable's type and default in
session_kit/defaults.py."""

from __future__ import annotations

import difflib
import functools
from collections.abc import Mapping
from typing import Any

from .defaults import VARIABLES
from .strategies import ONE_WORKER, STRATEGIES
from .variables import NAME, Address, listen_parts


class KitError(Exception):
    """An inventory mistake; str() is one line that starts with what is wrong."""


# -- which variables exist ---------------------------------------------------------------------------------------


@functools.cache
def pyinfra_keys() -> tuple[frozenset[str], tuple[str, ...]]:
    """What pyinfra itself reads from host data, from its own code (so it stays right across versions): the
    operations' global arguments (_sudo, _su_user, _timeout, ...) and every installed connector's data keys
    (ssh_hostname, ssh_user, ...). A connector that declares no keys (chroot sets chroot_directory) gets its
    prefix: any `<connector>_` key."""
    from pyinfra.api.arguments import all_global_arguments
    from pyinfra.api.connectors import get_all_connectors

    keys = {name for name, _ in all_global_arguments() if name.startswith("_")}
    prefixes = []
    for name, connector in get_all_connectors().items():
        declared = getattr(connector, "data_meta", None) or {}
        keys.update(declared)
        if not declared:
            prefixes.append(f"{name}_")
    return frozenset(keys), tuple(prefixes)


def known_variables() -> frozenset[str]:
    return frozenset(VARIABLES) | {"inventory_name"} | pyinfra_keys()[0]


def is_known(key: str) -> bool:
    return key in known_variables() or key.startswith(pyinfra_keys()[1])


def _where(host_name: str) -> str:
    return f" (host {host_name})" if host_name else ""


def check_data(data: Mapping[str, Any], host_name: str = "") -> None:
    """The variables of one host (group data, host data and --data overrides merged)."""
    where = _where(host_name)
    for key in data:
        if not is_known(key):
            close = difflib.get_close_matches(key, sorted(known_variables()), n=1, cutoff=0.75)
            raise KitError(f"{key}: unknown variable{where}" + (f"; did you mean {close[0]}?" if close else ""))
    for key, var in VARIABLES.items():
        problem = var.type.problem(data.get(key, var.default))
        if problem:
            raise KitError(f"{key}: {problem}{where}")
    strategy, method = data.get("session_strategy", "redis"), data.get("lb_method")
    if strategy == "sticky" and method == "round_robin":
        raise KitError(
            "lb_method: round_robin cannot serve session_strategy=sticky (a session lives on one node); "
            "use ip_hash or hash_cookie"
        )
    workers = data.get("app_workers", VARIABLES["app_workers"].default)
    if strategy in ONE_WORKER and workers not in (1, "auto"):
        raise KitError(
            f"app_workers: session_strategy={strategy} keeps its sessions in one process's memory, where "
            f"another worker of the node would not see them: 1 or auto (which is 1 for it), got "
            f"{workers!r}{where}"
        )
    if data.get("lb_tls", VARIABLES["lb_tls"].default):
        certificate, key = data.get("lb_tls_certificate"), data.get("lb_tls_key")
        if (certificate is None) != (key is None):
            given, missing = (
                ("lb_tls_certificate", "lb_tls_key") if key is None else ("lb_tls_key", "lb_tls_certificate")
            )
            raise KitError(
                f"{missing}: not set, but {given} is{where}; set both (a PEM certificate chain and its "
                f"key) or neither (the kit makes a self-signed pair per inventory)"
            )
        plain = listen_parts(data.get("nginx_listen", VARIABLES["nginx_listen"].default))
        tls = listen_parts(data.get("nginx_listen_tls", VARIABLES["nginx_listen_tls"].default))
        if plain[1] == tls[1] and "*" in (plain[0], tls[0]) or plain == tls:
            raise KitError(
                f"nginx_listen_tls: {data.get('nginx_listen_tls')!r} takes the port of nginx_listen "
                f"({data.get('nginx_listen', VARIABLES['nginx_listen'].default)!r}), which answers plain "
                f"HTTP with a redirect to HTTPS{where}; give each its own port"
            )
    if not isinstance(data.get("inventory_name"), str) or not NAME.fullmatch(data.get("inventory_name") or ""):
        raise KitError(
            f"inventory_name: every inventory sets it (it names the secrets file), got "
            f"{data.get('inventory_name')!r}{where}"
        )
    if data.get("private_ip") is None:
        fallback = data.get("ssh_hostname") or host_name
        if fallback and not Address().accepts(fallback):
            raise KitError(
                f"private_ip: not set, and {fallback!r} (the host's ssh_hostname) is not an IP address "
                f"to bind services to{where}; set the host's private address"
            )


def check_same(values: Mapping[str, Mapping[str, Any]]) -> None:
    """Variables marked `same` in session_kit/defaults.py (ports, strategy, ...) hold one value on every host:
    values maps each host's name to its merged variables."""
    names = [name for name, var in VARIABLES.items() if var.same] + ["inventory_name"]
    hosts = list(values)
    for name in names:
        default = VARIABLES[name].default if name in VARIABLES else None
        first = hosts[0] if hosts else None
        for other in hosts[1:]:
            a, b = values[first].get(name, default), values[other].get(name, default)
            if a != b or type(a) is not type(b):
                raise KitError(f"{name}: must be the same on every host, but {first} has {a!r} and {other} has {b!r}")


def check_groups(
    strategy: str, groups: Mapping[str, list[str]], redis_mode: str = "standalone", lb_vip: str | None = None
) -> None:
    """The groups the strategy needs hold hosts; there are at least two app nodes; Sentinel has a replica to
    promote; one balancer, or two and more sharing a floating address (lb_vip)."""
    for group in STRATEGIES[strategy].needs:
        if not groups.get(group):
            raise KitError(f"{group}: group is empty, but session_strategy={strategy} needs it")
    if redis_mode == "sentinel" and "redis" in STRATEGIES[strategy].needs and len(groups["redis"]) < 2:
        raise KitError(
            f"redis: redis_mode=sentinel needs two or more hosts (a primary and a replica to promote), "
            f"has {len(groups['redis'])}"
        )
    if len(groups.get("app", [])) < 2:
        raise KitError(f"app: needs two or more hosts to share sessions across, has {len(groups.get('app', []))}")
    balancers = len(groups.get("lb", []))
    if balancers == 0:
        raise KitError("lb: group is empty, but every strategy needs a load balancer")
    if balancers == 1 and lb_vip:
        raise KitError("lb_vip: needs two or more lb hosts to move between (one has nothing to fail over to)")
    if balancers > 1 and not lb_vip:
        raise KitError(
            f"lb: {balancers} hosts need lb_vip, the floating address clients use (keepalived moves it between them)"
        )
