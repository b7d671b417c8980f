"""The lab's hosts of several Debian releases (python -m lab up --release): which host gets which release, and the
mirror each release is fetched from (the machine's own, read from its apt configuration)."""

from __future__ import annotations

import pytest

from lab.control import releases_of
from lab.mirror import machine_mirror
from lab.sh import LabError


def test_one_release_for_every_host_or_one_per_host():
    assert releases_of(None, 3) == ["bookworm"] * 3
    assert releases_of("trixie", 2) == ["trixie", "trixie"]
    # stores on lab1 on one release, the app nodes on the other: the last one is repeated
    assert releases_of("bookworm,trixie", 4) == ["bookworm", "trixie", "trixie", "trixie"]


def test_an_unknown_release_is_refused_in_one_line():
    with pytest.raises(LabError, match=r"^--release: one of bookworm, trixie .*got 'sid'$"):
        releases_of("bookworm,sid", 2)


def test_another_release_comes_from_the_mirror_of_the_machines_own(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.invalid/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n"
        "Types: deb\nURIs: http://mirror.invalid/debian-security\nSuites: bookworm-security\nComponents: main\n"
    )
    own = machine_mirror("bookworm", tmp_path)
    other = machine_mirror("trixie", tmp_path)
    assert other == own
    assert (other.debian, other.security) == ("http://mirror.invalid/debian", "http://mirror.invalid/debian-security")
