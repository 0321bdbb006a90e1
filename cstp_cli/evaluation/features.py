"""Clip and video features of an encoder (METHOD §5, §7): PyTorch or ONNX, pooled or conv5.

:class:`Encoder` is what feature extraction needs from a model; :func:`video_features` is
the retrieval protocol's per-video feature (10 clips, per-clip L2, mean over clips) and
:func:`reestimate_bn` the random-init baseline's BatchNorm re-estimation (issue 4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np

from cstp_cli.errors import DataError, UsageError
from cstp_cli.evaluation.protocols import VideoClipDataset, center_crop_side, clip_loader, preprocess_clips

__all__ = ["Encoder", "torch_encoder", "extract_features", "video_features", "reestimate_bn", "middle_frame"]


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


# --------------------------------------------------------------------------- protocol pipelines


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
