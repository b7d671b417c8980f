"""The sample app as a wheelhouse, built on the controller: the app's wheel and every dependency's, for a host's
Python (its major.minor: 3.11 on Debian 12, 3.13 on Debian 13; session_kit/platforms.py) and CPU (the host's
`uname -m`, whatever the controller runs on). One wheelhouse per Python version and CPU present in the cluster.
The hosts install it with `pip --no-index` and never reach PyPI.

Built once per version of the app's sources (pyproject.toml and sample_app/), Python and CPU into
build/wheelhouse-pyX.Y-CPU-HASH, and reused:
the same files each apply, so uploading them again changes nothing on the hosts. The hosts get the wheels as one
tar (ARCHIVE, the same bytes for the same wheels): one file to upload, and one checksum to compare on a re-apply,
where a file per wheel took 5.7-7 s to upload on a first apply and 2.8-3.3 s to compare on a no-op one.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from .cluster import ROOT

# pip download evaluates python_full_version markers against the controller's own interpreter, not --python-version:
# what a host's Python needs beyond that is named here, per major.minor (redis-py: async-timeout on Python < 3.11.3,
# which Debian 12's 3.11.2 is; a later 3.11 gets one wheel it does not use). The same holds for python_version markers
# of the dependencies: a wheel needed only on the hosts' Python and not on the controller's would be left out (none
# today); pip on the host then stops the install with "no matching distribution", naming it: add it here.
MARKER_EXTRAS = {"3.11": ("async-timeout>=4.0.3",)}
ARCHIVE = "wheels.tar"


def source_hash(python: str, machine: str) -> str:
    digest = hashlib.sha256(f"{python} {machine}".encode())
    for path in [ROOT / "pyproject.toml", Path(__file__), *sorted((ROOT / "sample_app").rglob("*.py"))]:
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


# A wheelhouse named before the CPU was part of its name: wheelhouse-HASH or wheelhouse-pyX.Y-HASH.
_UNNAMED_CPU = re.compile(r"wheelhouse-(py[0-9.]+-)?[0-9a-f]{16}(\.tmp)?(-app)?")


def build(python: str, machine: str) -> Path:
    """The wheelhouse for hosts whose python3 is `python` (major.minor, "3.11") on CPU `machine` (uname -m)."""
    target = ROOT / "build" / f"wheelhouse-py{python}-{machine}-{source_hash(python, machine)}"
    if (target / ".complete").exists():
        return target
    older = [  # this Python's and CPU's earlier builds, and those named before the CPU was in the name
        path
        for path in (ROOT / "build").glob("wheelhouse-*")
        if path.name.startswith(f"wheelhouse-py{python}-{machine}-") or _UNNAMED_CPU.fullmatch(path.name)
    ]
    for old in older:
        shutil.rmtree(old, ignore_errors=True)
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    app_dir = tmp.with_name(tmp.name + "-app")
    shutil.rmtree(app_dir, ignore_errors=True)
    _quiet([*pip, "wheel", "--no-deps", "--wheel-dir", str(app_dir), str(ROOT)], "building the app's wheel")
    (app_wheel,) = app_dir.glob("session_kit-*.whl")
    for leftover in [ROOT / "build" / "lib", *(ROOT / "build").glob("bdist.*")]:  # setuptools' in-tree build dirs
        shutil.rmtree(leftover, ignore_errors=True)
    _quiet(
        [
            *pip,
            "download",
            "--dest",
            str(tmp),
            "--only-binary=:all:",
            "--python-version",
            python,
            "--implementation",
            "cp",
            "--abi",
            f"cp{python.replace('.', '')}",
            "--abi",
            "abi3",
            "--abi",
            "none",
            "--platform",
            f"manylinux2014_{machine}",
            "--platform",
            f"manylinux_2_17_{machine}",
            "--platform",
            f"manylinux_2_28_{machine}",
            "--platform",
            "any",
            str(app_wheel),
            *MARKER_EXTRAS.get(python, ()),
        ],
        f"downloading the app's dependencies for Python {python}",
    )
    shutil.rmtree(app_dir)
    write_archive(tmp)
    (tmp / ".complete").write_text("ok\n")
    tmp.rename(target)
    return target


def write_archive(wheelhouse: Path) -> Path:
    """The wheels as one uncompressed tar (wheels are zip files already): sorted, with no times, owners or modes of
    the controller's, so that the same wheels make the same bytes and a re-apply uploads nothing."""
    path = wheelhouse / ARCHIVE
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for wheel in sorted(wheelhouse.glob("*.whl")):
            info = tarfile.TarInfo(wheel.name)
            info.size, info.mode, info.mtime = wheel.stat().st_size, 0o644, 0
            with wheel.open("rb") as data:
                tar.addfile(info, data)
    return path


def _quiet(command: list[str], what: str) -> None:
    """Run a build step without its chatter (pip and setuptools print warnings that are not the deploy's business);
    on failure, its last lines go into the error."""
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"session-kit: {what} failed (exit {result.returncode}):\n{tail}")


def combined_hash(wheelhouse: Path) -> str:
    digest = hashlib.sha256()
    for wheel in sorted(wheelhouse.glob("*.whl")):
        digest.update(wheel.name.encode() + b"\0" + hashlib.sha256(wheel.read_bytes()).digest())
    return digest.hexdigest()
