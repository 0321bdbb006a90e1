"""Where an evaluation's inputs come from: the encoder, the data and the default output folder.

:class:`EncoderSource` names the encoder an evaluation uses — exactly one of a checkpoint
written by ``cstp pretrain``/``finetune``, ``--init random`` (weights drawn after
``torch.manual_seed(seed)``) or an ONNX model written by ``cstp export`` (features through
onnxruntime, :mod:`cstp_cli.deploy.ort`). :func:`open_data` turns DATA (a dataset folder, a
cache file or nothing: the built-in synthetic set) into an open cache reader.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from cstp_cli.errors import CheckpointError, UsageError

__all__ = ["EncoderSource", "load_encoder_source", "feature_encoder", "onnx_clip_shape", "open_data", "default_out"]


@dataclass(frozen=True)
class EncoderSource:
    """The encoder of an evaluation: set exactly one of ``checkpoint``, ``init`` (``"random"``), ``onnx``."""

    checkpoint: str | None = None
    init: str | None = None
    onnx: str | None = None

    def check(self, allow_onnx: bool = True) -> None:
        """One :class:`UsageError` line unless exactly one source is given (ONNX only if allowed)."""
        given = [x for x in (self.checkpoint, self.init, self.onnx) if x is not None]
        if self.onnx is not None and not allow_onnx:
            raise UsageError("--onnx is not accepted here; pass --checkpoint CKPT or --init random")
        if len(given) != 1:
            choices = "--checkpoint CKPT, --init random or --onnx FILE" if allow_onnx else "--checkpoint CKPT or --init random"
            raise UsageError(f"pass exactly one of {choices}")
        if self.init is not None and self.init != "random":
            raise UsageError(f"--init accepts only 'random', got {self.init!r}")

    @property
    def stem(self) -> str:
        """The name the default output folder takes (``random`` for ``--init random``)."""
        path = self.checkpoint or self.onnx
        return Path(path).stem if path else "random"


def open_data(data: str | None, size: tuple[int, int], workers: int | None) -> Any:
    """DATA (dataset root, cache file or nothing = the synthetic set) → an open ``CacheReader``."""
    from cstp_cli.data.cache import CacheReader
    from cstp_cli.data.resolve import resolve_data

    return CacheReader(resolve_data(data, size=size, workers=workers))


def default_out(command: str, source: EncoderSource) -> Path:
    """``runs/<command>-<checkpoint or model stem>`` (``runs/<command>-random`` for ``--init random``)."""
    return Path("runs") / f"{command}-{source.stem}"


def load_encoder_source(
    checkpoint: str | None, init: str | None, backbone: str, width: str, seed: int = 0
) -> tuple[Any, dict[str, Any]]:
    """The encoder module and its info (``backbone``, ``width``, ``feature_dim``, ``frames``,
    ``size``, ``init``) from ``--checkpoint`` or ``--init random`` (weights drawn after
    ``torch.manual_seed(seed)``); exactly one must be given."""
    import torch

    from cstp_cli.core.checkpoint import build_backbone, load_checkpoint, load_encoder

    EncoderSource(checkpoint=checkpoint, init=init).check(allow_onnx=False)
    if init is not None:
        torch.manual_seed(int(seed))
        module = build_backbone(backbone, width)
        return module, {"backbone": backbone, "width": width, "feature_dim": int(module.feature_dim),
                        "frames": 16, "size": 112, "init": "random"}
    ckpt = load_checkpoint(checkpoint)
    if not isinstance(ckpt.get("encoder"), Mapping) or not ckpt["encoder"]:
        raise CheckpointError(f"{checkpoint} holds no encoder weights; pass a checkpoint written by cstp pretrain/finetune")
    module = load_encoder(ckpt, source=checkpoint)
    return module, {
        "backbone": ckpt["backbone"]["name"],
        "width": ckpt["backbone"].get("width", "full"),
        "feature_dim": int(ckpt.get("feature_dim") or module.feature_dim),
        "frames": int(ckpt["clip"]["frames"]),
        "size": int(ckpt["clip"]["size"]),
        "init": str(checkpoint),
        "init_kind": ckpt.get("kind", "?"),
    }


def onnx_clip_shape(meta: dict) -> tuple[int | None, int | None]:
    """(frames, size) recorded in an exported model's metadata, when present."""
    def pick(*keys: str) -> int | None:
        for key in keys:
            value = meta.get(key)
            if value not in (None, ""):
                try:
                    return int(value)
                except (TypeError, ValueError):
                    continue
        return None

    frames = pick("frames", "clip_frames", "T")
    size = pick("size", "clip_size", "S")
    clip = meta.get("clip") or meta.get("clip_shape")
    if (frames is None or size is None) and clip:
        values = clip if isinstance(clip, (list, tuple)) else [int(v) for v in str(clip).replace("x", ",").strip("[]() ").split(",") if v.strip()]
        if len(values) >= 3:
            frames, size = frames or int(values[-3]), size or int(values[-1])
    return frames, size


def feature_encoder(source: EncoderSource, backbone: str, width: str, device: Any, seed: int = 0) -> tuple[Any, Any, dict]:
    """``(Encoder, torch module or None, info)`` of ``source`` on ``device``.

    An ONNX model gives pooled features only (``float32[B, D]`` through onnxruntime; torch
    tensors on a GPU go through its IO binding); its clip shape comes from its metadata.
    """
    import numpy as np

    from cstp_cli.evaluation.features import Encoder, torch_encoder

    source.check()
    if source.onnx is not None:
        from cstp_cli.deploy.ort import OnnxEncoder

        session = OnnxEncoder(source.onnx, provider="cuda" if str(device).startswith("cuda") else "auto")
        meta = dict(getattr(session, "metadata", {}) or {})
        frames, size = onnx_clip_shape(meta)

        def pooled(x: Any) -> Any:
            return np.asarray(session(x.contiguous() if hasattr(x, "contiguous") else x), dtype=np.float32)

        info = {"init": str(source.onnx), "frames": frames or 16, "size": size or 112,
                "provider": getattr(session, "provider", "?"), "backbone": meta.get("backbone", "?")}
        return Encoder(pooled=pooled, conv5=None, device=device, name="onnx"), None, info
    module, info = load_encoder_source(source.checkpoint, source.init, backbone, width, seed)
    return torch_encoder(module, device), module, info
