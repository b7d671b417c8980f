"""What each inventory variable accepts: the types session_kit/defaults.py gives every variable. Each checks a value
as its service would read it, so a mistake fails before any host is touched and not halfway through a deploy."""

from __future__ import annotations

import ipaddress
import pathlib
import re
from typing import Any

NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


# -- what a variable accepts -------------------------------------------------------------------------------------


class Type:
    """A variable's type: `what` says what it accepts; accepts(value) checks a value as its service would."""

    what = "a value"
    optional = False  # None (unset) is accepted too

    def accepts(self, value: Any) -> bool:
        raise NotImplementedError

    def problem(self, value: Any) -> str | None:
        """None when the value is right, else what is wrong: 'must be ..., got ...'."""
        if value is None and self.optional:
            return None
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
        return isinstance(value, str) and value in self.options


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


def listen_parts(value: Any) -> tuple[str, int]:
    """nginx_listen's address ("*" for every address) and port, from a value Listen accepts."""
    address, colon, port = str(value).rpartition(":")
    return (address if colon and address not in ("", "0.0.0.0", "[::]") else "*"), int(port)
