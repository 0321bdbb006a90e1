"""Commands on a jpeg cache (issue 14): ``cache build --codec jpeg``, ``info``, ``verify``, and a
downstream command (``retrieve``) reading the jpeg cache unchanged."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cstp_cli.cli import main
from cstp_cli.data.cache import CacheReader

torch.set_num_threads(1)


def run(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def test_cache_build_codec_jpeg_writes_a_cache_that_verifies_and_reads_like_raw(tiny_ucf_root, tmp_path, capsys):
    raw, jpg = tmp_path / "raw.h5", tmp_path / "jpg.h5"
    common = ["--size", "32x24", "--workers", "0", "-q"]
    assert run(["cache", "build", str(tiny_ucf_root), "-o", str(raw), *common], capsys)[0] == 0
    code, out, err = run(["cache", "build", str(tiny_ucf_root), "-o", str(jpg), "--codec", "jpeg:95", *common], capsys)
    assert code == 0, err
    a, b = CacheReader(raw), CacheReader(jpg)
    assert b.codec.spec == "jpeg:95" and a.codec.is_raw
    assert a.paths == b.paths and np.array_equal(a.labels, b.labels) and np.array_equal(a.offsets, b.offsets)
    assert all(np.array_equal(a.split(k, "test"), b.split(k, "test")) for k in a.folds)
    diff = np.abs(a.read(0, np.arange(a.num_frames[0])).astype(int) - b.read(0, np.arange(b.num_frames[0])))
    assert diff.mean() < 3.0
    code, out, _ = run(["cache", "verify", str(jpg)], capsys)
    assert code == 0 and out.startswith("ok:")
    code, out, _ = run(["cache", "info", str(jpg), "--json"], capsys)
    assert code == 0 and json.loads(out)["codec"]["codec"] == "jpeg:95" and json.loads(out)["format_version"] == 2


def test_cache_build_refuses_an_unknown_codec_in_one_line(tiny_ucf_root, tmp_path, capsys):
    code, _, err = run(["cache", "build", str(tiny_ucf_root), "-o", str(tmp_path / "x.h5"), "--codec", "webp"], capsys)
    assert code == 2 and "--codec" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.h5").exists()


def test_retrieve_reads_a_jpeg_cache_unchanged(tmp_path, capsys):
    from cstp_cli.data.memcache import render_videos, write_cache

    videos = render_videos(9, 12, (40, 32), seed=5)
    path = write_cache(videos, tmp_path / "j.h5", labels=[v % 3 for v in range(9)], train=[v % 3 != 2 for v in range(9)], codec="jpeg")
    argv = ["retrieve", str(path), "--init", "random", "--backbone", "r21d", "--width", "tiny", "--frames", "8",
            "--clip-size", "32", "--size", "40x32", "--workers", "0", "-q", "--clips", "2", "--out", str(tmp_path / "r")]
    code, out, err = run(argv, capsys)
    assert code == 0, err
    report = json.loads((tmp_path / "r" / "retrieval.json").read_text())
    assert report["gallery"] == 6 and report["queries"] == 3 and "R@1" in out
