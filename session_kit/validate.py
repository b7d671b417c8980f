"""Checks on the inventory, run before any host is touched: a wrong, missing, unknown or mistyped variable, a value
that differs between hosts where it must agree, or a strategy whose group is empty stops the run with one line that
names it.

The types below are what each variable accepts (session_kit/defaults.py gives every variable its type): each checks
a value as its service would read it, so a mistake fails here and not halfway through a deploy."""

from __future__ import annotations

import difflib
import functools
import ipaddress
import pathlib
import re
from collections.abc import Mapping
from typing import Any

from .strategies import STRATEGIES

_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class KitError(Exception):
    """An inventory mistake; str() is one line that starts with what is wrong."""


# -- what a variable accepts -------------------------------------------------------------------------------------


class Type:
    """A variable's type: `what` says what it accepts; accepts(value) checks a value as its service would."""

    what = "a value"

    def accepts(self, value: Any) -> bool:
        raise NotImplementedError

    def problem(self, value: Any) -> str | None:
        """None when the value is right, else what is wrong: 'must be ..., got ...'."""
        return None if self.accepts(value) else f"must be {self.what}, got {value!r}"


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class Int(Type):
    def __init__(self, low: int, high: int):
        self.low, self.high = low, high
        self.what = f"an integer from {low} to {high}" if low != high else f"the integer {low}"

    def accepts(self, value: Any) -> bool:
        return _integer(value) and self.low <= value <= self.high


class Port(Int):
    def __init__(self):
        super().__init__(1, 65535)


class Bool(Type):
    what = "True or False"

    def accepts(self, value: Any) -> bool:
        return isinstance(value, bool)

    def problem(self, value: Any) -> str | None:
        problem = super().problem(value)
        if problem and isinstance(value, str):
            problem += " (a string, and any non-empty string is true: write True or False without quotes)"
        return problem


class Choice(Type):
    def __init__(self, *options: str, optional: bool = False):
        self.options, self.optional = options, optional
        self.what = "one of " + ", ".join(options) + (" (or None)" if optional else "")

    def accepts(self, value: Any) -> bool:
        return (value is None and self.optional) or (isinstance(value, str) and value in self.options)


class Name(Type):
    """A PostgreSQL identifier that needs no quoting, or (dash=True) a Linux user name."""

    def __init__(self, dash: bool = False):
        self.pattern = re.compile(r"[a-z_][a-z0-9_-]{0,31}" if dash else r"[a-z_][a-z0-9_]{0,62}")
        self.what = "a simple name (lowercase letters, digits, _" + (", -)" if dash else ")")

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str) and bool(self.pattern.fullmatch(value))


class Path(Type):
    """A path written into configuration files and units: no spaces, quotes, `%` or `$` that they would read."""

    _SAFE = re.compile(r"[A-Za-z0-9_.+/-]+")

    def __init__(self, absolute: bool = False):
        self.absolute = absolute
        self.what = ("an absolute path" if absolute else "a path") + " of letters, digits and _.+-/"

    def accepts(self, value: Any) -> bool:
        return (
            isinstance(value, str)
            and bool(self._SAFE.fullmatch(value))
            and (value.startswith("/") or not self.absolute)
            and ".." not in value.split("/")
        )


def _ip(value: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value) if isinstance(value, str) else None
    except ValueError:
        return None


class Address(Type):
    """An IPv4 address a service can bind to and peers can reach (written bare into URLs and Nginx's upstream):
    not 0.0.0.0, not multicast."""

    what = "an IPv4 address (not 0.0.0.0)"

    def __init__(self, optional: bool = False):
        self.optional = optional

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.optional
        address = _ip(value)
        return isinstance(address, ipaddress.IPv4Address) and not address.is_unspecified and not address.is_multicast


