"""What DATA means: a dataset root (cached in the cache folder, keyed) or a cache file."""

from __future__ import annotations

import os

import numpy as np
import pytest

from cstp_cli.data.cache import CacheReader
from cstp_cli.errors import CacheError, DataError
from cstp_cli.data.resolve import resolve_data
from cstp_cli.data.video import write_video

SIZE = (16, 12)


@pytest.fixture
def class_folders(tmp_path, monkeypatch):
    """Two class folders with one 3-frame 16×16 H.264 video each; cache folder in tmp."""
    monkeypatch.setenv("CSTP_CACHE_DIR", str(tmp_path / "cachedir"))
    root = tmp_path / "clips"
    rng = np.random.default_rng(0)
    for cls in ("jump", "run"):
        (root / cls).mkdir(parents=True)
        write_video(root / cls / f"{cls}.mp4", rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8), fps=10)
    return root


def test_dataset_root_is_cached_in_the_cache_folder_and_reused(class_folders, tmp_path):
    path = resolve_data(class_folders, size=SIZE, workers=0, progress=False)
    assert path.parent == tmp_path / "cachedir" and path.name.startswith("clips-") and path.name.endswith("-16x12.h5")
    r = CacheReader(path)
    assert r.num_videos == 2 and r.frame_wh == SIZE and r.classes == ["jump", "run"]
    stamp = path.stat().st_mtime_ns
    assert resolve_data(class_folders, size=SIZE, workers=0, progress=False) == path
    assert path.stat().st_mtime_ns == stamp  # reused, not rebuilt


def test_changed_sources_or_size_give_another_cache(class_folders):
    first = resolve_data(class_folders, size=SIZE, workers=0, progress=False)
    other_size = resolve_data(class_folders, size=(8, 8), workers=0, progress=False)
    assert other_size != first and CacheReader(other_size).frame_wh == (8, 8)
    video = class_folders / "run" / "run.mp4"
    os.utime(video, ns=(video.stat().st_atime_ns, video.stat().st_mtime_ns + 10**9))
    assert resolve_data(class_folders, size=SIZE, workers=0, progress=False) != first


def test_cache_file_is_used_as_is_and_checked(class_folders):
    path = resolve_data(class_folders, size=SIZE, workers=0, progress=False)
    assert resolve_data(str(path), size=SIZE) == path
    assert resolve_data(str(path), size=None) == path
    with pytest.raises(CacheError, match="16x12 frames but 171x128") as exc:
        resolve_data(str(path), size=(171, 128))
    assert "\n" not in str(exc.value)


def test_missing_path_is_one_line_data_error(tmp_path):
    with pytest.raises(DataError, match="no such file or folder") as exc:
        resolve_data(str(tmp_path / "nowhere"))
    assert "\n" not in str(exc.value)


def test_a_file_that_is_no_cache_is_a_data_error(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(DataError, match="neither a dataset folder nor an HDF5 cache"):
        resolve_data(str(text))


def test_no_build_refuses_a_missing_cache(class_folders):
    with pytest.raises(CacheError, match="cstp cache build"):
        resolve_data(class_folders, size=SIZE, build=False)


def test_no_data_means_the_builtin_synthetic_dataset(class_folders, monkeypatch):
    import cstp_cli.data.synth

    monkeypatch.setattr(cstp_cli.data.synth, "default_dataset_root", lambda *a, **k: class_folders)
    path = resolve_data(None, size=SIZE, workers=0, progress=False)
    attrs = CacheReader(path).attrs
    assert attrs["source_root"] == str(class_folders.resolve()) and attrs["compression"] == "none"


def test_no_data_caches_the_synthetic_set_at_its_native_size(class_folders, monkeypatch):
    import cstp_cli.data.synth

    monkeypatch.setattr(cstp_cli.data.synth, "default_dataset_root", lambda *a, **k: class_folders)
    path = resolve_data(None, workers=0, progress=False)
    assert CacheReader(path).frame_wh == tuple(cstp_cli.data.synth.DEFAULT_SYNTH["size"])


def test_dataset_where_nothing_decodes_is_a_cache_error(tmp_path, monkeypatch):
    monkeypatch.setenv("CSTP_CACHE_DIR", str(tmp_path / "cachedir"))
    (tmp_path / "bad" / "cls").mkdir(parents=True)
    (tmp_path / "bad" / "cls" / "x.avi").write_text("not a video")
    with pytest.raises(CacheError, match="no video of .* could be decoded"):
        resolve_data(tmp_path / "bad", size=SIZE, workers=0, progress=False)
