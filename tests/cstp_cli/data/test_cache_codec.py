"""The jpeg frame codec of the cache: round trip, reads, format versions, info, verify, resume."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
import cache_fakes as F

from cstp_cli.data.cache import CacheReader, build_cache, cache_info, verify_cache
from cstp_cli.data.cache.codec import (
    DEFAULT_JPEG_QUALITY,
    Codec,
    decode_cpu,
    encode_jpeg,
    parse_codec,
    psnr,
)
from cstp_cli.data.memcache import render_videos, write_cache
from cstp_cli.errors import CacheError, UsageError

WH = (40, 32)


def smooth_frames(n: int, seed: int = 0) -> np.ndarray:
    """uint8 [n, 32, 40, 3]: moving colour gradients (JPEG-friendly, like natural frames)."""
    w, h = WH
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 6.28, 3)
    out = [np.stack([127 + 100 * np.sin(xx / 7 + yy / 11 + t / 3 + phase[c]) for c in range(3)], -1) for t in range(n)]
    return np.clip(out, 0, 255).astype(np.uint8)


def pil_reference(frames: np.ndarray, quality: int) -> np.ndarray:
    """Independent reference: PIL encode (4:4:4) then PIL decode of every frame."""
    out = []
    for f in frames:
        buf = io.BytesIO()
        Image.fromarray(f).save(buf, format="JPEG", quality=quality, subsampling=0)
        out.append(np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")))
    return np.stack(out)


@pytest.fixture(scope="module")
def videos():
    return [smooth_frames(7, 0), smooth_frames(5, 1), smooth_frames(9, 2)]


@pytest.fixture(scope="module")
def jpeg_cache(tmp_path_factory, videos):
    return write_cache(videos, tmp_path_factory.mktemp("jpeg") / "j.h5", labels=[0, 1, 0], codec="jpeg")


def test_parse_codec_accepts_raw_jpeg_and_quality_and_refuses_the_rest():
    assert parse_codec(None) == parse_codec("raw") == Codec()
    assert parse_codec("jpeg") == Codec("jpeg", DEFAULT_JPEG_QUALITY) == parse_codec("JPEG:90")
    assert parse_codec("jpeg:75").quality == 75
    for bad in ("png", "jpeg:0", "jpeg:101", "raw:5", "jpeg:x"):
        with pytest.raises(UsageError):
            parse_codec(bad)


def test_jpeg_cache_frames_match_an_independent_pil_reference(jpeg_cache, videos):
    r = CacheReader(jpeg_cache)
    assert r.codec == Codec("jpeg", 90) and r.frame_wh == WH
    for v, frames in enumerate(videos):
        got = r.read(v, np.arange(len(frames)))
        ref = pil_reference(frames, 90)
        assert got.dtype == np.uint8 and got.shape == frames.shape
        assert np.abs(got.astype(int) - ref).max() <= 1  # same libjpeg bytes; decoders may round differently
        assert psnr(frames, got) > 36.0


def test_jpeg_read_handles_repeats_and_any_order_like_fancy_indexing(jpeg_cache):
    r = CacheReader(jpeg_cache)
    every = r.read(2, np.arange(9))
    for idx in (np.array([8, 0, 8, 3]), np.arange(9)[::-1], np.array([4]), np.array([[1, 2], [2, 7]])):
        np.testing.assert_array_equal(r.read(2, idx.reshape(-1)), every[idx.reshape(-1)])
    np.testing.assert_array_equal(r.read_pair(2, np.array([[1, 2], [2, 7]])), every[[[1, 2], [2, 7]]])
    with pytest.raises(IndexError):
        r.read(1, [5])


def test_jpeg_cache_decodes_only_the_frames_asked_for(jpeg_cache, monkeypatch):
    from cstp_cli.data.cache import reader as reader_mod

    seen = []
    real = reader_mod.decode_cpu

    def counting(blobs, out, where=""):
        seen.append(len(blobs))
        return real(blobs, out, where)

    monkeypatch.setattr(reader_mod, "decode_cpu", counting)
    CacheReader(jpeg_cache).read_pair(0, np.array([[0, 1, 2], [2, 3, 6]]))
    assert seen == [5]  # 6 named, 5 distinct; the other 2 of the video's 7 frames untouched


def test_jpeg_cache_is_version_2_and_a_raw_cache_stays_version_1(tmp_path, jpeg_cache):
    raw = write_cache([smooth_frames(3)], tmp_path / "r.h5")
    with h5py.File(raw, "r") as f:
        assert f.attrs["format_version"] == 1 and "codec" not in f.attrs and "frames" in f
    with h5py.File(jpeg_cache, "r") as f:
        assert f.attrs["format_version"] == 2 and f.attrs["codec"] == "jpeg" and "frames" not in f
    assert CacheReader(raw).codec.is_raw
    assert cache_info(raw)["codec"] == {"codec": "raw", "bytes_per_frame": 40 * 32 * 3, "raw_bytes_per_frame": 40 * 32 * 3, "psnr_db": None}


def test_jpeg_cache_has_its_own_keyed_name():
    from cstp_cli.data.cache.naming import cache_name

    index = F.make_index(Path("/tmp/some-ds"), ["a/v.avi"])
    raw, jpg = cache_name(index, WH), cache_name(index, WH, codec="jpeg:90")
    assert raw.endswith("-40x32.h5") and jpg.endswith("-40x32-jpeg90.h5") and raw[:-4] != jpg[: len(raw) - 4]


def test_info_reports_jpeg_bytes_per_frame_and_the_psnr_of_the_build_sample(jpeg_cache, videos):
    info = cache_info(jpeg_cache)["codec"]
    assert info["codec"] == "jpeg:90" and info["raw_bytes_per_frame"] == 40 * 32 * 3
    every = np.concatenate(videos)
    sizes = []
    for f in every:  # independent: PIL's own file sizes at the same settings
        buf = io.BytesIO()
        Image.fromarray(f).save(buf, format="JPEG", quality=90, subsampling=0)
        sizes.append(len(buf.getvalue()))
    assert info["bytes_per_frame"] == pytest.approx(np.mean(sizes), abs=0.1)
    sample = np.concatenate([v[::16] for v in videos])  # frames 0, 16, … of each video
    assert info["psnr_db"] == pytest.approx(psnr(sample, pil_reference(sample, 90)), abs=0.05)


def test_cache_info_command_prints_codec_bytes_per_frame_and_psnr(jpeg_cache, capsys):
    from cstp_cli.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["cache", "info", str(jpeg_cache)])
    out = capsys.readouterr().out
    assert exc.value.code in (0, None)
    line = next(x for x in out.splitlines() if x.startswith("codec"))
    assert "jpeg:90" in line and "kB/frame" in line and "PSNR" in line and "dB" in line


def test_verify_passes_a_sound_jpeg_cache_and_finds_damaged_offsets(tmp_path, videos):
    path = write_cache(videos, tmp_path / "j.h5", codec="jpeg:80")
    assert verify_cache(path) == []
    with h5py.File(path, "r+") as f:
        off = f["jpeg/offsets"]
        off[3] = off[2]  # frame 2 now has no bytes
    problems = verify_cache(path, check_sources=False)
    assert any("jpeg/offsets not strictly increasing" in p for p in problems)


def test_verify_finds_jpeg_bytes_that_do_not_decode(tmp_path, videos):
    path = write_cache(videos, tmp_path / "j.h5", codec="jpeg")
    with h5py.File(path, "r+") as f:
        a, b = (int(x) for x in f["jpeg/offsets"][0:2])
        f["jpeg/data"][a:b] = np.zeros(b - a, np.uint8)
    assert any("cannot be decoded" in p for p in verify_cache(path, check_sources=False))
    with pytest.raises(CacheError, match="does not decode"):
        CacheReader(path).read(0, [0])


def test_jpeg_refuses_compression_in_one_line(tmp_path):
    index = F.make_dataset(tmp_path / "ds", {"a/v.avi": "frames=2 seed=1"})
    with pytest.raises(CacheError, match="--compression"):
        build_cache(index.root, out=tmp_path / "c.h5", size=(12, 8), workers=0, progress=False, index=index,
                    decode=F.fake_decode, compression="lzf", codec="jpeg")


def test_jpeg_build_in_decoder_processes_matches_the_inline_build(tmp_path):
    specs = {f"a/v{i}.avi": f"frames=3 seed={i}" for i in range(3)}
    index = F.make_dataset(tmp_path / "ds", specs)
    kw = {"size": (12, 8), "progress": False, "index": index, "decode": F.fake_decode, "codec": "jpeg:70"}
    inline = build_cache(index.root, out=tmp_path / "a.h5", workers=0, **kw)
    pooled = build_cache(index.root, out=tmp_path / "b.h5", workers=1, **kw)
    a, b = CacheReader(inline.path), CacheReader(pooled.path)
    for v in range(3):
        np.testing.assert_array_equal(a.read(v, np.arange(3)), b.read(v, np.arange(3)))


def test_killed_jpeg_build_resumes_from_finished_shards(tmp_path):
    flag = tmp_path / "kill-now"
    flag.write_text("")
    specs = {f"a/v{i}.avi": f"frames=2 seed={i}" for i in range(4)}
    specs["a/v4.avi"] = f"frames=2 seed=4 kill_if={flag}"
    specs["a/v5.avi"] = "frames=2 seed=5"
    index = F.make_dataset(tmp_path / "ds", specs)
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]); import cache_fakes as F\n"
        "from pathlib import Path\nfrom cstp_cli.data.cache import build_cache\n"
        "idx = F.make_index(Path(sys.argv[2]), sys.argv[4:])\n"
        "build_cache(idx.root, out=sys.argv[3], size=(12, 8), workers=0, progress=False, index=idx,\n"
        "            decode=F.fake_decode, shard_videos=2, codec='jpeg')\n"
    )
    fakes = str(Path(__file__).parent)
    out = tmp_path / "c.h5"
    proc = subprocess.run([sys.executable, "-c", script, fakes, str(index.root), str(out), *specs], check=False, timeout=60)
    assert proc.returncode == -signal.SIGKILL and not out.exists()
    shards = sorted((tmp_path / "c.h5.shards").glob("shard-*.h5"))
    assert len(shards) == 2 and json.loads((tmp_path / "c.h5.shards" / "manifest.json").read_text())["codec"] == "jpeg:90"
    flag.unlink()
    log = tmp_path / "calls.txt"
    import functools

    result = build_cache(index.root, out=out, size=(12, 8), workers=0, progress=False,
                         index=F.make_index(index.root, list(specs)), shard_videos=2, codec="jpeg",
                         decode=functools.partial(F.fake_decode, log=log))
    assert log.read_text().splitlines() == ["v4.avi", "v5.avi"] and result.cached == 6
    r = CacheReader(out)
    assert r.codec.name == "jpeg" and r.num_videos == 6 and verify_cache(out, check_sources=False) == []
    ref = F.reference_frames(0, 2, (12, 8))
    back = decode_cpu(encode_jpeg(ref, 90).blobs(), np.empty_like(ref))
    np.testing.assert_array_equal(r.read(0, [0, 1]), back)


def test_resume_with_another_codec_starts_over(tmp_path):
    specs = {f"a/v{i}.avi": f"frames=2 seed={i}" for i in range(2)}
    index = F.make_dataset(tmp_path / "ds", specs)
    folder = tmp_path / "c.h5.shards"
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps({"stale": True}))
    (folder / "shard-00000.h5").write_bytes(b"junk")
    result = build_cache(index.root, out=tmp_path / "c.h5", size=(12, 8), workers=0, progress=False, index=index,
                         decode=F.fake_decode, codec="jpeg")
    assert result.cached == 2 and not folder.exists()


def test_reader_of_a_jpeg_cache_pickles_without_its_maps_and_reopens(jpeg_cache):
    import pickle

    r = CacheReader(jpeg_cache)
    expected = r.read(0, [0, 6])
    assert r._dset is not None
    clone = pickle.loads(pickle.dumps(r))
    assert clone._dset is None and clone._h5 is None
    np.testing.assert_array_equal(clone.read(0, [0, 6]), expected)


def test_mixed_sizes_of_render_videos_stay_readable_after_jpeg(tmp_path):
    videos = render_videos(2, 4, WH, seed=1)
    path = write_cache(videos, tmp_path / "m.h5", codec="jpeg:95")
    got = CacheReader(path).read(1, np.arange(4))
    assert psnr(videos[1], got) > 30.0  # hard edges + noise: lower than smooth frames, still close


def test_a_dataset_folder_resolves_to_its_jpeg_cache_when_no_raw_one_exists(tmp_path, monkeypatch):
    from cstp_cli.data.resolve import resolve_data

    monkeypatch.setenv("CSTP_CACHE_DIR", str(tmp_path / "cachedir"))
    index = F.make_dataset(tmp_path / "ds", {"a/v0.avi": "frames=3 seed=1", "b/v1.avi": "frames=2 seed=2"})
    built = build_cache(index.root, size=(12, 8), workers=0, progress=False, index=index, decode=F.fake_decode, codec="jpeg")
    assert built.path.parent == tmp_path / "cachedir" and built.path.name.endswith("-12x8-jpeg90.h5")
    monkeypatch.setattr("cstp_cli.data.datasets.load_dataset", lambda root, *a, **k: index)
    assert resolve_data(index.root, size=(12, 8), workers=0, progress=False, build=False) == built.path
