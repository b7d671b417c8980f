"""The wheelhouse's archive (deploys/wheelhouse.py): the same wheels make the same bytes, whatever the files' times,
so that a re-apply uploads nothing; every wheel is in it, readable, and nothing else."""

from __future__ import annotations

import os
import tarfile

from deploys.wheelhouse import ARCHIVE, write_archive


def make(directory, stamp: int):
    directory.mkdir()
    for name, body in (("b_pkg-1.0-py3-none-any.whl", b"bee" * 100), ("a_pkg-2.0-py3-none-any.whl", b"ay")):
        path = directory / name
        path.write_bytes(body)
        os.utime(path, (stamp, stamp))
    (directory / ".complete").write_text("ok\n")
    return write_archive(directory)


def test_same_wheels_same_bytes(tmp_path):
    first, second = make(tmp_path / "one", 1_000_000), make(tmp_path / "two", 2_000_000)
    assert first.name == second.name == ARCHIVE
    assert first.read_bytes() == second.read_bytes()


def test_holds_every_wheel_sorted_and_nothing_else(tmp_path):
    archive = make(tmp_path / "one", 1_000_000)
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == ["a_pkg-2.0-py3-none-any.whl", "b_pkg-1.0-py3-none-any.whl"]
        assert all(m.mode == 0o644 and m.mtime == 0 and m.uid == 0 for m in members)
        assert tar.extractfile("b_pkg-1.0-py3-none-any.whl").read() == b"bee" * 100
