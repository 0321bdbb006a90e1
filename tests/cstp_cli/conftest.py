"""Shared video fixtures for the tests under tests/cstp_cli/ (decoding, datasets, cache).

* ``tiny_frames(n, size, seed, gray)`` → uint8 ``[n, H, W, 3]`` frames whose content
  identifies the frame (a bright bar at column ``i mod W`` over seeded noise).
* ``tiny_video_factory(name, frames, size, codec, ...)`` → path of a tiny video written
  with PyAV under the test's ``tmp_path`` (sub-folders in ``name`` are created).
* ``tiny_ucf_root`` → a fresh copy of a 6-video, 3-class UCF-101-layout dataset (two
  groups per class, folds 1–3).
* ``awkward_videos`` → ``{name: path}`` of valid but awkward inputs (item 8 "cached").
* ``broken_videos`` → ``{name: (path, reason substring)}`` of undecodable inputs
  (item 8 "failed with a clear per-file reason").
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from cstp_cli.data.video import write_audio_only, write_video

UCF_CLASSES = ("Jump", "Run", "Wave")


def make_frames(n: int = 8, size: tuple[int, int] = (32, 24), seed: int = 0, gray: bool = False) -> np.ndarray:
    """uint8 ``[n, H, W, 3]``: seeded low-contrast noise plus a bright bar at column ``i % W``."""
    w, h = size
    rng = np.random.default_rng(seed)
    frames = rng.integers(40, 120, size=(n, h, w, 3), dtype=np.uint8)
    for i in range(n):
        frames[i, :, i % w] = 250
    if gray:
        frames[...] = frames[..., :1]
    return frames


@pytest.fixture
def tiny_frames():
    """Factory ``tiny_frames(n=8, size=(32, 24), seed=0, gray=False)`` → frames."""
    return make_frames


def _write(path: Path, frames, size, codec, lossless, fps, gray, seed, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(frames, int):
        frames = make_frames(frames, size, seed, gray)
    if gray and not lossless:
        kwargs.setdefault("pix_fmt", "gray")
        codec = "ffv1" if codec == "libx264" else codec
    return write_video(path, frames, fps=fps, codec=codec, lossless=lossless, **kwargs)


@pytest.fixture
def tiny_video_factory(tmp_path):
    """Factory ``tiny_video_factory(name, frames=8, size=(32, 24), codec="libx264",
    lossless=False, fps=25, gray=False, seed=0, **write_video_kwargs) -> Path``.

    ``frames`` is a count (content from :func:`make_frames`) or a uint8 array. ``gray``
    writes a true grayscale stream (FFV1 ``gray``; use a ``.mkv`` name). Extra keywords go
    to :func:`cstp_cli.data.video.write_video` (``gop``, ``pts``, ``crf``, ``pix_fmt``, …).
    """

    def factory(name, frames=8, size=(32, 24), codec="libx264", lossless=False, fps=25, gray=False, seed=0, **kwargs):
        return _write(tmp_path / name, frames, size, codec, lossless, fps, gray, seed, **kwargs)

    return factory


def _build_ucf(root: Path) -> Path:
    lists = root / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    (lists / "classInd.txt").write_text("".join(f"{i + 1} {c}\n" for i, c in enumerate(UCF_CLASSES)))
    for ci, cls in enumerate(UCF_CLASSES):
        for g in (1, 2):
            _write(root / cls / f"v_{cls}_g{g:02d}_c01.avi", 6, (32, 24), "libx264", False, 25, False, 10 * ci + g)
    for fold in (1, 2, 3):
        test_group = 1 if fold != 2 else 2
        train, test = [], []
        for ci, cls in enumerate(UCF_CLASSES):
            for g in (1, 2):
                rel = f"{cls}/v_{cls}_g{g:02d}_c01.avi"
                (test if g == test_group else train).append(rel if g == test_group else f"{rel} {ci + 1}")
        (lists / f"trainlist{fold:02d}.txt").write_text("\n".join(train) + "\n")
        (lists / f"testlist{fold:02d}.txt").write_text("\n".join(test) + "\n")
    return root


@pytest.fixture(scope="session")
def _ucf_template(tmp_path_factory):
    return _build_ucf(tmp_path_factory.mktemp("ucf_template") / "UCF")


@pytest.fixture
def tiny_ucf_root(_ucf_template, tmp_path):
    """A fresh (writable) copy of a UCF-101-layout dataset: classes Jump, Run, Wave
    (labels 0–2), videos ``<Class>/v_<Class>_g0{1,2}_c01.avi`` (6 frames, 32×24, H.264 in
    AVI); folds 1 and 3 test group g01, fold 2 tests g02."""
    return Path(shutil.copytree(_ucf_template, tmp_path / "ucf"))


@pytest.fixture
def awkward_videos(tiny_video_factory, tmp_path):
    """Valid but awkward inputs, each decodable: ``{name: path}``. ``truncated_prefix``
    decodes to a prefix of its 40 frames with a warning."""
    out = {
        "one_frame": tiny_video_factory("awkward/one.mp4", frames=1),
        "five_frames": tiny_video_factory("awkward/five.mp4", frames=5),
        "grayscale": tiny_video_factory("awkward/gray.mkv", frames=6, gray=True),
        "tiny_8x8": tiny_video_factory("awkward/tiny.mp4", frames=6, size=(8, 8)),
        "extreme_aspect": tiny_video_factory("awkward/wide.mp4", frames=6, size=(160, 8)),
        "odd_size": tiny_video_factory("awkward/odd.mp4", frames=6, size=(33, 17)),
        "variable_fps": tiny_video_factory("awkward/vfr.mp4", frames=6, pts=np.array([0, 20, 100, 120, 200, 220])),
        "non_ascii": tiny_video_factory("awkward/vidéo été 日本 clip.mp4", frames=6),
    }
    full = tiny_video_factory("awkward/full.mkv", frames=40, size=(64, 48), gop=5)
    data = full.read_bytes()
    truncated = tmp_path / "awkward" / "truncated.mkv"
    truncated.write_bytes(data[: len(data) // 2])
    full.unlink()
    out["truncated_prefix"] = truncated
    return out


@pytest.fixture
def broken_videos(tiny_video_factory, tmp_path):
    """Undecodable inputs: ``{name: (path, substring of the reason)}``."""
    folder = tmp_path / "broken"
    folder.mkdir()
    rng = np.random.default_rng(0)
    zero = folder / "zero.mp4"
    zero.write_bytes(b"")
    text = folder / "notes.avi"
    text.write_text("this is not a video\n" * 20)
    noise = folder / "noise.mp4"
    noise.write_bytes(rng.bytes(4096))
    full = tiny_video_factory("broken/src.mp4", frames=20, size=(64, 48))  # moov atom at the end
    cut = folder / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    full.unlink()
    audio = write_audio_only(folder / "audio.m4a")
    dangling = folder / "gone.mp4"
    os.symlink(folder / "does-not-exist.mp4", dangling)
    directory = folder / "folder.avi"
    directory.mkdir()
    return {
        "zero_byte": (zero, "empty file"),
        "text_as_avi": (text, "not a video"),
        "random_bytes": (noise, "not a video"),
        "truncated_unopenable": (cut, "not a video"),
        "audio_only": (audio, "no video stream"),
        "dangling_symlink": (dangling, "dangling symbolic link"),
        "directory": (directory, "is a directory"),
    }