class Listen(Type):
    """Nginx's `listen`: PORT, ADDRESS:PORT, *:PORT or [IPV6]:PORT."""

    what = "PORT or ADDRESS:PORT (80, 0.0.0.0:80, 10.0.0.5:8080, [::]:80)"

    def accepts(self, value: Any) -> bool:
        if _integer(value):
            return 1 <= value <= 65535
        if not isinstance(value, str):
            return False
        address, colon, port = value.rpartition(":")
        if not colon:
            address, port = "*", value
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            return False
        if address.startswith("[") and address.endswith("]"):
            return isinstance(_ip(address[1:-1]), ipaddress.IPv6Address)
        return address == "*" or isinstance(_ip(address), ipaddress.IPv4Address)


class Duration(Type):
    """Nginx's time syntax: 30s, 500ms, 1m30s, 1h (units y M w d h m s ms, largest first; a bare number is seconds).

    high: the largest value in seconds; seconds_only: the directive takes whole seconds (no ms)."""

    _UNITS = {"y": 365 * 86400, "M": 30 * 86400, "w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0.001}
    _PART = re.compile(r"(\d+)(ms|[yMwdhms])?")

    def __init__(self, high: float, seconds_only: bool = False):
        self.high, self.seconds_only = high, seconds_only
        self.what = f"an Nginx time from 1s to {high}s (e.g. 5s, 1m30s{'' if seconds_only else ', 500ms'})"

    def seconds(self, value: Any) -> float | None:
        if _integer(value):
            return value
        if not isinstance(value, str) or not value.strip():
            return None
        order, total, rest = list(self._UNITS), 0.0, value.strip()
        last = -1
        while rest:
            match = self._PART.match(rest)
            if not match:
                return None
            unit = match.group(2) or "s"
            if match.group(2) is None and match.end() != len(rest):
                return None  # a bare number only at the end
            if order.index(unit) <= last or (unit == "ms" and self.seconds_only):
                return None  # Nginx wants the largest unit first, each once
            last = order.index(unit)
            total += int(match.group(1)) * self._UNITS[unit]
            rest = rest[match.end() :]
        return total

    def accepts(self, value: Any) -> bool:
        seconds = self.seconds(value)
        return seconds is not None and (1 if self.seconds_only else 0.001) <= seconds <= self.high


class Size(Type):
    """A Redis memory size: bytes, or a number with b, k, kb, m, mb, g, gb (any case); 0: no limit."""

    what = "a size in bytes or with a unit (256mb, 1gb; 0 for no limit)"
    _SIZE = re.compile(r"\d+(?:[kmg]b?|b)?", re.IGNORECASE)

    def accepts(self, value: Any) -> bool:
        return (_integer(value) and value >= 0) or (isinstance(value, str) and bool(self._SIZE.fullmatch(value)))


class RedisSave(Type):
    """Redis' `save`: pairs "SECONDS CHANGES" (after SECONDS, snapshot if at least CHANGES keys changed); "" for no
    snapshots."""

    what = 'pairs of "SECONDS CHANGES" ("300 10 60 10000"), or "" for no snapshots'
    _SAVE = re.compile(r"(?:[1-9]\d* \d+)(?: [1-9]\d* \d+)*")

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str) and (value == "" or bool(self._SAVE.fullmatch(value)))


class Rate(Type):
    """Nginx's limit_req rate: N r/s or N r/m (whole requests, at least 1)."""

    what = "a rate such as 10r/s or 600r/m"
    _RATE = re.compile(r"[1-9]\d{0,6}r/[sm]")

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str) and bool(self._RATE.fullmatch(value))


class Networks(Type):
    """A list of IPv4/IPv6 addresses or networks (10.0.0.5, 10.0.1.0/24), written into Nginx's and the firewall's
    rules as they are."""

    def __init__(self, ipv4: bool = False):
        self.ipv4 = ipv4
        self.what = f"a list of {'IPv4 ' if ipv4 else ''}addresses or networks (['10.0.0.5', '10.0.1.0/24'])"

    def accepts(self, value: Any) -> bool:
        return isinstance(value, (list, tuple)) and all(self._network(item) for item in value)

    def _network(self, item: Any) -> bool:
        try:
            network = ipaddress.ip_network(item, strict=True) if isinstance(item, str) else None
        except ValueError:
            return False
        return network is not None and (network.version == 4 or not self.ipv4)


