"""Fake decoders and tiny fake datasets for the cache tests (importable by name in
decoder worker processes: the tests put this folder on ``sys.path``).

A fake "video" is a small text file ``frames=N seed=S [sleep=X] [crash] [fail] [warn]
[kill_if=FLAGFILE]``;
:func:`fake_decode` turns it into deterministic frames (:func:`reference_frames`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cstp_cli.data.datasets import DatasetIndex, VideoEntry
from cstp_cli.errors import VideoDecodeError


@dataclass
class FakeDecoded:
    frames: np.ndarray
    fps: float
    warnings: list = field(default_factory=list)
    source_wh: tuple = (0, 0)


def reference_frames(seed: int, n: int, size: tuple[int, int]) -> np.ndarray:
    """uint8 [n, H, W, 3]: frame i is noise from ``default_rng([seed, i])``."""
    w, h = size
    return np.stack([np.random.default_rng([seed, i]).integers(0, 256, (h, w, 3), dtype=np.uint8) for i in range(n)])


def parse_spec(path: str) -> dict:
    return parse_spec_text(Path(path).read_text())


def parse_spec_text(text: str) -> dict:
    spec = {}
    for word in text.split():
        key, _, value = word.partition("=")
        spec[key] = value
    return spec


def fake_decode(path, size, fps, log=None):
    """A picklable ``decode(path, size, fps)`` for :func:`cstp_cli.data.cache.build_cache`."""
    if log is not None:
        with open(log, "a") as fh:
            fh.write(f"{Path(path).name}\n")
    spec = parse_spec(path)
    if "sleep" in spec:
        time.sleep(float(spec["sleep"]))
    if "crash" in spec:
        os._exit(7)
    if "kill_if" in spec and os.path.exists(spec["kill_if"]):
        os.kill(os.getpid(), 9)  # SIGKILL this process (the build itself when workers=0)
    if "fail" in spec:
        raise VideoDecodeError(path, "fake: no decodable frame")
    frames = reference_frames(int(spec.get("seed", 0)), int(spec.get("frames", 1)), size)
    warnings = ["fake: decodable prefix only"] if "warn" in spec else []
    return FakeDecoded(frames, float(fps or 25.0), warnings, (320, 240))


def make_dataset(root: Path, specs: dict[str, str], folds: int = 1) -> DatasetIndex:
    """Write one spec file per ``rel`` under ``root`` and index them (:func:`make_index`)."""
    for rel, spec in specs.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(spec)
    return make_index(root, list(specs), folds)


class PairSet:
    """A minimal map-style dataset over a cache reader, as a DataLoader worker holds it:
    item v = the first and last frame of video v, read as a pair (uint8 [2, H, W, 3])."""

    def __init__(self, reader):
        self.reader = reader

    def __len__(self):
        return self.reader.num_videos

    def __getitem__(self, v):
        n = int(self.reader.num_frames[v])
        return self.reader.read_pair(v, np.array([[0, 0], [n - 1, n - 1]]))[:, 0]


def stack(batch):
    return np.stack(batch)


def make_index(root: Path, rels: list[str], folds: int = 1) -> DatasetIndex:
    """Index of spec files under ``root``: label = position modulo 3, group ``g<i>``, fold
    k puts video i in test when ``(i + k) % 3 == 0``, else train."""
    videos = [
        VideoEntry(path=root / rel, rel=rel, label=i % 3, group=f"g{i:02d}",
                   splits={k: ("test" if (i + k) % 3 == 0 else "train") for k in range(1, folds + 1)})
        for i, rel in enumerate(rels)
    ]
    return DatasetIndex(root=root, kind="fake", classes=["a", "b", "c"], videos=videos, folds=list(range(1, folds + 1)))
