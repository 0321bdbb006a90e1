"""Atomic writes (cstp_cli/core/fsutil.py): a failed write never replaces the old file."""

from __future__ import annotations

import os

import pytest

from cstp_cli.core.fsutil import atomic_path, atomic_write_bytes


def test_write_replaces_the_file_with_usual_permissions(tmp_path):
    target = tmp_path / "sub" / "x.bin"
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert target.stat().st_mode & 0o777 == 0o666 & ~_umask()
    assert [p.name for p in target.parent.iterdir()] == ["x.bin"]


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "x.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
