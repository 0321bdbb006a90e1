"""Evaluation protocols: clip positions, centre-cropped clips, clip datasets, classification metrics.

METHOD §6 (test: 10 uniformly spaced clips, centre crop 112, mean of softmax) and §7 (the
retrieval protocol's clips: 10 clips of T frames at stride s whose centres are evenly
spaced). Features of these clips are :mod:`cstp_cli.evaluation.features`; retrieval metrics
and the retrieval run :mod:`cstp_cli.evaluation.retrieval`.

Everything here is a plain function of arrays or tensors so that the library runs, the
benchmark and the tests share one implementation.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from cstp_cli.errors import DataError, UsageError

__all__ = [
    "clip_indices",
    "center_crop_side",
    "preprocess_clips",
    "split_indices",
    "require_labels",
    "VideoClipDataset",
    "clip_loader",
    "aggregate_softmax",
    "topk_accuracy",
]


# --------------------------------------------------------------------------- clip positions


def clip_indices(num_frames: int, T: int = 16, stride: int = 1, num_clips: int = 10) -> np.ndarray:
    """Frame indices of the evaluation clips of one video (METHOD §6 test, §7 retrieval).

    A clip spans ``L = (T−1)·s + 1`` frames. The clips' windows have centres evenly
    spaced (``linspace``) between the first centre that fits, ``(L−1)/2``, and the last,
    ``N−1−(L−1)/2``; since all windows have the same length, this is the same as starts
    evenly spaced in ``[0, N−L]``, computed here in integer arithmetic (round half up).
    A video too short for one window (``N < L``) loops: every clip is
    ``[(s·j) mod N for j in range(T)]``.

    Returns:
        ``int64[num_clips, T]`` frame indices, each row non-decreasing unless looped.
    """
    if num_frames < 1:
        raise DataError("a video with no frames cannot be evaluated; rebuild the cache")
    if T < 1 or stride < 1 or num_clips < 1:
        raise UsageError(f"clip frames, stride and number of clips must be >= 1 (got {T}, {stride}, {num_clips})")
    steps = stride * np.arange(T, dtype=np.int64)
    span = (T - 1) * stride + 1
    if num_frames < span:
        return np.tile(steps % num_frames, (num_clips, 1))
    room = num_frames - span  # the last start that fits
    if num_clips == 1:
        starts = np.array([(room + 1) // 2], dtype=np.int64)  # round half up of room/2
    else:
        i = np.arange(num_clips, dtype=np.int64)
        den = num_clips - 1
        starts = (2 * i * room + den) // (2 * den)
    return starts[:, None] + steps[None, :]


# --------------------------------------------------------------------------- pixels


def center_crop_side(frame_wh: Sequence[int], out_size: int) -> int:
    """Side of the centre crop taken from frames of size ``frame_wh`` (W, H).

    The protocol's crop is 112 from 128-pixel-high frames (METHOD §7); other cache
    heights keep the ratio 112/128 of the short side (rounded), so ``--size 341x256`` crops
    224 and 48-pixel frames crop 42; the crop is then resized to ``out_size``.
    """
    short = min(int(frame_wh[0]), int(frame_wh[1]))
    return max(1, min(short, (short * 112 + 64) // 128))


def preprocess_clips(frames: Any, out_size: int = 112, crop: int | None = None, device: Any = None) -> Any:
    """Centre-cropped, resized and normalised clips (METHOD §2 normalisation ``x/255·2 − 1``).

    Args:
        frames: ``uint8[B, T, H, W, 3]`` (NumPy or torch).
        out_size: S, the side of the output clips.
        crop: side of the square centre crop in cache pixels (default
            :func:`center_crop_side`).
        device: where to compute.

    Returns:
        ``float32[B, 3, T, S, S]`` in [−1, 1].
    """
    import torch
    import torch.nn.functional as F

    x = torch.as_tensor(frames)
    if device is not None:
        x = x.to(device, non_blocking=True)
    B, T, H, W, _ = x.shape
    side = crop if crop is not None else center_crop_side((W, H), out_size)
    side = min(side, H, W)
    top, left = (H - side) // 2, (W - side) // 2
    x = x[:, :, top : top + side, left : left + side, :]
    x = x.permute(0, 4, 1, 2, 3).float()  # B, 3, T, side, side
    if side != out_size:
        x = x.reshape(B, 3 * T, side, side)
        x = F.interpolate(x, size=(out_size, out_size), mode="bilinear", align_corners=False, antialias=True)
        x = x.reshape(B, 3, T, out_size, out_size)
    return x * (2.0 / 255.0) - 1.0


# --------------------------------------------------------------------------- datasets


def split_indices(reader: Any, fold: int, which: str) -> np.ndarray:
    """Videos of ``which`` ("train"/"test") in ``fold``; one-line errors when missing or empty."""
    folds = list(getattr(reader, "folds", []) or [])
    if folds and fold not in [int(f) for f in folds]:
        raise DataError(
            f"the cache has no split {fold} (splits: {', '.join(map(str, folds))}); pass --split with one of them"
        )
    try:
        idx = np.asarray(reader.split(fold, which), dtype=np.int64)
    except (KeyError, ValueError, IndexError) as exc:
        raise DataError(f"the cache has no {which} split for fold {fold}: {exc}") from exc
    if idx.size == 0:
        raise DataError(f"the {which} split of fold {fold} is empty; check the dataset's split files")
    return idx


def require_labels(reader: Any, videos: np.ndarray, what: str) -> np.ndarray:
    """Labels of ``videos``; a one-line error when any is unlabelled (−1)."""
    labels = np.asarray(reader.labels, dtype=np.int64)[videos]
    if (labels < 0).any():
        raise DataError(
            f"{int((labels < 0).sum())} {what} videos have no label; {what} needs a labelled dataset (class folders or split files)"
        )
    return labels


class VideoClipDataset:
    """Evaluation clips of videos of a cache (a map-style ``torch.utils.data`` dataset).

    Item ``i`` is ``(frames uint8[K, T, H, W, 3], i)`` for video ``videos[i]`` with the
    ``K`` clips of :func:`clip_indices`. Each distinct frame is read once.
    Picklable (the reader opens its file lazily in each worker).
    """

    def __init__(self, reader: Any, videos: Sequence[int], T: int = 16, stride: int = 1, num_clips: int = 10):
        self.reader = reader
        self.videos = np.asarray(videos, dtype=np.int64)
        self.T, self.stride, self.num_clips = int(T), int(stride), int(num_clips)
        self.num_frames = np.asarray(reader.num_frames, dtype=np.int64)

    def __len__(self) -> int:
        return int(self.videos.size)

    def indices(self, i: int) -> np.ndarray:
        """``int64[K, T]`` frame indices of item ``i``."""
        return clip_indices(int(self.num_frames[self.videos[i]]), self.T, self.stride, self.num_clips)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        idx = self.indices(i)
        unique, inverse = np.unique(idx, return_inverse=True)
        frames = np.asarray(self.reader.read(int(self.videos[i]), unique))
        return frames[inverse.reshape(idx.shape)], i


def _collate(items: list[tuple[np.ndarray, int]]) -> tuple[Any, Any]:
    import torch

    frames = torch.from_numpy(np.stack([f for f, _ in items]))
    return frames, torch.as_tensor([i for _, i in items], dtype=torch.int64)


def clip_loader(dataset: VideoClipDataset, batch_videos: int, workers: int, device: Any = None) -> Any:
    """A ``DataLoader`` of ``(uint8[b, K, T, H, W, 3], item ids int64[b])`` in order."""
    import torch

    pin = device is not None and str(device).startswith("cuda")
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=max(1, batch_videos),
        shuffle=False,
        num_workers=max(0, workers),
        collate_fn=_collate,
        pin_memory=pin,
        persistent_workers=False,
    )


# --------------------------------------------------------------------------- classification


def aggregate_softmax(clip_logits: Any) -> Any:
    """Video-level class probabilities: mean of the clips' softmax (METHOD §6 test).

    Args:
        clip_logits: ``float[V, K, C]`` logits of K clips per video.

    Returns:
        ``float[V, C]`` probabilities (rows sum to 1).
    """
    import torch

    logits = torch.as_tensor(clip_logits).float()
    return torch.softmax(logits, dim=-1).mean(dim=1)


def topk_accuracy(scores: Any, labels: Any, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """Top-k accuracy in percent of ``scores float[N, C]`` against ``labels int[N]``.

    Ties are broken towards the lower class index (stable sort), so results are deterministic.
    """
    import torch

    s = torch.as_tensor(scores).float()
    y = torch.as_tensor(labels).long()
    order = torch.sort(-s, dim=1, stable=True).indices
    out = {}
    for k in ks:
        kk = min(k, s.shape[1])
        hit = (order[:, :kk] == y[:, None]).any(dim=1).float().mean().item()
        out[f"top{k}"] = 100.0 * hit
    return out
