"""Video features with the retrieval protocol's clips (METHOD §7), to a file — as a library call.

``.h5`` files are written by :func:`cstp_cli.data.cache.write_features` (the module that owns
h5py); ``.npz`` with NumPy, atomically. Either holds ``features float32[V, F]``, ``labels
int64[V]`` (−1: unlabelled), ``videos int64[V]`` (cache indices), ``paths`` and the
switches. ``cstp embed`` is a thin layer on :func:`run_embedding`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cstp_cli.core.fsutil import check_output_file
from cstp_cli.errors import CstpError, UsageError
from cstp_cli.evaluation.settings import EmbedSettings
from cstp_cli.evaluation.sources import EncoderSource

__all__ = ["SUFFIXES", "EmbeddingResult", "check_features_path", "write_embeddings", "run_embedding"]

#: Feature file types :func:`write_embeddings` writes.
SUFFIXES = (".h5", ".hdf5", ".npz")


@dataclass
class EmbeddingResult:
    """What an embedding run wrote: ``path`` with ``num_videos × feature_dim`` features
    (on ranks other than 0 only ``is_main=False``)."""

    path: Path | None = None
    num_videos: int = 0
    feature_dim: int = 0
    is_main: bool = True


def check_features_path(path: str | Path) -> Path:
    """``path`` if it ends in ``.h5``/``.hdf5``/``.npz``; a one-line :class:`UsageError` otherwise."""
    dest = Path(path)
    if dest.suffix.lower() not in SUFFIXES:
        raise UsageError(f"-o must end in .h5 or .npz, got {dest.name!r}")
    return dest


def write_embeddings(path: Path, features: np.ndarray, labels: np.ndarray, paths: list[str], videos: np.ndarray,
                     attrs: dict[str, Any]) -> Path:
    """Write ``features float32[V, F]`` and their ``labels``/``paths``/``videos`` to ``.h5`` or ``.npz``."""
    from cstp_cli.core.fsutil import atomic_write_bytes

    path = check_features_path(path)
    if path.suffix.lower() in (".h5", ".hdf5"):
        from cstp_cli.data.cache import write_features

        write_features(path, features, labels, paths, {**attrs, "videos": videos.tolist()})
        return path
    import io

    buf = io.BytesIO()
    np.savez(buf, features=features.astype(np.float32), labels=labels.astype(np.int64), videos=videos.astype(np.int64),
             paths=np.array(paths, dtype=str), attrs=np.array(json.dumps(attrs)))
    try:
        return atomic_write_bytes(path, buf.getvalue())
    except OSError as exc:  # full disk: no temporary file stays, an old file is kept
        from cstp_cli.core.safewrite import write_failure

        raise CstpError(f"cannot write features {path}: {write_failure(exc)}; free space or choose another -o") from None


def run_embedding(
    settings: EmbedSettings, encoder: EncoderSource, output: str | Path, data: str | None = None, *, progress: bool = True
) -> EmbeddingResult:
    """One feature per video of ``settings.which`` (mean of the L2-normalised clip features), to ``output``.

    Args:
        encoder: ``--checkpoint`` or ``--onnx`` (a random encoder has nothing to embed).
        output: the features file (``.h5``/``.hdf5``/``.npz``).

    Under ``torchrun`` the videos are sharded over the ranks; rank 0 alone writes the file.
    """
    from cstp_cli.core import dist as ddp
    from cstp_cli.core.progress import Progress
    from cstp_cli.evaluation import protocols as ev
    from cstp_cli.evaluation.features import video_features
    from cstp_cli.evaluation.sources import feature_encoder, open_data

    settings.validate()  # settings built in Python are checked like layered ones
    s = settings
    if encoder.checkpoint is None and encoder.onnx is None:
        raise UsageError("pass --onnx model.onnx or --checkpoint CKPT")
    dest = check_features_path(output)
    check_output_file(dest, "-o")  # a real write test, before loading the encoder or decoding
    ctx = ddp.init_distributed(s.device or "auto")  # torchrun: one rank per GPU; else one process
    dev = ctx.device
    enc, _module, info = feature_encoder(encoder, s.backbone, s.width, dev)
    with ddp.main_first():
        reader = open_data(data, s.frame_size, int(s.workers))
    if s.which == "all":
        videos = np.arange(reader.num_videos, dtype=np.int64)
        if videos.size == 0:
            raise CstpError("the cache holds no videos; rebuild it with cstp cache build")
    else:
        videos = ev.split_indices(reader, int(s.split), s.which)
    T, S = int(s.frames or info["frames"]), int(s.clip_size or info["size"])
    bar = Progress(len(ddp.shard_range(videos.size)), "embedding", unit="videos", enabled=progress and ctx.is_main)
    feats = ddp.sharded_map(videos, lambda v: video_features(
        enc, reader, v, T=T, stride=int(s.stride), num_clips=int(s.clips), layer=s.layer,
        clip_l2=bool(s.clip_l2), size=S, batch_videos=int(s.batch_size), workers=int(s.workers),
        progress=bar.update))
    bar.close()
    if not ctx.is_main:  # rank 0 alone writes the file
        return EmbeddingResult(is_main=False)
    attrs = {"encoder": info["init"], "provider": info.get("provider") or str(dev), "frames": T, "clip_size": S,
             "stride": int(s.stride), "clips": int(s.clips), "layer": s.layer, "clip_l2": bool(s.clip_l2),
             "frame_wh": [int(v) for v in reader.frame_wh], "which": s.which, "split": int(s.split),
             "classes": list(getattr(reader, "classes", []) or [])}
    labels = np.asarray(reader.labels, dtype=np.int64)[videos]
    paths = [str(reader.paths[v]) for v in videos]
    path = write_embeddings(dest, feats, labels, paths, videos, attrs)
    return EmbeddingResult(path=Path(path), num_videos=int(feats.shape[0]), feature_dim=int(feats.shape[1]))
