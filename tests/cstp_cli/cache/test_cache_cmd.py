"""``cstp cache build/info/verify`` end to end, with awkward and broken inputs (issue 2
items 7 and 8): valid but awkward videos are cached, undecodable ones fail with a reason
and the build goes on; command-level failures print one line and exit 1."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from cstp_cli.cache import CacheReader
from cstp_cli.cli import main
from cstp_cli.video import write_audio_only, write_video

RNG = np.random.default_rng(0)


def frames(n, w=16, h=16):
    return RNG.integers(0, 256, (n, h, w, 3), dtype=np.uint8)


#: name → expected number of cached frames (valid but awkward inputs)
CACHED = {
    "one.mp4": 1,
    "five.mp4": 5,
    "gray.mkv": 4,
    "tiny8x8.mp4": 3,
    "wide.mp4": 3,
    "odd15x9.mkv": 3,
    "vfr.mkv": 4,
    "ünï cödé space.mp4": 3,
}
#: name → a word of the failure reason (undecodable inputs)
FAILED = {
    "zero.avi": "empty",
    "text.avi": "not a video",
    "random.avi": "not a video",
    "trunc_head.mp4": "not a video",
    "audio.mp4": "no video stream",
    "dangling.avi": "dangling",
    "folder.avi": "directory",
}


@pytest.fixture(scope="module")
def awkward_root(tmp_path_factory):
    """Class folders ``good/`` (awkward but valid) and ``bad/`` (undecodable)."""
    root = tmp_path_factory.mktemp("awkward")
    good, bad = root / "good", root / "bad"
    good.mkdir()
    bad.mkdir()
    write_video(good / "one.mp4", frames(1), fps=10)
    write_video(good / "five.mp4", frames(5), fps=10)
    write_video(good / "gray.mkv", frames(4), fps=10, pix_fmt="gray")
    write_video(good / "tiny8x8.mp4", frames(3, 8, 8), fps=10)
    write_video(good / "wide.mp4", frames(3, 96, 8), fps=10)
    write_video(good / "odd15x9.mkv", frames(3, 15, 9), fps=10)
    write_video(good / "vfr.mkv", frames(4), fps=10, pts=np.array([0, 40, 200, 260]))
    write_video(good / "ünï cödé space.mp4", frames(3), fps=10)
    full = write_video(root / "long.mkv", frames(40), fps=10).read_bytes()
    (good / "truncated.mkv").write_bytes(full[: len(full) // 2])
    (bad / "zero.avi").write_bytes(b"")
    (bad / "text.avi").write_text("this is not a video\n")
    (bad / "random.avi").write_bytes(np.random.default_rng(1).bytes(4096))
    mp4 = write_video(root / "whole.mp4", frames(20), fps=10).read_bytes()
    (bad / "trunc_head.mp4").write_bytes(mp4[: len(mp4) // 3])
    write_audio_only(bad / "audio.mp4")
    os.symlink(root / "missing.mp4", bad / "dangling.avi")
    (bad / "folder.avi").mkdir()
    (root / "long.mkv").unlink()
    (root / "whole.mp4").unlink()
    return root


def run(argv, capsys):
    """Run ``cstp ARGV`` in this process; return (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def test_build_caches_awkward_videos_and_lists_the_undecodable_ones(awkward_root, tmp_path, capsys):
    out = tmp_path / "awk.h5"
    code, stdout, stderr = run(["cache", "build", str(awkward_root), "-o", str(out), "--size", "20x12", "--workers", "2", "-q"], capsys)
    assert code == 0
    r = CacheReader(out)
    counts = dict(zip(r.paths, r.num_frames.tolist()))
    for name, n in CACHED.items():
        assert counts[f"good/{name}"] == n, name
    assert 0 < counts["good/truncated.mkv"] < 40
    assert "warning: good/truncated.mkv" in stderr
    reasons = dict(r.failures)
    assert set(reasons) == {f"bad/{name}" for name in FAILED}
    for name, word in FAILED.items():
        assert word in reasons[f"bad/{name}"], (name, reasons[f"bad/{name}"])
        assert f"bad/{name}: " in stdout  # listed at the end
    assert r.read(r.paths.index("good/ünï cödé space.mp4"), [0, 2]).shape == (2, 12, 20, 3)


def test_info_and_verify_of_a_built_cache(awkward_root, tmp_path, capsys):
    out = tmp_path / "c.h5"
    assert run(["cache", "build", str(awkward_root / "good"), "-o", str(out), "--size", "8x8", "--workers", "0", "-q"], capsys)[0] == 0
    code, stdout, _ = run(["cache", "info", str(out)], capsys)
    assert code == 0 and "format       version 1" in stdout and "frame size   8x8" in stdout
    code, stdout, _ = run(["cache", "verify", str(out)], capsys)
    assert code == 0 and stdout.startswith("ok:")


def test_verify_exits_1_on_a_damaged_cache(awkward_root, tmp_path, capsys):
    out = tmp_path / "c.h5"
    run(["cache", "build", str(awkward_root / "good"), "-o", str(out), "--size", "8x8", "--workers", "0", "-q"], capsys)
    with h5py.File(out, "r+") as f:
        f["videos/offsets"][1] = 0
    code, stdout, stderr = run(["cache", "verify", str(out)], capsys)
    assert code == 1 and "problem: videos/offsets not strictly increasing" in stdout
    assert stderr.count("\n") == 1 and stderr.startswith("error:")


def test_missing_dataset_folder_is_one_line_and_exit_1(tmp_path, capsys):
    code, _, stderr = run(["cache", "build", str(tmp_path / "nope"), "-o", str(tmp_path / "x.h5")], capsys)
    assert code == 1 and stderr.count("\n") == 1 and "does not exist" in stderr


def test_unwritable_output_folder_is_one_line_and_exit_1(awkward_root, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code, _, stderr = run(["cache", "build", str(awkward_root / "good"), "-o", str(blocker / "sub" / "x.h5"), "-q"], capsys)
    assert code == 1 and stderr.count("\n") == 1 and "cannot create the output folder" in stderr


def test_build_where_nothing_decodes_lists_failures_and_exits_1(awkward_root, tmp_path, capsys):
    out = tmp_path / "bad.h5"
    code, stdout, stderr = run(["cache", "build", str(awkward_root / "bad"), "-o", str(out), "--workers", "0", "-q"], capsys)
    assert code == 1 and not out.exists()
    assert "7 video(s) failed" in stdout and stderr.count("\n") == 1 and "no cache was written" in stderr


def test_bad_size_is_a_usage_error(tmp_path, capsys):
    code, _, stderr = run(["cache", "build", str(tmp_path), "--size", "171by128"], capsys)
    assert code == 2 and "WIDTHxHEIGHT" in stderr


def test_a_cache_file_given_as_dataset_is_refused(tmp_path, capsys):
    path = tmp_path / "x.h5"
    with h5py.File(path, "w"):
        pass
    code, _, stderr = run(["cache", "build", str(path)], capsys)
    assert code == 1 and "already a cache file" in stderr


def test_info_of_a_missing_file_is_one_line_and_exit_1(tmp_path, capsys):
    code, _, stderr = run(["cache", "info", str(tmp_path / "none.h5")], capsys)
    assert code == 1 and stderr.count("\n") == 1 and "does not exist" in stderr
