"""The cache under failure: full disk, leftovers (lock, temporaries), frame checksums."""

from __future__ import annotations

import errno
import functools
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import cache_fakes as F  # noqa: E402

from cstp_cli.core import safewrite  # noqa: E402
from cstp_cli.data.cache import build_cache, read_features, verify_cache, write_features  # noqa: E402
from cstp_cli.data.cache import build as cache_build  # noqa: E402
from cstp_cli.errors import CacheError  # noqa: E402

SIZE = (12, 8)
SPECS = {"a/v0.avi": "frames=5 seed=10", "b/v1.avi": "frames=3 seed=11", "c/v2.avi": "frames=9 seed=12"}


def build(tmp_path, specs=SPECS, name="c.h5", index=None, **kw):
    root = tmp_path / "ds"
    index = index or F.make_dataset(root, specs, folds=1)
    kw.setdefault("decode", F.fake_decode)
    return build_cache(root, out=tmp_path / name, size=SIZE, progress=False, index=index, workers=0, **kw)


def disk_full_after(monkeypatch, nbytes):
    """Make every GuardedFile fail with ENOSPC once ``nbytes`` were written (all files together)."""
    written = {"n": 0}
    real = safewrite.GuardedFile.write

    def write(self, data):
        if self.error is None and written["n"] + memoryview(data).nbytes > nbytes:
            self.error = OSError(errno.ENOSPC, "No space left on device")
        written["n"] += memoryview(data).nbytes
        return real(self, data)

    monkeypatch.setattr(safewrite.GuardedFile, "write", write)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith((".lock", ".tmp")) or ".tmp" in p.name)


def test_full_disk_while_assembling_gives_one_line_and_keeps_the_old_cache(tmp_path, monkeypatch):
    old = build(tmp_path).path.read_bytes()
    real = cache_build._assemble

    def assemble_on_a_full_disk(*a, **k):  # the shards are written; the disk fills now
        disk_full_after(monkeypatch, 4096)
        return real(*a, **k)

    monkeypatch.setattr(cache_build, "_assemble", assemble_on_a_full_disk)
    with pytest.raises(CacheError, match="no space left on the device; free space and rerun to resume"):
        build(tmp_path, specs={**SPECS, "a/new.avi": "frames=2 seed=3"})
    assert (tmp_path / "c.h5").read_bytes() == old
    assert leftovers(tmp_path) == [] and list((tmp_path / "c.h5.shards").glob("shard-*.h5"))


def test_full_disk_while_writing_a_shard_gives_one_line_and_leaves_no_temporary(tmp_path, monkeypatch):
    disk_full_after(monkeypatch, 0)
    with pytest.raises(CacheError, match="cannot write a shard .*no space left on the device"):
        build(tmp_path)
    assert not (tmp_path / "c.h5").exists() and leftovers(tmp_path) == []
    assert list((tmp_path / "c.h5.shards").glob("*.tmp")) == []


def test_runtime_error_from_h5py_on_a_failed_write_is_one_line(tmp_path, monkeypatch):
    def failing(*a, **k):
        raise RuntimeError("Can't decrement id ref count (file write failed: errno = 28, error message = 'No space left on device')")

    monkeypatch.setattr(cache_build, "_assemble", failing)
    with pytest.raises(CacheError, match="cannot write .*c.h5: no space left on the device"):
        build(tmp_path)


def test_features_file_on_a_full_disk_is_one_line_and_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "f.h5"
    write_features(path, np.ones((2, 3)), np.arange(2), ["a", "b"], {})
    disk_full_after(monkeypatch, 0)
    with pytest.raises(CacheError, match="cannot write features .*no space left on the device"):
        write_features(path, np.zeros((50, 3)), np.arange(50), ["x"] * 50, {})
    assert read_features(path)["features"].shape == (2, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.h5"]


def test_build_leaves_no_lock_or_temporary_files_after_success_and_failure(tmp_path):
    build(tmp_path)
    assert leftovers(tmp_path) == []
    build(tmp_path, specs={"a/bad.avi": "fail"}, name="d.h5")
    assert leftovers(tmp_path) == []


def test_build_removes_temporaries_a_killed_build_left(tmp_path):
    (tmp_path / ".c.h5.abc123.tmp").write_bytes(b"partial")
    (tmp_path / "c.h5.tmp4242").write_bytes(b"partial")
    (tmp_path / "c.h5.lock").write_text("")
    build(tmp_path)
    assert leftovers(tmp_path) == []


def test_ctrl_c_keeps_the_decoded_videos_as_a_shard_and_leaves_no_lock(tmp_path, monkeypatch):
    calls = []

    def decode_then_interrupt(path, size, fps):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(path)
        return F.fake_decode(path, size, fps)

    index = F.make_dataset(tmp_path / "ds", SPECS, folds=1)
    with pytest.raises(KeyboardInterrupt):
        build(tmp_path, index=index, decode=decode_then_interrupt)
    assert leftovers(tmp_path) == [] and list((tmp_path / "c.h5.shards").glob("shard-*.h5"))
    log = tmp_path / "calls.txt"
    result = build(tmp_path, index=index, decode=functools.partial(F.fake_decode, log=log))
    assert result.cached == 3 and log.read_text().splitlines() == ["v2.avi"]


def test_verify_finds_a_damaged_frame_by_its_checksum(tmp_path):
    path = build(tmp_path).path
    assert verify_cache(path, check_sources=False) == []
    with h5py.File(path, "r+") as f:
        f["frames"][6, 0, 0, 0] ^= 0xFF  # a frame of the second video
    problems = verify_cache(path, check_sources=False)
    assert len(problems) == 1 and "b/v1.avi: stored frames do not match their checksum" in problems[0]


def test_verify_of_a_cache_without_checksums_says_so_without_a_problem(tmp_path):
    path = build(tmp_path).path
    with h5py.File(path, "r+") as f:
        del f["videos/checksum"]
    notes: list[str] = []
    assert verify_cache(path, check_sources=False, notes=notes) == []
    assert len(notes) == 1 and "no frame checksums" in notes[0]


def test_clips_larger_or_longer_than_the_cache_provides_are_warned_about(tmp_path):
    from cstp_cli.data.cache import CacheReader

    reader = CacheReader(build(tmp_path).path)  # 12x8 frames; videos of 5, 3 and 9 frames
    assert reader.clip_warnings(frames=3, size=8) == []
    bigger = reader.clip_warnings(frames=3, size=16)
    assert len(bigger) == 1 and "clip size 16 is larger than the 12x8 frames" in bigger[0]
    longer = reader.clip_warnings(frames=4, size=8, stride=2)
    assert len(longer) == 1 and "2 of 3 videos" in longer[0] and "fewer than the 8 frames" in longer[0]
    assert reader.clip_warnings(frames=4, size=8, stride=2, videos=[2]) == []
