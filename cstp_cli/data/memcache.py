"""Write a cache from frames held in memory (tests, benchmarks; no PyAV needed).

Goes through the public writer, :func:`cstp_cli.data.cache.build_cache`, with a prepared
dataset index and a decoder that loads ``.npy`` files: each video's frames are saved as one
``.npy`` "source" file and "decoded" by NumPy, so the cache is a normal cstp cache.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np


@dataclass
class _Decoded:
    frames: np.ndarray
    fps: float = 25.0
    warnings: list[str] = field(default_factory=list)
    source_wh: tuple[int, int] = (0, 0)


def decode_npy(path: str, size: tuple[int, int], fps: float | None) -> _Decoded:
    """The "decoder" of :func:`write_cache`: ``uint8[N, H, W, 3]`` from an ``.npy`` file."""
    frames = np.load(path)
    return _Decoded(frames=frames, source_wh=(frames.shape[2], frames.shape[1]))


def render_videos(count: int, frames: int, size: tuple[int, int], seed: int = 0) -> list[np.ndarray]:
    """``count`` videos ``uint8[frames, H, W, 3]`` of moving textured squares (NumPy only).

    Each video: a random background colour, one square of random colour and size moving
    with a random constant velocity (wrapping), plus mild noise — enough structure for the
    pretext tasks to have something to learn.
    """
    w, h = int(size[0]), int(size[1])
    rng = np.random.default_rng(seed)
    out = []
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(count):
        bg = rng.integers(0, 256, 3)
        fg = rng.integers(0, 256, 3)
        side = int(rng.integers(max(2, min(w, h) // 6), max(3, min(w, h) // 2)))
        x0, y0 = rng.uniform(0, w), rng.uniform(0, h)
        vx, vy = rng.uniform(-3, 3, 2)
        video = np.empty((frames, h, w, 3), np.uint8)
        for t in range(frames):
            cx, cy = (x0 + vx * t) % w, (y0 + vy * t) % h
            inside = ((xx - cx) % w < side) & ((yy - cy) % h < side)
            img = np.where(inside[..., None], fg, bg).astype(np.int16)
            img += rng.integers(-8, 9, img.shape, dtype=np.int16)
            video[t] = np.clip(img, 0, 255).astype(np.uint8)
        out.append(video)
    return out


def write_cache(
    videos: Sequence[np.ndarray],
    out: str | Path,
    labels: Sequence[int] | None = None,
    train: Sequence[bool] | None = None,
    progress: bool = False,
    codec: str = "raw",
) -> Path:
    """Write ``videos`` (each ``uint8[N, H, W, 3]``, one frame size) as a cstp cache at ``out``.

    Fold 1 only: ``train[v]`` True → train, else test (default: every video is train).
    Source ``.npy`` files go to ``<out>.sources/``. ``codec``: ``raw`` or ``jpeg[:Q]``.
    Returns the cache path.
    """
    from cstp_cli.data.cache import build_cache
    from cstp_cli.data.datasets import DatasetIndex, VideoEntry

    out = Path(out).absolute()
    src = out.with_name(out.name + ".sources")
    src.mkdir(parents=True, exist_ok=True)
    labels = list(labels) if labels is not None else [0] * len(videos)
    train = list(train) if train is not None else [True] * len(videos)
    entries = []
    for v, frames in enumerate(videos):
        path = src / f"v{v:05d}.npy"
        np.save(path, np.ascontiguousarray(frames, dtype=np.uint8))
        split = {1: "train" if train[v] else "test"}
        entries.append(VideoEntry(path=path, rel=path.name, label=int(labels[v]), group=None, splits=split))
    classes = [f"class{c}" for c in range(max(labels) + 1)]
    index = DatasetIndex(root=src, kind="memory", classes=classes, videos=entries, folds=[1])
    h, w = videos[0].shape[1:3]
    result = build_cache(src, out=out, size=(w, h), workers=0, progress=progress, index=index, decode=decode_npy, codec=codec)
    if result.path is None:
        raise RuntimeError(f"no video could be cached: {result.failed[:3]}")
    return Path(result.path)
