"""Secrets per inventory: generated once on the controller into a git-ignored JSON file (mode 0600) and reused by
every later apply; an environment variable SESSION_KIT_<NAME> (e.g. SESSION_KIT_REDIS_PASSWORD) overrides a value.
Nothing secret ever enters the repository."""

from __future__ import annotations

import json
import os
import secrets as random
from pathlib import Path

NAMES = ("cookie_secret_key", "redis_password", "postgres_password", "replication_key")


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
    return {name: os.environ.get(f"SESSION_KIT_{name.upper()}") or stored[name] for name in NAMES}
