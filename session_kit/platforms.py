"""The operating systems the kit deploys onto, in one table, and what the deploys read from each host before any
operation is declared (deploys/cluster.py): its release, its Python and its PostgreSQL. A host on another release
stops the whole apply with one line naming it, before anything changes anywhere.

What differs between releases comes from the host: the Python the app's wheelhouse is built for is the host's
python3 (installed, else the one apt would install), and the PostgreSQL the kit configures is the cluster already
under /etc/postgresql (a host upgraded from Debian 12 to 13 keeps its PostgreSQL 15 and its sessions), else the one
Debian's `postgresql` package depends on. The table holds each release's own versions only for a host whose apt has
no package lists yet."""

from __future__ import annotations

from dataclasses import dataclass

from .validate import KitError


@dataclass(frozen=True)
class Release:
    name: str
    python: str  # python3's major.minor
    postgres: int  # the major version Debian's postgresql package installs


SUPPORTED = {
    ("debian", "12"): Release("Debian 12 (bookworm)", python="3.11", postgres=15),
    ("debian", "13"): Release("Debian 13 (trixie)", python="3.13", postgres=17),
}

# One line from the host, fields separated by "|": ID VERSION_ID VERSION_CODENAME of /etc/os-release; python3's
# version; the PostgreSQL major version (empty where unknown).
PLATFORM = (
    '[ -r /etc/os-release ] && . /etc/os-release; '
    'py=$(python3 -c "import platform; print(platform.python_version())" 2>/dev/null || '
    "apt-cache show --no-all-versions python3 2>/dev/null | sed -n 's/^Version: \\([0-9][0-9.]*\\).*/\\1/p' | head -1); "
    "pg=$( (ls -1 /etc/postgresql 2>/dev/null | grep -xE '[0-9]+' | sort -n | tail -1; "
    "apt-cache show --no-all-versions postgresql 2>/dev/null | sed -n 's/^Depends:.*postgresql-\\([0-9][0-9]*\\).*/\\1/p') "
    "| head -1); "
    'echo "${ID:-unknown} ${VERSION_ID:-?} ${VERSION_CODENAME:-?}|$py|$pg"'
)


@dataclass(frozen=True)
class Platform:
    release: Release
    python: str  # major.minor: what the wheelhouse is built for
    postgres: int


def describe(line: str) -> str:
    """"debian 13 trixie" -> "Debian 13 (trixie)"."""
    system, version, codename = (line.split() + ["?", "?", "?"])[:3]
    return f"{system.capitalize()} {version}" + (f" ({codename})" if codename != "?" else "")


def check_release(host_name: str, line: str) -> Release:
    """The release an os-release line names; KitError (one line) unless the kit supports it."""
    system, version = (line.split() + ["?", "?"])[:2]
    if (system, version) not in SUPPORTED:
        raise KitError(f"{host_name}: {describe(line)} is not supported: session-kit deploys onto "
                       f"{' or '.join(release.name for release in SUPPORTED.values())}")
    return SUPPORTED[system, version]


def platform_of(host_name: str, output: str) -> Platform:
    """What PLATFORM printed on a host, checked: KitError for a release the kit does not deploy onto."""
    os_line, python, postgres = ((output or "").strip().split("|") + ["", ""])[:3]
    release = check_release(host_name, os_line)
    numbers = python.strip().split(".")
    if len(numbers) >= 2 and all(part.isdigit() for part in numbers[:2]):
        python = ".".join(numbers[:2])
    else:
        python = release.python
    return Platform(release, python=python,
                    postgres=int(postgres) if postgres.strip().isdigit() else release.postgres)
