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


def test_check_output_dir_refuses_a_file(tmp_path):
    from cstp_cli.core.fsutil import check_output_dir
    from cstp_cli.errors import UsageError

    f = tmp_path / "f"
    f.write_text("x")
    with pytest.raises(UsageError, match="is a file"):
        check_output_dir(f)


def test_check_output_dir_creates_missing_folders_and_leaves_no_probe(tmp_path):
    from cstp_cli.core.fsutil import check_output_dir

    out = check_output_dir(tmp_path / "a" / "b")
    assert out.is_dir() and list(out.iterdir()) == []


def test_check_output_dir_refuses_a_folder_that_cannot_be_written(tmp_path, monkeypatch):
    import cstp_cli.core.fsutil as fsutil
    from cstp_cli.errors import UsageError

    def refuse(folder):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(fsutil, "_probe_write", refuse)
    with pytest.raises(UsageError, match="Permission denied; choose another --out"):
        fsutil.check_output_dir(tmp_path, flag="--out")


def test_check_output_file_refuses_a_folder(tmp_path):
    from cstp_cli.core.fsutil import check_output_file
    from cstp_cli.errors import UsageError

    with pytest.raises(UsageError, match="is a folder"):
        check_output_file(tmp_path)
