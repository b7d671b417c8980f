"""The releases the kit deploys onto (session_kit/platforms.py): what a host reports decides its Python and its
PostgreSQL; anything else is refused with one line naming the host and its release."""

from __future__ import annotations

import os
import subprocess

import pytest

from session_kit.platforms import PLATFORM, SUPPORTED, check_release, describe, platform_of
from session_kit.validate import KitError


@pytest.mark.parametrize("line", ["debian 12 bookworm", "debian 13 trixie"])
def test_debian_12_and_13_pass(line):
    assert check_release("app1", line) is SUPPORTED[tuple(line.split()[:2])]


@pytest.mark.parametrize(
    "line, named",
    [
        (
            "debian 11 bullseye",
            "app1: Debian 11 (bullseye) is not supported: session-kit deploys onto Debian 12 "
            "(bookworm) or Debian 13 (trixie)",
        ),
        ("debian 14 forky", "app1: Debian 14 (forky) is not supported"),
        ("ubuntu 24.04 noble", "app1: Ubuntu 24.04 (noble) is not supported"),
        ("unknown ? ?", "app1: Unknown ? is not supported"),  # no /etc/os-release at all (PLATFORM prints this)
    ],
)
def test_another_release_is_refused_in_one_line(line, named):
    with pytest.raises(KitError) as refused:
        platform_of("app1", f"{line}|3.11.2|15:main:5432 |15")
    assert str(refused.value).startswith(named) and "\n" not in str(refused.value)


def test_the_hosts_versions_decide():
    assert platform_of("app1", "debian 13 trixie|3.13.5||17").python == "3.13"
    assert platform_of("app1", "debian 12 bookworm|3.11.2||15").python == "3.11"
    assert platform_of("db1", "debian 13 trixie|3.13.5|17:main:5432 |17").postgres == 17
    # apt would install another (the PostgreSQL project's own repository): what apt installs is what is configured
    assert platform_of("db1", "debian 12 bookworm|3.11.2||16").postgres == 16


def test_a_host_upgraded_from_12_to_13_keeps_its_postgresql():
    """Debian 12 -> 13 in place: 15/main on the kit's port holds the sessions, the upgrade made 17/main on 5433."""
    assert platform_of("db1", "debian 13 trixie|3.13.5|15:main:5432 17:main:5433 |17").postgres == 15
    assert platform_of("db1", "debian 13 trixie|3.13.5|15:main:5432 |17").postgres == 15
    # the kit's port moved by the inventory: the main cluster there
    assert platform_of("db1", "debian 13 trixie|3.13.5|15:main:5432 17:main:5433 |17", 5433).postgres == 17
    # one cluster, on another port than the kit's (a first apply): that one, which the kit then moves to its port
    assert platform_of("db1", "debian 13 trixie|3.13.5|17:main:5433 |17").postgres == 17


@pytest.mark.parametrize(
    "clusters", ["15:main:5432 17:main:5432 ", "15:main:5433 17:main:5434 ", "15:other:5432 17:main:5434 "]
)
def test_several_clusters_none_of_them_the_kits_is_refused_in_one_line(clusters):
    with pytest.raises(KitError) as refused:
        platform_of("db1", f"debian 13 trixie|3.13.5|{clusters}|17")
    message = str(refused.value)
    assert message.startswith("db1: PostgreSQL clusters 15/") and "pg_dropcluster" in message and "\n" not in message


def test_what_the_host_cannot_say_comes_from_its_release():
    """No python3 installed and no apt lists yet: the release's own versions."""
    platform = platform_of("app1", "debian 13 trixie|||")
    assert (platform.python, platform.postgres) == ("3.13", 17)
    assert platform_of("app1", "debian 12 bookworm|weird|x|").python == "3.11"


def test_the_command_on_this_machine():
    """PLATFORM itself, run by sh on this (Debian 12) machine: its own release, python3 and PostgreSQL (the kit's
    setup installs postgresql, whose package makes 15/main on 5432)."""
    output = subprocess.run(["sh", "-c", PLATFORM], capture_output=True, text=True, check=True).stdout
    assert output.count("\n") == 1 and output.count("|") == 4, output
    platform = platform_of("controller", output)
    assert platform.release.name == "Debian 12 (bookworm)"
    assert platform.python == "3.11"
    assert platform.postgres == 15
    assert platform.machine == os.uname().machine


def test_the_cpu_comes_from_the_host():
    """The wheelhouse is built for the CPU the host names, whatever the controller's own is."""
    assert platform_of("app1", "debian 12 bookworm|3.11.2||15|aarch64").machine == "aarch64"
    assert platform_of("app1", "debian 12 bookworm|3.11.2||15|x86_64").machine == "x86_64"
    with pytest.raises(KitError) as refused:
        platform_of("app1", "debian 12 bookworm|3.11.2||15|mips64")
    message = str(refused.value)
    assert message.startswith("app1: CPU mips64 has no manylinux wheels") and "\n" not in message


def test_wheelhouses_are_named_per_python_and_cpu():
    """One wheelhouse per (Python, CPU): the hash differs per CPU, and the names of before the CPU was in them are
    the ones an upgrade clears."""
    from deploys.wheelhouse import _UNNAMED_CPU, source_hash

    assert source_hash("3.11", "x86_64") != source_hash("3.11", "aarch64") != source_hash("3.13", "aarch64")
    assert _UNNAMED_CPU.fullmatch("wheelhouse-py3.11-0123456789abcdef")
    assert _UNNAMED_CPU.fullmatch("wheelhouse-0123456789abcdef")
    assert not _UNNAMED_CPU.fullmatch("wheelhouse-py3.11-aarch64-0123456789abcdef")


def test_describe():
    assert describe("debian 12 bookworm") == "Debian 12 (bookworm)"
