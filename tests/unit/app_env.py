"""An app node's environment in the unit tests: as the deploy builds it (session_kit.strategies.app_environment, for
node app1 at 10.0.0.2 with one peer, Redis and PostgreSQL), and as a shell reads its env file back."""

from __future__ import annotations

import subprocess
import tempfile
from typing import Any

from session_kit.strategies import STRATEGIES, app_environment


def node_environment(strategy: str, data: dict[str, Any], secrets: dict[str, str], **more: Any) -> dict[str, str]:
    """**more: app_environment's other arguments (sentinels, cluster_nodes)."""
    return app_environment(
        STRATEGIES[strategy],
        data,
        secrets,
        node="app1",
        private_ip="10.0.0.2",
        peers=["10.0.0.3"],
        redis_ip="10.0.0.9",
        db_ip="10.0.0.8",
        **more,
    )


def read_env_file(text: str) -> dict[str, str]:
    """What a POSIX shell reads from the file (systemd's EnvironmentFile quoting is the shell's double quotes with
    only \\\\ \\" \\` \\$ as escapes, and the file's bare values use no shell syntax at all)."""
    with tempfile.NamedTemporaryFile("w", suffix=".env") as handle:
        handle.write(text)
        handle.flush()
        out = subprocess.run(
            ["env", "-i", "sh", "-c", 'set -a; . "$1"; exec env -0', "sh", handle.name],
            capture_output=True,
            check=True,
            timeout=10,
        ).stdout.decode()
    pairs = dict(item.split("=", 1) for item in out.split("\0") if item)
    return {key: value for key, value in pairs.items() if key.isupper() and key not in ("PWD", "SHLVL", "_")}
