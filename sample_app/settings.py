"""The app's environment contract: every setting, its default and its check, in one table.

A missing or invalid setting raises SettingError, whose message starts with the setting's name; `python -m
sample_app` prints it as one line and exits 2 before serving anything.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

STRATEGIES = ("cookie", "sticky", "database", "replication", "redis", "token")


class SettingError(ValueError):
    """A setting is missing or invalid; str() names the setting first."""


def _int(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"must be an integer, got {raw!r}") from None
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}, got {value}")
        return value

    return parse


def _bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"must be true or false, got {raw!r}")


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, got {raw!r}")
        return raw

    return parse


def _list(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _secret_keys(raw: str) -> tuple[str, ...]:
    keys = _list(raw)
    if not keys:
        raise ValueError("must hold at least one key")
    short = [i for i, key in enumerate(keys) if len(key) < 32]
    if short:
        raise ValueError(f"every key needs at least 32 characters (key #{short[0] + 1} is shorter)")
    return keys


def _url(*schemes: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        parts = urlsplit(raw)
        if parts.scheme not in schemes or not parts.hostname:
            raise ValueError(f"must be a {'/'.join(schemes)} URL with a host, got {_redact(raw)!r}")
        return raw

    return parse


def _peers(raw: str) -> tuple[str, ...]:
    peers = _list(raw)
    for peer in peers:
        _url("http")(peer)
    return tuple(peer.rstrip("/") for peer in peers)


def _host_ports(raw: str) -> tuple[tuple[str, int], ...]:
    result = []
    for item in _list(raw):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"must be a list of host:port, got {item!r}")
        result.append((host, int(port)))
    return tuple(result)


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url


def _route(raw: str) -> str:
    if raw and not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", raw):
        raise ValueError(f"must be 1-64 characters of A-Z a-z 0-9 _ -, got {raw!r}")
    return raw


@dataclasses.dataclass(frozen=True)
class Setting:
    name: str
    parse: Callable[[str], object]
    default: str | None  # None: required (where `required_for` says so)
    doc: str
    required_for: tuple[str, ...] = STRATEGIES


# The one table of settings. docs/sample-app.md's settings table is this table as `python -m sample_app --help`
# prints it (tests/unit/test_settings.py keeps the two in step).
SETTINGS: tuple[Setting, ...] = (
    Setting("SESSION_STRATEGY", _choice(*STRATEGIES), None, "where sessions live: " + ", ".join(STRATEGIES)),
    Setting("NODE_NAME", str, "", "this node's name in X-Served-By and responses (default: the host name)"),
    Setting("APP_HOST", str, "127.0.0.1", "address to listen on"),
    Setting("APP_PORT", _int(1, 65535), "8000", "port to listen on"),
    Setting(
        "WORKERS",
        _int(1, 64),
        "1",
        "processes serving the port; sticky and replication keep sessions in one process's memory: 1 only",
    ),
    Setting(
        "SESSION_TTL",
        _int(1, 30 * 86400),
        "1800",
        "seconds of inactivity before a session expires (sliding: each use moves it; reads and increments once a "
        "tenth of it has passed, so a session may end up to a tenth early)",
    ),
    Setting(
        "SECRET_KEYS",
        _secret_keys,
        None,
        "cookie: signing keys, comma-separated, newest first; older keys still verify (rotation)",
        ("cookie",),
    ),
    Setting("COOKIE_SECURE", _bool, "false", "mark the SESSION cookie Secure (set it behind HTTPS)"),
    Setting(
        "REDIS_URL",
        _url("redis"),
        None,
        "redis, token: redis://[:PASSWORD@]HOST:PORT/DB (with Sentinel: only the password and db are used); "
        "rediss:// is refused: the app does not speak TLS",
        ("redis", "token"),
    ),
    Setting(
        "REDIS_SENTINELS",
        _host_ports,
        "",
        "redis, token: Sentinel host:port list; when set, the master comes from Sentinel",
    ),
    Setting("REDIS_SENTINEL_MASTER", str, "mymaster", "redis, token: the master's name in Sentinel"),
    Setting(
        "REDIS_CLUSTER_NODES",
        _host_ports,
        "",
        "redis, token: Redis Cluster seed nodes host:port; when set, the app follows the cluster's slot map "
        "(REDIS_URL then gives only the user and password)",
    ),
    Setting(
        "REDIS_CACHE_SESSIONS",
        _int(0, 1_000_000),
        "10000",
        "redis, token: sessions each worker keeps a copy of, kept fresh by Redis (client-side caching, RESP3 "
        "CLIENT TRACKING): a read still waits for one Redis round trip per batch, so it sees every node's writes; "
        "0: off; not on Redis Cluster",
    ),
    Setting(
        "DATABASE_URL",
        _url("postgresql", "postgres"),
        None,
        "database: postgresql://USER:PASSWORD@HOST:PORT/DB",
        ("database",),
    ),
    Setting("DATABASE_POOL_SIZE", _int(1, 100), "4", "database: connections per node"),
    Setting(
        "STORE_POLL_US",
        _int(0, 100_000),
        "500",
        "redis, token, database: microseconds a worker keeps polling instead of sleeping while it waits for its "
        "store (more throughput under load, some CPU spent waiting; 0: off)",
    ),
    Setting("PEERS", _peers, "", "replication: the other nodes' base URLs, comma-separated (http://10.0.0.2:8000,...)"),
    Setting(
        "REPLICATION_KEY",
        str,
        None,
        "replication: shared key that authenticates deltas between peers",
        ("replication",),
    ),
    Setting(
        "REPLICATION_MODE",
        _choice("sync", "async"),
        "sync",
        "replication: sync answers a change once every live peer has it (read your writes on any node); async "
        "answers at once and peers follow within milliseconds",
    ),
    Setting(
        "REPLICATION_TIMEOUT_MS",
        _int(10, 60000),
        "1000",
        "replication, sync: longest wait for a peer's acknowledgement; a peer that misses it is marked down and "
        "catches up from a snapshot",
    ),
    Setting(
        "SESSION_ROUTE",
        _route,
        "",
        "cookie routing: this node's route, appended to new SESSION cookies as .ROUTE for the load balancer "
        "(A-Z a-z 0-9 _ -; empty: off)",
    ),
    Setting("MAX_BODY_BYTES", _int(64, 10 * 1024 * 1024), "65536", "largest request body accepted (413 beyond)"),
    Setting(
        "MAX_VALUE_BYTES", _int(16, 1024 * 1024), "8192", "largest JSON value stored under one data key (413 beyond)"
    ),
    Setting("MAX_DATA_KEYS", _int(1, 10000), "64", "most data keys in one session (413 beyond)"),
    Setting(
        "FORWARDED_ALLOW_IPS",
        str,
        "127.0.0.1",
        "proxies trusted to set X-Forwarded-For (the load balancer's address, or *)",
    ),
    Setting(
        "DRAIN_SECONDS",
        _int(0, 600),
        "8",
        "on SIGTERM: longest wait for the balancer to close its connections before the node stops",
    ),
    Setting("LOG_LEVEL", _choice("debug", "info", "warning", "error"), "info", "log level"),
)


@dataclasses.dataclass(frozen=True)
class Settings:
    session_strategy: str
    node_name: str
    app_host: str
    app_port: int
    workers: int
    session_ttl: int
    secret_keys: tuple[str, ...]
    cookie_secure: bool
    redis_url: str
    redis_sentinels: tuple[tuple[str, int], ...]
    redis_sentinel_master: str
    redis_cluster_nodes: tuple[tuple[str, int], ...]
    redis_cache_sessions: int
    database_url: str
    database_pool_size: int
    store_poll_us: int
    peers: tuple[str, ...]
    replication_key: str
    replication_mode: str
    replication_timeout_ms: int
    session_route: str
    max_body_bytes: int
    max_value_bytes: int
    max_data_keys: int
    forwarded_allow_ips: str
    drain_seconds: int
    log_level: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        environ = os.environ if environ is None else environ
        strategy = environ.get("SESSION_STRATEGY", "")
        values: dict[str, object] = {}
        for setting in SETTINGS:
            key = setting.name.lower()
            raw = environ.get(setting.name, "")
            if raw == "" and setting.default is None:
                if setting.name == "SESSION_STRATEGY":
                    raise SettingError(f"SESSION_STRATEGY: required (one of {', '.join(STRATEGIES)})")
                if strategy in setting.required_for:
                    raise SettingError(f"{setting.name}: required for SESSION_STRATEGY={strategy}")
                values[key] = () if setting.parse is _secret_keys else ""
                continue
            try:
                values[key] = setting.parse(raw or setting.default or "")
            except ValueError as error:
                raise SettingError(f"{setting.name}: {error}") from None
        if values["workers"] != 1 and strategy in ("sticky", "replication"):
            raise SettingError(
                f"WORKERS: {strategy} keeps its sessions in one process's memory, so it runs 1 worker "
                f"per node, got {values['workers']}"
            )
        if values["redis_cluster_nodes"] and values["redis_sentinels"]:
            raise SettingError("REDIS_CLUSTER_NODES: set it or REDIS_SENTINELS, not both")
        if not values["node_name"]:
            values["node_name"] = socket.gethostname()
        return cls(**values)  # type: ignore[arg-type]


def describe() -> str:
    """The settings table as text, for --help and docs/sample-app.md."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for s in SETTINGS:
        if s.default is None:
            default = "(required)" if s.required_for == STRATEGIES else f"(required for {', '.join(s.required_for)})"
        else:
            default = f"`{s.default}`" if s.default else ""
        lines.append(f"| `{s.name}` | {default} | {s.doc} |")
    return "\n".join(lines)
