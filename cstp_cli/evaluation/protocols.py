"""Evaluation protocols: 10-clip positions, clip datasets, features, video aggregation, retrieval.

METHOD §6 (test: 10 uniformly spaced clips, centre crop 112, mean of softmax) and §7 (the
retrieval protocol: gallery = train split, queries = test split; 10 clips of T frames at
stride s whose centres are evenly spaced; per-clip L2; mean over clips; cosine similarity;
a query hits at k if any of its top-k gallery videos has its label).

Everything here is a plain function of arrays or tensors so that the commands, the
benchmark and the tests share one implementation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from cstp_cli.errors import DataError, UsageError

#: Recall cut-offs of the retrieval protocol (METHOD §7).
RECALL_KS: tuple[int, ...] = (1, 5, 10, 20, 50)

__all__ = [
    "RECALL_KS",
    "clip_indices",
    "center_crop_side",
    "preprocess_clips",
    "VideoClipDataset",
    "Encoder",
    "torch_encoder",
    "extract_features",
    "aggregate_softmax",
    "topk_accuracy",
    "running_topk",
    "recall_at_k",
    "retrieval_report",
    "split_indices",
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


# --------------------------------------------------------------------------- encoders


@dataclass
class Encoder:
    """What feature extraction needs from a model, PyTorch or ONNX.

    ``pooled(x) -> float[B, D]`` and optionally ``conv5(x) -> float[B, C, t, h, w]``, both on
    clips ``float32[B, 3, T, S, S]``; ``device`` is where clips should be built.
    """

    pooled: Callable[[Any], Any]
    conv5: Callable[[Any], Any] | None
    device: Any
    name: str = "encoder"


def torch_encoder(module: Any, device: Any) -> Encoder:
    """Wrap a backbone module (eval mode, no gradients; bf16 autocast on CUDA)."""
    import torch

    module = module.to(device).eval()
    cuda = str(device).startswith("cuda")

    def run(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
        def call(x: Any) -> Any:
            with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
                return fn(x).float()

        return call

    conv5 = run(module.features) if hasattr(module, "features") else None
    return Encoder(pooled=run(module), conv5=conv5, device=device, name=type(module).__name__)


def _clip_feature(encoder: Encoder, clips: Any, layer: str) -> Any:
    """Clip features ``float32[B, F]``: pooled D, or conv5 max-pooled (1,2,2) and flattened (METHOD §5, §7)."""
    import torch
    import torch.nn.functional as F

    if layer == "pooled":
        out = encoder.pooled(clips)
        return torch.as_tensor(np.asarray(out) if not torch.is_tensor(out) else out).float()
    if layer == "conv5":
        if encoder.conv5 is None:
            raise UsageError("--layer conv5 needs a PyTorch encoder; an ONNX model gives pooled features only")
        fmap = torch.as_tensor(encoder.conv5(clips)).float()
        fmap = F.max_pool3d(fmap, kernel_size=(1, 2, 2), stride=(1, 2, 2))
        return fmap.flatten(1)
    raise UsageError(f"unknown feature layer {layer!r}; use pooled or conv5")


def extract_features(
    encoder: Encoder,
    loader: Iterable[tuple[Any, Any]],
    num_items: int,
    *,
    layer: str = "pooled",
    clip_l2: bool = True,
    size: int = 112,
    crop: int | None = None,
    clip_batch: int = 32,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Video features: per-clip features (L2-normalised if ``clip_l2``), mean over clips (METHOD §7).

    Args:
        loader: yields ``(frames uint8[b, K, T, H, W, 3], item ids int64[b])``.
        num_items: number of items the loader yields in all.
        clip_batch: clips per encoder call.
        progress: called with the number of videos done after each batch.

    Returns:
        ``float32[num_items, F]``.
    """
    import torch
    import torch.nn.functional as F

    out: np.ndarray | None = None
    for frames, ids in loader:
        b, K = frames.shape[:2]
        flat = frames.reshape(b * K, *frames.shape[2:])
        feats = []
        for start in range(0, b * K, clip_batch):
            clips = preprocess_clips(flat[start : start + clip_batch], size, crop, encoder.device)
            f = _clip_feature(encoder, clips, layer).to("cpu", torch.float32)
            feats.append(F.normalize(f, dim=1) if clip_l2 else f)
        video = torch.cat(feats).reshape(b, K, -1).mean(dim=1).numpy()
        if out is None:
            out = np.zeros((num_items, video.shape[1]), dtype=np.float32)
        out[np.asarray(ids)] = video
        if progress is not None:
            progress(b)
    if out is None:
        raise DataError("no videos to extract features from")
    return out


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


# --------------------------------------------------------------------------- retrieval


def _normalise(x: Any, device: Any, dtype: Any) -> Any:
    import torch
    import torch.nn.functional as F

    return F.normalize(torch.as_tensor(x).to(device=device, dtype=dtype), dim=1)


