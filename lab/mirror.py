"""The Debian mirror this machine already uses, read at run time from its own apt configuration.

No registry host name is written into the repository: the lab's image and hosts use whatever this machine uses.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from .sh import LabError


@dataclasses.dataclass(frozen=True)
class Mirror:
    debian: str  # e.g. http://HOST/debian
    security: str | None  # e.g. http://HOST/debian-security

    @staticmethod
    def http(uri: str) -> str:
        """The hosts reach the mirror through an HTTP caching proxy, so they ask for http:// URLs."""
        return re.sub(r"^https://", "http://", uri).rstrip("/")


def _entries(apt: Path) -> list[tuple[str, list[str]]]:
    """(uri, suites) of every enabled 'deb' source, deb822 (.sources) and one-line (.list) formats alike."""
    entries: list[tuple[str, list[str]]] = []
    for path in sorted((apt / "sources.list.d").glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", path.read_text()):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line:
                    continue
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.strip()
            if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() == "no":
                continue
            for uri in fields.get("uris", "").split():
                entries.append((uri, fields.get("suites", "").split()))
    lists = [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*.list"))]
    for path in lists:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            match = re.match(r"\s*deb\s+(?:\[[^]]*]\s+)?(\S+)\s+(\S+)", line)
            if match:
                entries.append((match.group(1), [match.group(2)]))
    return entries


def machine_mirror(suite: str, apt: Path = Path("/etc/apt"), own: str = "bookworm") -> Mirror:
    """The machine's mirror for `suite`; for another release than the machine's own (`own`), the mirror the machine
    uses for its own release, which serves every release of the archive."""
    entries = _entries(apt)
    debian = next((uri for uri, suites in entries if suite in suites), None) or next(
        (uri for uri, suites in entries if own in suites), None
    )
    if debian is None:
        raise LabError(f"no Debian mirror for {suite} in {apt}/sources.list(.d): the lab uses this machine's own")
    security = next((uri for uri, suites in entries if f"{suite}-security" in suites), None) or next(
        (uri for uri, suites in entries if f"{own}-security" in suites), None
    )
    return Mirror(debian=debian.rstrip("/"), security=security.rstrip("/") if security else None)
