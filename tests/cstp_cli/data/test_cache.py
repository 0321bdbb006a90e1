"""The HDF5 cache: format round trip, reads, workers, shards/resume, timeouts, checks."""

from __future__ import annotations

import functools
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import cache_fakes as F  # noqa: E402

from cstp_cli.data import cache, decodepool  # noqa: E402
from cstp_cli.data.cache import build as cache_build  # noqa: E402
from cstp_cli.data.cache import CacheReader, build_cache, cache_info, verify_cache  # noqa: E402
from cstp_cli.errors import CacheError  # noqa: E402

SIZE = (12, 8)
SPECS = {
    "a/v0.avi": "frames=5 seed=10",
    "b/ünï cödé 1.avi": "frames=1 seed=11",
    "c/v2.avi": "frames=9 seed=12",
    "a/v3.avi": "frames=3 seed=13",
    "b/v4.avi": "frames=6 seed=14",
    "c/v5.avi": "frames=2 seed=15",
}


def seeds_and_counts(specs):
    return [(int(F.parse_spec_text(s)["seed"]), int(F.parse_spec_text(s)["frames"])) for s in specs.values()]


def build(tmp_path, specs=SPECS, name="c.h5", index=None, **kw):
    root = tmp_path / "ds"
    index = index or F.make_dataset(root, specs, folds=kw.pop("folds", 3))
    kw.setdefault("workers", 0)
    kw.setdefault("decode", F.fake_decode)
    result = build_cache(root, out=tmp_path / name, size=SIZE, progress=False, index=index, **kw)
    return result, index


@pytest.fixture(params=["none", "lzf"])
def built(tmp_path, request):
    """A cache of SPECS; ``none`` is read through the memory map, ``lzf`` through h5py."""
    result, index = build(tmp_path, compression=request.param)
    return result, index, CacheReader(result.path)


@pytest.fixture
def plain(tmp_path):
    """An uncompressed cache of SPECS."""
    result, index = build(tmp_path)
    return result, index, CacheReader(result.path)


def test_round_trip_keeps_frames_offsets_labels_paths_and_splits(built):
    result, index, r = built
    refs = [F.reference_frames(s, n, SIZE) for s, n in seeds_and_counts(SPECS)]
    assert result.cached == 6 and r.num_videos == 6 and r.frame_wh == SIZE
    assert r.paths == list(SPECS) and r.classes == ["a", "b", "c"]
    np.testing.assert_array_equal(r.num_frames, [len(x) for x in refs])
    np.testing.assert_array_equal(r.offsets, np.concatenate([[0], np.cumsum([len(x) for x in refs])]))
    np.testing.assert_array_equal(r.labels, [v.label for v in index.videos])
    assert r.groups == [v.group for v in index.videos]
    assert r.folds == [1, 2, 3]
    for k in (1, 2, 3):
        test = [i for i, v in enumerate(index.videos) if v.splits[k] == "test"]
        np.testing.assert_array_equal(r.split(k, "test"), test)
        assert sorted(r.split(k, "train").tolist() + test) == list(range(6))
    for v, ref in enumerate(refs):
        np.testing.assert_array_equal(r.read(v, np.arange(len(ref))), ref)


def test_read_matches_numpy_for_random_indices_with_repeats_and_descending(built):
    _, _, r = built
    ref = F.reference_frames(12, 9, SIZE)
    rng = np.random.default_rng(0)
    cases = [rng.integers(0, 9, size=k) for k in (1, 4, 16, 32)]
    cases += [np.arange(9)[::-1], np.array([0, 8, 0, 8]), np.array([0, 3, 6]), np.array([1, 2, 4, 8, 7])]
    for idx in cases:
        np.testing.assert_array_equal(r.read(2, idx), ref[idx])


def test_read_pair_returns_two_clips_in_plan_order(built):
    _, _, r = built
    ref = F.reference_frames(14, 6, SIZE)
    idx = np.array([[0, 2, 4], [5, 3, 1]])
    out = r.read_pair(4, idx)
    assert out.shape == (2, 3, SIZE[1], SIZE[0], 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, ref[idx])


def test_read_refuses_frame_index_outside_the_video(built):
    _, _, r = built
    with pytest.raises(IndexError):
        r.read(0, [5])
    with pytest.raises(IndexError):
        r.read(0, [-1])