def running_topk(
    queries: Any,
    gallery: Any,
    k: int,
    *,
    query_chunk: int = 1024,
    gallery_chunk: int = 8192,
    device: Any = "cpu",
    normalise: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k gallery items by cosine similarity, memory bounded (METHOD §7).

    Similarities are computed in blocks of ``query_chunk × gallery_chunk`` and merged into a
    running top-k, so memory is ``O(query_chunk · (gallery_chunk + k))`` whatever the gallery
    size. Ties are broken towards the lower gallery index (stable sort), so the result equals
    the unchunked one. On CPU similarities are float64 products rounded to float32 (so the
    blocking of the matmul cannot reorder items whose similarities differ in the last bit);
    float32 on CUDA.

    Args:
        queries: ``float[Q, F]``; gallery: ``float[G, F]``.
        normalise: L2-normalise both first (cosine similarity).

    Returns:
        ``(scores float[Q, k'], indices int64[Q, k'])`` with ``k' = min(k, G)``, best first.
    """
    import torch

    dtype = torch.float64 if str(device) == "cpu" else torch.float32
    q_all = torch.as_tensor(queries)
    g_all = torch.as_tensor(gallery)
    if normalise:
        q_all = _normalise(q_all, "cpu", dtype)
        g_all = _normalise(g_all, "cpu", dtype)
    G = g_all.shape[0]
    kk = min(int(k), G)
    scores_out, index_out = [], []
    for qs in range(0, q_all.shape[0], query_chunk):
        q = q_all[qs : qs + query_chunk].to(device=device, dtype=dtype)
        best_s = torch.empty(q.shape[0], 0, dtype=dtype, device=device)
        best_i = torch.empty(q.shape[0], 0, dtype=torch.int64, device=device)
        for gs in range(0, G, gallery_chunk):
            g = g_all[gs : gs + gallery_chunk].to(device=device, dtype=dtype)
            sim = q @ g.T
            if dtype == torch.float64:
                # ranking key: float64 products rounded to float32, so that the last-bit
                # differences of differently blocked matmuls cannot reorder near-equal items
                sim = sim.float().double()
            idx = torch.arange(gs, gs + g.shape[0], device=device).expand(q.shape[0], -1)
            # earlier candidates have lower indices and come first: a stable sort keeps ties in index order
            cand_s = torch.cat([best_s, sim], dim=1)
            cand_i = torch.cat([best_i, idx], dim=1)
            order = torch.sort(-cand_s, dim=1, stable=True).indices[:, :kk]
            best_s = torch.gather(cand_s, 1, order)
            best_i = torch.gather(cand_i, 1, order)
        scores_out.append(best_s.cpu())
        index_out.append(best_i.cpu())
    return torch.cat(scores_out).numpy(), torch.cat(index_out).numpy()


def recall_at_k(
    topk_indices: np.ndarray, query_labels: np.ndarray, gallery_labels: np.ndarray, ks: Sequence[int] = RECALL_KS
) -> dict[str, float]:
    """R@k in percent: a query hits at k if any of its top-k gallery items has its label (METHOD §7)."""
    match = np.asarray(gallery_labels)[np.asarray(topk_indices)] == np.asarray(query_labels)[:, None]
    first_hit = np.where(match.any(axis=1), match.argmax(axis=1), np.iinfo(np.int64).max)
    return {f"R@{k}": float(100.0 * np.mean(first_hit < k)) for k in ks}


def retrieval_report(
    query_features: np.ndarray,
    gallery_features: np.ndarray,
    query_labels: np.ndarray,
    gallery_labels: np.ndarray,
    ks: Sequence[int] = RECALL_KS,
    device: Any = "cpu",
    **chunks: int,
) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """R@k of queries against a gallery, with the top-``max(ks)`` lists.

    Returns ``(recalls, scores float[Q, k], indices int64[Q, k])``.
    """
    scores, indices = running_topk(query_features, gallery_features, max(ks), device=device, **chunks)
    return recall_at_k(indices, query_labels, gallery_labels, ks), scores, indices



# --------------------------------------------------------------------------- pipelines


def video_features(
    encoder: Encoder,
    reader: Any,
    videos: np.ndarray,
    *,
    T: int = 16,
    stride: int = 1,
    num_clips: int = 10,
    layer: str = "pooled",
    clip_l2: bool = True,
    size: int = 112,
    batch_videos: int = 4,
    workers: int = 2,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Retrieval-protocol features of ``videos`` (METHOD §7): ``float32[len(videos), F]``."""
    ds = VideoClipDataset(reader, videos, T, stride, num_clips)
    loader = clip_loader(ds, batch_videos, workers, encoder.device)
    crop = center_crop_side(reader.frame_wh, size)
    return extract_features(
        encoder, loader, len(ds), layer=layer, clip_l2=clip_l2, size=size, crop=crop,
        clip_batch=max(1, batch_videos * num_clips), progress=progress,
    )


def reestimate_bn(
    module: Any,
    reader: Any,
    videos: np.ndarray,
    *,
    device: Any,
    T: int = 16,
    stride: int = 1,
    num_clips: int = 10,
    size: int = 112,
    batch_videos: int = 4,
    workers: int = 2,
    progress: Callable[[int], None] | None = None,
) -> Any:
    """Re-estimate every BatchNorm's running statistics on the protocol's clips of ``videos``.

    The fair random-init baseline (issue 4): a randomly initialised network's running
    statistics (mean 0, variance 1) do not match its activations, so features of a random
    network in eval mode are degenerate. Statistics are reset and accumulated as a
    cumulative average (``momentum=None``) over all clips in train mode, under ``no_grad``;
    the weights do not change. Returns the module in eval mode.
    """
    import torch

    bns = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return module.eval()
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    module.to(device).train()
    ds = VideoClipDataset(reader, videos, T, stride, num_clips)
    crop = center_crop_side(reader.frame_wh, size)
    with torch.no_grad():
        for frames, _ids in clip_loader(ds, batch_videos, workers, device):
            b, K = frames.shape[:2]
            clips = preprocess_clips(frames.reshape(b * K, *frames.shape[2:]), size, crop, device)
            if clips.shape[0] > 1:
                module(clips)
            if progress is not None:
                progress(b)
    for m, mom in zip(bns, saved):
        m.momentum = mom
    return module.eval()


def middle_frame(reader: Any, video: int) -> np.ndarray:
    """``uint8[H, W, 3]``: the middle frame of a cached video (for montages)."""
    n = int(np.asarray(reader.num_frames)[video])
    return np.asarray(reader.read(int(video), np.array([n // 2], dtype=np.int64)))[0]
