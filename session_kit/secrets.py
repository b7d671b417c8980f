"""Secrets per inventory: generated once on the controller into a git-ignored JSON file (mode 0600) and reused by
every later apply; an environment variable SESSION_KIT_<NAME> (e.g. SESSION_KIT_REDIS_PASSWORD) overrides a value.
Nothing secret ever enters the repository.

A value is written into URLs (percent-encoded), redis.conf (quoted) and the app's systemd EnvironmentFile (quoted):
any printable character round-trips. Control characters (a newline, a tab, ...) cannot be written safely into those
line-based files, so an environment value holding one is refused with one line."""

from __future__ import annotations

import json
import os
import re
import secrets as random
from pathlib import Path

from .validate import KitError

NAMES = (
    "cookie_secret_key",
    "redis_password",
    "redis_admin_password",
    "redis_replication_password",
    "postgres_password",
    "replication_key",
    "vrrp_password",  # keepalived's PASS authentication between balancers: its first 8 characters (VRRP's limit)
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def secrets_file(directory: str | Path, inventory_name: str) -> Path:
    return Path(directory) / f"{inventory_name}.json"


def load(directory: str | Path, inventory_name: str) -> dict[str, str]:
    """Every secret of the inventory, generating (and saving) the missing ones."""
    path = secrets_file(directory, inventory_name)
    stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    missing = [name for name in NAMES if name not in stored]
    if missing:
        for name in missing:
            stored[name] = random.token_urlsafe(32)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(stored, handle, indent=2)
        os.replace(tmp, path)
    path.chmod(0o600)
    return {name: from_environment(name) or stored[name] for name in NAMES}


def from_environment(name: str) -> str | None:
    """SESSION_KIT_<NAME>, if set and not empty; refused (KitError) when it cannot be written safely."""
    variable = f"SESSION_KIT_{name.upper()}"
    value = os.environ.get(variable)
    if value and _CONTROL.search(value):
        raise KitError(
            f"{variable}: holds a control character (newline, tab, ...) that cannot be written safely "
            f"into the hosts' configuration files; use printable characters only"
        )
    return value or None


# Redis 7.0's Sentinel writes `sentinel auth-pass` back into its file unquoted whenever it saves it (at its first
# start, after each failover): a password with a space, a quote or a backslash would stop it from starting again.
SENTINEL_SAFE = re.compile(r"[A-Za-z0-9_.~+/=-]+")


def check_usable(values: dict, secrets: dict[str, str]) -> None:
    """What a secret's use adds to the rules above, for this inventory's settings."""
    if values.get("redis_mode") == "sentinel" and not SENTINEL_SAFE.fullmatch(secrets["redis_replication_password"]):
        raise KitError(
            "redis_replication_password: with redis_mode=sentinel, only letters, digits and _ . ~ + / = - "
            "(Redis 7.0's Sentinel writes it back into sentinel.conf unquoted)"
        )
