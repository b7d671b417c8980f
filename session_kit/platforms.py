"""The operating systems the kit deploys onto, in one table, and what the deploys read from each host before any
operation is declared (deploys/cluster.py): its release, its Python and its PostgreSQL. A host on another release
stops the whole apply with one line naming it, before anything changes anywhere.

What differs between releases comes from the host: the Python the app's wheelhouse is built for is the host's
python3 (installed, else the one apt would install), and the PostgreSQL the kit configures is the cluster it runs
on the host already (postgres_of: a host upgraded from Debian 12 to 13 keeps its PostgreSQL 15 and its sessions),
else the one apt would install. The table holds each release's own versions only for a host whose apt has no package
lists yet. The CPU the wheelhouse's compiled wheels are for is the host's too (`uname -m`), never the controller's:
a laptop on arm64 deploys to amd64 servers."""

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

# The CPUs (uname -m) that PyPI's manylinux wheels are built for: the app's compiled dependencies (hiredis, httptools,
# uvloop, psycopg's binary) come as such wheels, and the hosts install with pip --no-index.
WHEEL_MACHINES = ("x86_64", "aarch64", "i686", "ppc64le", "s390x", "armv7l")

# One line from the host, fields separated by "|": ID VERSION_ID VERSION_CODENAME of /etc/os-release; python3's
# version (-I: nothing from the working directory is imported, as root); the PostgreSQL clusters (pg_lsclusters:
# "VERSION:NAME:PORT ..."); the major version of PostgreSQL apt would install (empty where unknown); the CPU.
PLATFORM = (
    r"""[ -r /etc/os-release ] && . /etc/os-release; """
    r"""py=$(python3 -I -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null || """
    r"""apt-cache show --no-all-versions python3 2>/dev/null | """
    r"""sed -n 's/^Version: \([0-9][0-9.]*\).*/\1/p' | head -1); """
    r"""pg=$(pg_lsclusters -h 2>/dev/null | awk '{printf "%s:%s:%s ", $1, $2, $3}'); """
    r"""next=$(apt-cache show --no-all-versions postgresql 2>/dev/null | """
    r"""sed -n 's/^Depends:.*postgresql-\([0-9][0-9]*\).*/\1/p' | head -1); """
    r'echo "${ID:-unknown} ${VERSION_ID:-?} ${VERSION_CODENAME:-?}|$py|$pg|$next|$(uname -m)"'
)


@dataclass(frozen=True)
class Platform:
    release: Release
    python: str  # major.minor: what the wheelhouse is built for
    postgres: int  # the PostgreSQL the kit configures (see postgres_of)
    machine: str = ""  # the CPU (uname -m): what the wheelhouse's compiled wheels are for; "" where not read


def describe(line: str) -> str:
    """ "debian 13 trixie" -> "Debian 13 (trixie)"."""
    system, version, codename = (line.split() + ["?", "?", "?"])[:3]
    return f"{system.capitalize()} {version}" + (f" ({codename})" if codename != "?" else "")


def check_release(host_name: str, line: str) -> Release:
    """The release an os-release line names; KitError (one line) unless the kit supports it."""
    system, version = (line.split() + ["?", "?"])[:2]
    if (system, version) not in SUPPORTED:
        raise KitError(
            f"{host_name}: {describe(line)} is not supported: session-kit deploys onto "
            f"{' or '.join(release.name for release in SUPPORTED.values())}"
        )
    return SUPPORTED[system, version]


def postgres_of(host_name: str, clusters: str, candidate: str, release: Release, port: int) -> int:
    """Which PostgreSQL the kit configures on a host: the `main` cluster on the kit's port (a host upgraded from
    Debian 12 to 13 has its 15/main there, holding the sessions, and the 17/main the upgrade made on another port);
    else the only cluster; else, with none yet, the version apt would install (the release's own when apt has no
    lists). Several and none of them the kit's: KitError, one line naming them."""
    found = []
    for entry in clusters.split():
        version, name, cluster_port = (entry.split(":") + ["", ""])[:3]
        if version.isdigit() and cluster_port.isdigit():
            found.append((int(version), name, int(cluster_port)))
    ours = [version for version, name, cluster_port in found if name == "main" and cluster_port == port]
    if len(ours) == 1:
        return ours[0]
    if len(found) == 1 and not ours:
        return found[0][0]
    if not found:
        return int(candidate) if candidate.strip().isdigit() else release.postgres
    listed = ", ".join(f"{version}/{name} on port {cluster_port}" for version, name, cluster_port in found)
    raise KitError(
        f"{host_name}: PostgreSQL clusters {listed}: the kit configures the main cluster on port {port}, "
        f"and there must be one: drop the others (pg_dropcluster VERSION NAME) and apply again"
    )


def platform_of(host_name: str, output: str, postgres_port: int = 5432) -> Platform:
    """What PLATFORM printed on a host, checked: KitError for a release the kit does not deploy onto."""
    os_line, python, clusters, candidate, machine = ((output or "").strip().split("|") + ["", "", "", ""])[:5]
    release = check_release(host_name, os_line)
    machine = machine.strip()
    if machine and machine not in WHEEL_MACHINES:
        raise KitError(
            f"{host_name}: CPU {machine} has no manylinux wheels for the app's compiled dependencies: "
            f"session-kit deploys onto {', '.join(WHEEL_MACHINES)}"
        )
    numbers = python.strip().split(".")
    if len(numbers) >= 2 and all(part.isdigit() for part in numbers[:2]):
        python = ".".join(numbers[:2])
    else:
        python = release.python
    return Platform(
        release,
        python=python,
        postgres=postgres_of(host_name, clusters, candidate, release, postgres_port),
        machine=machine,
    )
