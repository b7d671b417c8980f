"""The operating systems the kit deploys onto, in one table, and the check every host passes before any operation
is declared (deploys/cluster.py): a host on another release stops the whole apply with one line naming it, before
anything changes anywhere. What the deploys hold as constants today (PostgreSQL 15 and its paths, a wheelhouse built
for Python 3.11) is Debian 12's; another release is added here once the deploys take those from the host."""

from __future__ import annotations

from .validate import KitError

SUPPORTED = {("debian", "12"): "Debian 12 (bookworm)"}
# One line from the host: ID VERSION_ID VERSION_CODENAME of /etc/os-release.
OS_RELEASE = '[ -r /etc/os-release ] && . /etc/os-release; echo "${ID:-unknown} ${VERSION_ID:-?} ${VERSION_CODENAME:-?}"'


def describe(line: str) -> str:
    """"debian 13 trixie" -> "Debian 13 (trixie)"."""
    system, version, codename = (line.split() + ["?", "?", "?"])[:3]
    return f"{system.capitalize()} {version}" + (f" ({codename})" if codename != "?" else "")


def check_release(host_name: str, line: str) -> None:
    """Raise KitError unless the host's os-release line names a supported release."""
    system, version = (line.split() + ["?", "?"])[:2]
    if (system, version) not in SUPPORTED:
        raise KitError(f"{host_name}: {describe(line)} is not supported: session-kit deploys onto "
                       f"{' or '.join(SUPPORTED.values())}")
