"""``cstp embed``: video features with the retrieval protocol's clips (METHOD §7), to a file.

``-o features.h5`` is written by :func:`cstp_cli.data.cache.write_features` (the module that owns
h5py); ``.npz`` is written with NumPy. Either holds ``features float32[V, F]``, ``labels
int64[V]`` (−1: unlabelled), ``videos int64[V]`` (cache indices), ``paths`` and the switches.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import numpy as np
import typer

from cstp_cli.commands.finetune_cmd import load_settings, open_data
from cstp_cli.core.options import parse_size
from cstp_cli.commands.retrieve_cmd import feature_encoder
from cstp_cli.errors import CstpError, UsageError

EMBED_DEFAULTS: dict[str, Any] = {
    "split": 1,
    "which": "all",
    "stride": 1,
    "clips": 10,
    "layer": "pooled",
    "clip_l2": True,
    "frames": None,
    "clip_size": None,
    "batch_size": 4,
    "workers": 2,
    "device": "auto",
    "size": "171x128",
    "backbone": "r21d",
    "width": "full",
}


def write_embeddings(path: Path, features: np.ndarray, labels: np.ndarray, paths: list[str], videos: np.ndarray,
                     attrs: dict[str, Any]) -> Path:
    """Write features to ``.h5`` (via cache.py) or ``.npz`` (atomically); one-line error otherwise."""
    from cstp_cli.core.fsutil import atomic_write_bytes

    suffix = path.suffix.lower()
    if suffix in (".h5", ".hdf5"):
        from cstp_cli.data import cache

        writer = getattr(cache, "write_features", None)
        if writer is None:
            raise CstpError(f"this cstp cannot write HDF5 features yet; pass -o {path.with_suffix('.npz')} instead")
        writer(path, features, labels, paths, {**attrs, "videos": videos.tolist()})
        return path
    if suffix == ".npz":
        import io

        buf = io.BytesIO()
        np.savez(buf, features=features.astype(np.float32), labels=labels.astype(np.int64), videos=videos.astype(np.int64),
                 paths=np.array(paths, dtype=str), attrs=np.array(json.dumps(attrs)))
        try:
            return atomic_write_bytes(path, buf.getvalue())
        except OSError as exc:  # full disk: no temporary file stays, an old file is kept
            from cstp_cli.core.safewrite import write_failure

            raise CstpError(f"cannot write features {path}: {write_failure(exc)}; free space or choose another -o") from None
    raise UsageError(f"-o must end in .h5 or .npz, got {path.name!r}")


def embed(
    data: Annotated[Optional[str], typer.Argument(help="Dataset root or cache file (default: the built-in synthetic set).")] = None,
    output: Annotated[str, typer.Option("--output", "-o", help="Features file (.h5 or .npz).")] = "features.h5",
    onnx: Annotated[Optional[str], typer.Option("--onnx", help="An encoder exported by cstp export (onnxruntime).")] = None,
    checkpoint: Annotated[Optional[str], typer.Option("--checkpoint", help="Encoder checkpoint.")] = None,
    split: Annotated[Optional[int], typer.Option("--split", help="Fold for --which train/test (default 1).")] = None,
    which: Annotated[Optional[str], typer.Option("--which", help="all (default), train or test videos.")] = None,
    stride: Annotated[Optional[int], typer.Option("--stride", help="Frame step s inside a clip (default 1).")] = None,
    clips: Annotated[Optional[int], typer.Option("--clips", help="Clips per video (default 10).")] = None,
    layer: Annotated[Optional[str], typer.Option("--layer", help="pooled (default) or conv5 (PyTorch only).")] = None,
    clip_l2: Annotated[Optional[bool], typer.Option("--clip-l2/--no-clip-l2", help="L2-normalise each clip's feature (default on).")] = None,
    frames: Annotated[Optional[int], typer.Option("--frames", help="Clip frames T (default: the encoder's).")] = None,
    clip_size: Annotated[Optional[int], typer.Option("--clip-size", help="Clip side S (default: the encoder's).")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Videos per batch (default 4).")] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", help="DataLoader workers (default 2).")] = None,
    device: Annotated[Optional[str], typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = None,
    size: Annotated[Optional[str], typer.Option("--size", help="Cache frame size WxH (default 171x128).")] = None,
    config: Annotated[Optional[str], typer.Option("--config", help="TOML file with an \\[embed] table.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Compute one feature per video (mean of 10 L2-normalised clip features) and write them to a file."""
    from cstp_cli.evaluation import protocols as ev
    from cstp_cli.core.progress import Progress
    from cstp_cli.core import dist as ddp

    flags = dict(split=split, which=which, stride=stride, clips=clips, layer=layer, clip_l2=clip_l2, frames=frames,
                 clip_size=clip_size, batch_size=batch_size, workers=workers, device=device, size=size)
    s = load_settings("embed", EMBED_DEFAULTS, None, config, flags)
    if checkpoint is None and onnx is None:
        raise UsageError("pass --onnx model.onnx or --checkpoint CKPT")
    dest = Path(output)
    if dest.suffix.lower() not in (".h5", ".hdf5", ".npz"):
        raise UsageError(f"-o must end in .h5 or .npz, got {dest.name!r}")
    from cstp_cli.core.fsutil import check_output_file

    check_output_file(dest, "-o")  # a real write test, before loading the encoder or decoding
    ctx = ddp.init_distributed(s["device"] or "auto")  # torchrun: one rank per GPU; else one process
    dev = ctx.device
    encoder, _module, info = feature_encoder(checkpoint, None, onnx, s["backbone"], s["width"], dev)
    with ddp.main_first():
        reader = open_data(data, parse_size(s["size"]), int(s["workers"]))
    if s["which"] == "all":
        videos = np.arange(reader.num_videos, dtype=np.int64)
        if videos.size == 0:
            raise CstpError("the cache holds no videos; rebuild it with cstp cache build")
    elif s["which"] in ("train", "test"):
        videos = ev.split_indices(reader, int(s["split"]), s["which"])
    else:
        raise UsageError(f"--which must be all, train or test, got {s['which']!r}")
    T, S = int(s["frames"] or info["frames"]), int(s["clip_size"] or info["size"])
    bar = Progress(len(ddp.shard_range(videos.size)), "embedding", unit="videos", enabled=not quiet and ctx.is_main)
    feats = ddp.sharded_map(videos, lambda v: ev.video_features(
        encoder, reader, v, T=T, stride=int(s["stride"]), num_clips=int(s["clips"]), layer=s["layer"],
        clip_l2=bool(s["clip_l2"]), size=S, batch_videos=int(s["batch_size"]), workers=int(s["workers"]),
        progress=bar.update))
    bar.close()
    if not ctx.is_main:  # rank 0 alone writes the file
        return
    attrs = {"encoder": info["init"], "provider": info.get("provider") or str(dev), "frames": T, "clip_size": S,
             "stride": int(s["stride"]), "clips": int(s["clips"]), "layer": s["layer"], "clip_l2": bool(s["clip_l2"]),
             "frame_wh": [int(v) for v in reader.frame_wh], "which": s["which"], "split": int(s["split"]),
             "classes": list(getattr(reader, "classes", []) or [])}
    labels = np.asarray(reader.labels, dtype=np.int64)[videos]
    paths = [str(reader.paths[v]) for v in videos]
    path = write_embeddings(dest, feats, labels, paths, videos, attrs)
    typer.echo(f"{feats.shape[0]} videos × {feats.shape[1]} features → {path}")


def register(app: typer.Typer) -> None:
    app.command("embed")(embed)