def test_uncompressed_cache_is_read_through_a_memory_map_of_its_chunks(tmp_path):
    result, _ = build(tmp_path)
    r = CacheReader(result.path)
    assert r.attrs["frames_offset"] > 0
    np.testing.assert_array_equal(r.read(2, [8, 0, 8]), F.reference_frames(12, 9, SIZE)[[8, 0, 8]])
    assert isinstance(r._view, np.memmap)


def test_read_writes_into_a_given_batch_slot(built):
    _, _, r = built
    batch = np.zeros((2, 2, 3, SIZE[1], SIZE[0], 3), np.uint8)
    r.read_pair(2, np.array([[0, 1, 2], [8, 7, 6]]), out=batch[1])
    np.testing.assert_array_equal(batch[1], F.reference_frames(12, 9, SIZE)[[[0, 1, 2], [8, 7, 6]]])
    assert not batch[0].any()


def test_h5py_reads_never_use_fancy_or_step_selection(tmp_path, monkeypatch):
    result, _ = build(tmp_path, compression="lzf")
    r = CacheReader(result.path)
    seen = []
    real = h5py.Dataset.__getitem__

    def spy(self, key, *a, **kw):
        seen.append(key)
        return real(self, key, *a, **kw)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
    r.read(2, np.array([8, 0, 1, 2, 7, 4, 0]))
    assert seen and all(isinstance(k, (int, np.integer)) or (isinstance(k, slice) and k.step is None) for k in seen)


def test_reader_pickles_without_its_handle_and_reopens(built):
    _, _, r = built
    first = r.read(0, [0, 1])
    clone = pickle.loads(pickle.dumps(r))
    assert clone._h5 is None
    np.testing.assert_array_equal(clone.read(0, [0, 1]), first)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_reader_works_in_dataloader_workers(plain, method):
    torch = pytest.importorskip("torch")
    _, _, r = plain
    r.read(0, [0])  # a handle open in the parent must not leak into the workers
    loader = torch.utils.data.DataLoader(
        F.PairSet(r), batch_size=3, num_workers=1, multiprocessing_context=method, collate_fn=F.stack
    )
    got = np.concatenate(list(loader))
    want = np.stack([F.PairSet(r)[v] for v in range(r.num_videos)])
    np.testing.assert_array_equal(got, want)


def test_killed_build_leaves_no_final_file_and_resumes_from_finished_shards(tmp_path, monkeypatch):
    real = cache_build.write_shard
    calls = {"n": 0}

    def dying(*a, **kw):
        if calls["n"] == 2:
            raise KeyboardInterrupt  # the build is killed after two finished shards
        calls["n"] += 1
        return real(*a, **kw)

    monkeypatch.setattr(cache_build, "write_shard", dying)
    index = F.make_dataset(tmp_path / "ds", SPECS)
    with pytest.raises(KeyboardInterrupt):
        build(tmp_path, index=index, shard_videos=2)
    shards = cache.shard_dir_for(tmp_path / "c.h5")
    assert not (tmp_path / "c.h5").exists()
    assert len(list(shards.glob("shard-*.h5"))) == 2
    (shards / "shard-00009.h5.tmp").write_bytes(b"half-written")  # killed while writing

    monkeypatch.setattr(cache_build, "write_shard", real)
    log = tmp_path / "calls.txt"
    result, _ = build(tmp_path, index=index, shard_videos=2, decode=functools.partial(F.fake_decode, log=log))
    assert len(log.read_text().splitlines()) == 2  # 6 videos - 4 in finished shards
    assert not shards.exists() and result.cached == 6
    r = CacheReader(result.path)
    for v, (seed, n) in enumerate(seeds_and_counts(SPECS)):
        np.testing.assert_array_equal(r.read(v, np.arange(n)), F.reference_frames(seed, n, SIZE))


