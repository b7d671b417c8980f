"""The cached base image every host overlays: a debootstrap of Debian with systemd and sshd, built once."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from . import config
from .mirror import machine_mirror
from .sh import run

MARKER = ".session-kit-base-complete"
_MASKED = ("apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer", "fstrim.timer")


def ready(base: Path) -> bool:
    return (base / MARKER).exists()


def size_mb(base: Path) -> int:
    result = run(["du", "-sxm", str(base)], check=False)
    return int(result.stdout.split()[0]) if result.returncode == 0 and result.stdout else 0


def build(base: Path, release: str = config.SUITE) -> None:
    """debootstrap into a temporary directory, prepare it, then move it into place: never a half-made image."""
    mirror = machine_mirror(release)
    tmp = base.with_name(base.name + f".building-{os.getpid()}")
    for stale in base.parent.glob(base.name + ".building-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    try:
        run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(config.BASE_PACKAGES)}",
                release,
                str(tmp),
                mirror.debian,
            ],
            timeout=900,
        )
        prepare(tmp)
        if base.exists():
            shutil.rmtree(base)
        tmp.rename(base)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    (base / MARKER).write_text("ok\n")


def prepare(root: Path) -> None:
    # Each host gets its own ssh host keys and machine-id; none may be shared through the image.
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (root / "etc/machine-id").write_text("")
    # Timers that would take the dpkg lock in the middle of a deploy.
    for unit in _MASKED:
        link = root / "etc/systemd/system" / unit
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")
    shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
    (root / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
    for lists in (root / "var/lib/apt/lists").glob("*_dists_*"):
        lists.unlink()
