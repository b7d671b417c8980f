"""The releases the kit deploys onto: anything else is refused with one line naming the host and its release."""

from __future__ import annotations

import pytest

from session_kit.platforms import check_release, describe
from session_kit.validate import KitError


def test_debian_12_passes():
    check_release("app1", "debian 12 bookworm")


@pytest.mark.parametrize("line, named", [
    ("debian 13 trixie", "app1: Debian 13 (trixie) is not supported: session-kit deploys onto Debian 12 (bookworm)"),
    ("debian 11 bullseye", "app1: Debian 11 (bullseye) is not supported"),
    ("ubuntu 24.04 noble", "app1: Ubuntu 24.04 (noble) is not supported"),
    ("unknown ? ?", "app1: Unknown ? is not supported"),  # no /etc/os-release at all (OS_RELEASE prints this)
])
def test_another_release_is_refused_in_one_line(line, named):
    with pytest.raises(KitError) as refused:
        check_release("app1", line)
    assert str(refused.value).startswith(named) and "\n" not in str(refused.value)


def test_describe():
    assert describe("debian 12 bookworm") == "Debian 12 (bookworm)"