def test_build_killed_by_sigkill_resumes_from_finished_shards(tmp_path):
    flag = tmp_path / "kill-now"
    flag.write_text("")
    specs = {f"a/v{i}.avi": f"frames=2 seed={i}" for i in range(4)}
    specs["a/v4.avi"] = f"frames=2 seed=4 kill_if={flag}"
    specs["a/v5.avi"] = "frames=2 seed=5"
    index = F.make_dataset(tmp_path / "ds", specs)
    script = (
        "import sys, functools; sys.path.insert(0, sys.argv[1]); import cache_fakes as F\n"
        "from pathlib import Path\nfrom cstp_cli.data.cache import build_cache\n"
        "idx = F.make_index(Path(sys.argv[2]), sys.argv[4:])\n"
        "build_cache(idx.root, out=sys.argv[3], size=(12, 8), workers=0, progress=False, index=idx,\n"
        "            decode=F.fake_decode, shard_videos=2)\n"
    )
    fakes = str(Path(__file__).parent)
    proc = subprocess.run([sys.executable, "-c", script, fakes, str(index.root), str(tmp_path / "c.h5"), *specs], timeout=60)
    assert proc.returncode == -signal.SIGKILL and not (tmp_path / "c.h5").exists()
    flag.unlink()
    log = tmp_path / "calls.txt"
    result, _ = build(tmp_path, index=F.make_index(index.root, list(specs)), shard_videos=2,
                      decode=functools.partial(F.fake_decode, log=log))
    assert log.read_text().splitlines() == ["v4.avi", "v5.avi"] and result.cached == 6


def test_interrupted_rebuild_keeps_the_previous_cache(tmp_path, monkeypatch):
    result, _ = build(tmp_path)
    before = result.path.read_bytes()

    def dying(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(cache_build, "_assemble", dying)
    with pytest.raises(KeyboardInterrupt):
        build(tmp_path, specs={**SPECS, "c/new.avi": "frames=4 seed=99"})
    assert result.path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if "c.h5" in p.name) == ["c.h5", "c.h5.shards"]


def test_hanging_or_crashing_decoder_costs_one_video(tmp_path):
    specs = {"a/ok1.avi": "frames=2 seed=1", "a/hang.avi": "sleep=60", "a/crash.avi": "crash", "a/ok2.avi": "frames=3 seed=2"}
    result, _ = build(tmp_path, specs=specs, workers=1, timeout=1.5)
    reasons = dict(result.failed)
    assert result.cached == 2 and set(reasons) == {"a/hang.avi", "a/crash.avi"}
    assert "timed out" in reasons["a/hang.avi"] and "crashed" in reasons["a/crash.avi"]
    assert CacheReader(result.path).paths == ["a/ok1.avi", "a/ok2.avi"]


def test_decoder_processes_that_never_start_fail_the_build_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(decodepool, "WORKER_START_TIMEOUT", 0.0)
    with pytest.raises(CacheError, match="did not start within 0 s") as exc:
        build(tmp_path, workers=1)
    assert "\n" not in str(exc.value) and not (tmp_path / "c.h5").exists()


def test_failures_and_warnings_are_recorded_with_reasons(tmp_path):
    specs = {"a/ok.avi": "frames=2 seed=1 warn", "a/bad.avi": "fail", "a/empty.avi": ""}
    result, _ = build(tmp_path, specs=specs)
    assert result.failed == [("a/bad.avi", "fake: no decodable frame"), ("a/empty.avi", "empty file (0 bytes)")]
    assert result.warnings == ["a/ok.avi: fake: decodable prefix only"]
    assert CacheReader(result.path).failures == result.failed


def test_build_with_no_decodable_video_writes_nothing(tmp_path):
    result, _ = build(tmp_path, specs={"a/bad.avi": "fail", "a/bad2.avi": "fail"})
    assert result.path is None and result.cached == 0 and len(result.failed) == 2
    assert not (tmp_path / "c.h5").exists() and not cache.shard_dir_for(tmp_path / "c.h5").exists()


def _set_attr(path, name, value):
    with h5py.File(path, "r+") as f:
        f.attrs[name] = value


def test_other_format_version_is_refused_in_one_line(plain):
    result, _, _ = plain
    _set_attr(result.path, "format_version", 99)
    with pytest.raises(CacheError, match="format version 99") as exc:
        CacheReader(result.path)
    assert "\n" not in str(exc.value)


def test_other_frame_size_is_refused_in_one_line(plain):
    result, _, _ = plain
    with pytest.raises(CacheError, match="12x8 frames but 171x128") as exc:
        CacheReader(result.path, size=(171, 128))
    assert "\n" not in str(exc.value)
    assert CacheReader(result.path, size=SIZE).frame_wh == SIZE


