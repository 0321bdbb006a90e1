"""Checkpoint files: atomic writes, ``weights_only=True`` loads, and the encoder inside.

A checkpoint is a dict of tensors and plain Python types only (DESIGN "Engine")::

    {"format": "cstp-checkpoint", "format_version": 1, "kind": "pretrain" | "finetune" | "linear",
     "cstp_version": str,
     "backbone": {"name": str, "width": "full" | "tiny"}, "feature_dim": int,
     "clip": {"frames": int, "size": int},                  # encoder input T and S
     "cache": {"frame_wh": [W, H]},                         # cache frame size it trained on
     "normalisation": {"scale": 2/255, "offset": -1.0},     # x_float = x_uint8 * scale + offset
     "encoder": state_dict,                                 # the backbone only
     "model": {...}, "optimizer": ..., "scheduler": ..., "scaler": ...,  # kind-specific
     "epoch": int, "samples_consumed": int, "config": dict}

Writes go to a temporary name in the same folder and are renamed into place, so no
partial file ever replaces a good one.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Mapping

from cstp_cli.errors import CheckpointError
from cstp_cli.core.fsutil import atomic_path
from cstp_cli.core.safewrite import guarded_open, write_failure

FORMAT = "cstp-checkpoint"
FORMAT_VERSION = 1
NORMALISATION = {"scale": 2.0 / 255.0, "offset": -1.0}


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file beside ``path``, fsync, then rename into place.

    A failed write (full disk: torch reports it as ``RuntimeError``, see
    :mod:`cstp_cli.core.safewrite`) raises :class:`CheckpointError` (one line); the
    temporary file is removed and the file at ``path``, if any, is untouched.
    """
    import torch

    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            with guarded_open(tmp) as fh:
                torch.save(obj, fh)
    except (OSError, RuntimeError) as exc:
        raise CheckpointError(
            f"cannot write checkpoint {path}: {write_failure(exc)}; the previous file is kept — "
            "free space or choose another output folder"
        ) from exc
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | Any = "cpu") -> dict[str, Any]:
    """Load a cstp checkpoint with ``weights_only=True``; one clear error if it is not one."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; pass the .pt file written by cstp pretrain/finetune")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path} is not a readable cstp checkpoint ({_load_failure(exc)}); pass a .pt file written by cstp") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a cstp checkpoint (no '{FORMAT}' marker); pass a file written by cstp")
    if ckpt.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {ckpt.get('format_version')}, this cstp reads {FORMAT_VERSION}"
        )
    for key in ("backbone", "encoder", "clip", "cache"):
        if key not in ckpt:
            raise CheckpointError(f"{path} is a cstp checkpoint without '{key}'; it cannot provide an encoder")
    return ckpt


def _load_failure(exc: BaseException) -> str:
    """A short reason for a failed ``torch.load`` (torch's own messages run to paragraphs)."""
    text = str(exc)
    if "Weights only load failed" in text:
        return "it holds Python objects other than tensors, or is not a PyTorch file"
    first = text.split(". ")[0].splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first[:120]}" if first else type(exc).__name__


def file_hash(path: str | os.PathLike) -> str:
    """SHA-256 of a file (hex), recorded in exports."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def build_backbone(name: str, width: str) -> Any:
    """Build a registered backbone by name and width."""
    from cstp_cli.plugins import get_registry

    spec = get_registry().backbone(name)
    return spec.build(width=width)


def state_mismatch(expected: Mapping[str, Any], given: Mapping[str, Any]) -> str:
    """One line on how the state dict ``given`` differs from a model's ``expected`` one
    (missing, unexpected and reshaped keys, with a first example of each); ``""`` if it fits."""
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    reshaped = [k for k in expected if k in given and tuple(expected[k].shape) != tuple(given[k].shape)]
    parts = [f"{len(keys)} {label} (first: {keys[0]})"
             for label, keys in (("missing", missing), ("unexpected", unexpected), ("of another shape", reshaped)) if keys]
    return ", ".join(parts)


def load_encoder(checkpoint: str | os.PathLike | dict, map_location: str = "cpu", source: str | os.PathLike | None = None) -> Any:
    """The checkpoint's encoder as an ``nn.Module`` in eval mode with ``.preprocess`` set.

    ``.preprocess`` is a dict: ``frame_wh`` (cache W, H), ``frames`` (T), ``size`` (S),
    ``normalisation`` (scale, offset) and ``backbone`` (name, width). ``source`` names the
    file in errors when ``checkpoint`` is an already loaded dict.
    """
    ckpt = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint, map_location)
    backbone = ckpt["backbone"]
    model = build_backbone(backbone["name"], backbone.get("width", "full"))
    mismatch = state_mismatch(model.state_dict(), ckpt["encoder"])
    if mismatch:
        name = source if source is not None else (None if isinstance(checkpoint, dict) else checkpoint)
        where = "" if name is None else f"{name}: "
        raise CheckpointError(
            f"{where}encoder weights do not fit backbone {backbone['name']} ({backbone.get('width')}): {mismatch}; "
            f"it was written by cstp {ckpt.get('cstp_version', '?')} — evaluate it with that version or pretrain again"
        )
    model.load_state_dict(ckpt["encoder"])
    model.eval()
    model.preprocess = {
        "frame_wh": tuple(ckpt["cache"]["frame_wh"]),
        "frames": int(ckpt["clip"]["frames"]),
        "size": int(ckpt["clip"]["size"]),
        "normalisation": dict(ckpt.get("normalisation", NORMALISATION)),
        "backbone": dict(backbone),
    }
    return model


def encoder_checkpoint(
    *,
    kind: str,
    backbone: str,
    width: str,
    feature_dim: int,
    encoder_state: dict,
    frames: int,
    size: int,
    frame_wh: tuple[int, int],
    **extra: Any,
) -> dict[str, Any]:
    """A checkpoint dict with the common header; ``extra`` adds kind-specific entries."""
    from cstp_cli import __version__

    out = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "cstp_version": __version__,
        "backbone": {"name": backbone, "width": width},
        "feature_dim": int(feature_dim),
        "clip": {"frames": int(frames), "size": int(size)},
        "cache": {"frame_wh": [int(frame_wh[0]), int(frame_wh[1])]},
        "normalisation": dict(NORMALISATION),
        "encoder": encoder_state,
    }
    out.update(extra)
    return out