class Workers(Type):
    """The app's processes per node (the app's WORKERS): an integer from 1 to 64, or "auto": the node's cores."""

    what = 'an integer from 1 to 64, or "auto" (the node\'s cores)'

    def accepts(self, value: Any) -> bool:
        return value == "auto" or (_integer(value) and 1 <= value <= 64)


class ControllerFile(Type):
    """A file on the controller (the machine that deploys), read by the deploy and never written into a host's
    configuration: any path, relative ones under the kit's directory; optional: None (unset) too."""

    what = "the path of a readable file on the controller (or None)"

    def __init__(self, optional: bool = False):
        self.optional = optional

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.optional
        return isinstance(value, str) and bool(value.strip()) and _readable(controller_path(value))


def controller_path(value: str) -> pathlib.Path:
    """A controller-side path as the kit reads it: relative paths are under the kit's directory."""
    path = pathlib.Path(value).expanduser()
    return path if path.is_absolute() else pathlib.Path(__file__).resolve().parent.parent / path


def _readable(path: pathlib.Path) -> bool:
    try:
        with path.open("rb"):
            return path.is_file()
    except OSError:
        return False


def _listen_parts(value: Any) -> tuple[str, int]:
    """nginx_listen's address ("*" for every address) and port, from a value Listen accepts."""
    address, colon, port = str(value).rpartition(":")
    return (address if colon and address not in ("", "0.0.0.0", "[::]") else "*"), int(port)


# The strategies whose sessions live in one process's memory: one worker per node (the app refuses more).
ONE_WORKER = ("sticky", "replication")


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
    from .defaults import VARIABLES

    return frozenset(VARIABLES) | {"inventory_name"} | pyinfra_keys()[0]


def is_known(key: str) -> bool:
    return key in known_variables() or key.startswith(pyinfra_keys()[1])


def _where(host_name: str) -> str:
    return f" (host {host_name})" if host_name else ""


def check_data(data: Mapping[str, Any], host_name: str = "") -> None:
    """The variables of one host (group data, host data and --data overrides merged)."""
    from .defaults import VARIABLES

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
        plain = _listen_parts(data.get("nginx_listen", VARIABLES["nginx_listen"].default))
        tls = _listen_parts(data.get("nginx_listen_tls", VARIABLES["nginx_listen_tls"].default))
        if plain[1] == tls[1] and "*" in (plain[0], tls[0]) or plain == tls:
            raise KitError(
                f"nginx_listen_tls: {data.get('nginx_listen_tls')!r} takes the port of nginx_listen "
                f"({data.get('nginx_listen', VARIABLES['nginx_listen'].default)!r}), which answers plain "
                f"HTTP with a redirect to HTTPS{where}; give each its own port"
            )
    if not isinstance(data.get("inventory_name"), str) or not _NAME.fullmatch(data.get("inventory_name") or ""):
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
    from .defaults import VARIABLES

    names = [name for name, var in VARIABLES.items() if var.same] + ["inventory_name"]
    hosts = list(values)
    for name in names:
        default = VARIABLES[name].default if name in VARIABLES else None
        first = hosts[0] if hosts else None
        for other in hosts[1:]:
            a, b = values[first].get(name, default), values[other].get(name, default)
            if a != b or type(a) is not type(b):
                raise KitError(f"{name}: must be the same on every host, but {first} has {a!r} and {other} has {b!r}")


def check_groups(strategy: str, groups: Mapping[str, list[str]], redis_mode: str = "standalone") -> None:
    """The groups the strategy needs hold hosts; there are at least two app nodes; Sentinel has a replica to
    promote."""
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
    if len(groups.get("lb", [])) != 1:
        raise KitError(f"lb: needs exactly one host, has {len(groups.get('lb', []))}")