def test_file_that_is_not_a_cache_is_refused(tmp_path):
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f["x"] = np.zeros(3)
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5 at all")
    for path, why in ((plain, "not a cstp cache"), (junk, "not a readable HDF5"), (tmp_path / "none.h5", "does not exist")):
        with pytest.raises(CacheError, match=why):
            CacheReader(path)


def test_reuse_keeps_an_up_to_date_cache_and_rebuilds_after_a_change(tmp_path):
    result, index = build(tmp_path)
    log = tmp_path / "calls.txt"
    again = build_cache(index.root, out=result.path, size=SIZE, progress=False, index=index, workers=0,
                        decode=functools.partial(F.fake_decode, log=log), reuse=True)
    assert again.reused and not log.exists()
    (index.root / "a/v0.avi").write_text("frames=7 seed=10")
    again = build_cache(index.root, out=result.path, size=SIZE, progress=False, index=index, workers=0,
                        decode=functools.partial(F.fake_decode, log=log), reuse=True)
    assert not again.reused and len(log.read_text().splitlines()) == 6
    assert CacheReader(result.path).num_frames[0] == 7


def test_info_reports_size_splits_frames_build_and_failures(tmp_path):
    result, _ = build(tmp_path, specs={**SPECS, "x/bad.avi": "fail"}, fps=12.5)
    d = cache_info(result.path)
    assert d["format_version"] == cache.FORMAT_VERSION and d["frame_size"] == "12x8"
    assert d["videos"] == 6 and d["frames"] == 26 and d["bytes"] == result.path.stat().st_size
    assert d["splits"]["1"] == {"train": 4, "test": 2, "unused": 0}
    assert d["build"]["fps"] == 12.5 and d["build"]["compression"] == "none"
    assert d["failures"] == [{"path": "x/bad.avi", "reason": "fake: no decodable frame"}]
    assert set(d["versions"]) >= {"h5py", "av", "numpy", "cstp"}
    assert CacheReader(result.path).fps.tolist() == [12.5] * 6


def test_verify_finds_no_problem_in_a_sound_cache(plain):
    assert verify_cache(plain[0].path) == []


def test_verify_detects_corrupt_offsets(plain):
    path = plain[0].path
    with h5py.File(path, "r+") as f:
        f["videos/offsets"][3] = f["videos/offsets"][2] - 1
    problems = verify_cache(path)
    assert any("not strictly increasing" in p for p in problems)


def test_verify_detects_offsets_not_matching_frames(plain):
    path = plain[0].path
    with h5py.File(path, "r+") as f:
        f["videos/offsets"][-1] += 4
    assert any("frames holds 26 frames" in p for p in verify_cache(path))


def test_verify_detects_a_changed_source_file(plain):
    result, index, _ = plain
    (index.root / "c/v2.avi").write_text("frames=9 seed=12 changed")
    problems = verify_cache(result.path)
    assert problems == ["c/v2.avi: source file changed since the cache was built (fingerprint differs); rebuild the cache"]


def test_verify_detects_a_frames_offset_that_does_not_match_the_layout(plain):
    path = plain[0].path
    _set_attr(path, "frames_offset", plain[2].attrs["frames_offset"] + 1)
    assert any("frames_offset" in p for p in verify_cache(path))


def test_features_file_round_trip(tmp_path):
    from cstp_cli.data.cache import read_features, write_features

    feats = np.arange(12, dtype=np.float32).reshape(3, 4)
    path = write_features(tmp_path / "f.h5", feats, np.array([2, 0, 1]), ["a b.avi", "ü.mp4", "c.mkv"], {"layer": "pooled", "videos": [4, 5, 6]})
    got = read_features(path)
    assert np.array_equal(got["features"], feats) and got["labels"].tolist() == [2, 0, 1]
    assert got["paths"] == ["a b.avi", "ü.mp4", "c.mkv"] and got["attrs"]["layer"] == "pooled"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_features_reader_refuses_a_cache_file(tmp_path):
    import h5py

    from cstp_cli.data.cache import read_features

    with h5py.File(tmp_path / "x.h5", "w") as f:
        f.attrs["format"] = "something else"
    with pytest.raises(CacheError, match="not a cstp features file"):
        read_features(tmp_path / "x.h5")
