"""Fixtures of the evaluation command tests: a tiny labelled cache built with the real writer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

#: Three classes that differ in colour and motion, so a tiny network separates them fast.
COLOURS = np.array([[220, 40, 40], [40, 200, 60], [50, 60, 230]], dtype=np.float32)


def toy_frames(label: int, seed: int, num_frames: int, wh: tuple[int, int]) -> np.ndarray:
    """uint8 [N, H, W, 3]: a noisy background of the class's colour with a moving bright square."""
    w, h = wh
    rng = np.random.default_rng(seed)
    base = COLOURS[label] * rng.uniform(0.8, 1.0)
    frames = np.clip(base + rng.normal(0, 12, size=(num_frames, h, w, 3)), 0, 255)
    for t in range(num_frames):
        x = (t * (label + 1) * 2) % (w - 8)
        frames[t, h // 3 : h // 3 + 8, x : x + 8] = 255
    return frames.astype(np.uint8)


def _decode(path, size, fps):
    from cstp_cli.data.video import Decoded

    label, seed, n = (int(v) for v in Path(path).stem.split("_")[1:])
    return Decoded(frames=toy_frames(label, seed, n, tuple(size)), fps=25.0, source_wh=tuple(size))


def build_toy_cache(folder: Path, per_class: int = 9, wh: tuple[int, int] = (40, 32), num_classes: int = 3,
                    labelled: bool = True) -> Path:
    """A cache of ``num_classes × per_class`` toy videos; groups of 2 videos.

    Fold 1: every third video is test, the rest train; fold 2: another third is test.
    """
    from cstp_cli.data.cache import build_cache
    from cstp_cli.data.datasets import DatasetIndex, VideoEntry

    src = folder / "src"
    src.mkdir(parents=True, exist_ok=True)
    videos = []
    for c in range(num_classes):
        for j in range(per_class):
            n = 9 + 5 * ((c + j) % 3)  # 9..19 frames: some shorter than a pace-4 window
            p = src / f"v_{c}_{100 * c + j}_{n}.avi"
            p.write_bytes(b"x")
            splits = {1: "test" if j % 3 == 2 else "train", 2: "test" if j % 3 == 0 else "train"}
            videos.append(VideoEntry(path=p, rel=p.name, label=c if labelled else -1, group=f"g{j // 2:02d}", splits=splits))
    classes = [f"class{c}" for c in range(num_classes)] if labelled else []
    index = DatasetIndex(root=src, kind="toy", classes=classes, videos=videos, folds=[1, 2])
    result = build_cache(src, out=folder / "toy.h5", size=wh, workers=0, progress=False, index=index, decode=_decode)
    return Path(result.path)


@pytest.fixture(scope="session")
def toy_eval_cache(tmp_path_factory) -> Path:
    return build_toy_cache(tmp_path_factory.mktemp("toy_eval_cache"))


@pytest.fixture(scope="session")
def toy_unlabelled_cache(tmp_path_factory) -> Path:
    return build_toy_cache(tmp_path_factory.mktemp("toy_unlabelled"), per_class=3, labelled=False)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A pretrain-kind checkpoint of a randomly initialised tiny R(2+1)D (8 frames, 32 px, 40x32 cache)."""
    import torch

    from cstp_cli.core.checkpoint import atomic_save, build_backbone, encoder_checkpoint

    torch.manual_seed(0)
    model = build_backbone("r21d", "tiny")
    ckpt = encoder_checkpoint(kind="pretrain", backbone="r21d", width="tiny", feature_dim=model.feature_dim,
                              encoder_state=model.state_dict(), frames=8, size=32, frame_wh=(40, 32))
    return atomic_save(ckpt, tmp_path_factory.mktemp("ckpt") / "tiny.pt")
