"""``cstp retrieve``: nearest-neighbour video retrieval (METHOD §7; VCOP's protocol).

Gallery = the train split, queries = the test split; R@1/5/10/20/50 printed as a table and
written as JSON with the switches; a PNG montage of a few queries and their top-5.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import numpy as np
import typer

from cstp_cli.commands.finetune_cmd import default_out, load_encoder_source, load_settings, open_data
from cstp_cli.core.options import parse_size
from cstp_cli.errors import UsageError

RETRIEVE_DEFAULTS: dict[str, Any] = {
    "split": 1,
    "stride": 1,
    "clips": 10,
    "layer": "pooled",
    "clip_l2": True,
    "bn_reestimate": None,  # None: on for --init random, off otherwise
    "frames": None,
    "clip_size": None,
    "batch_size": 4,  # videos per batch (x clips)
    "workers": 2,
    "device": "auto",
    "size": "171x128",
    "montage": 6,
    "backbone": "r21d",
    "width": "full",
    "out": None,
    "seed": 0,
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


def feature_encoder(checkpoint: str | None, init: str | None, onnx: str | None, backbone: str, width: str,
                    device: Any, seed: int = 0) -> tuple[Any, Any, dict]:
    """``(Encoder, torch module or None, info)`` from exactly one of --checkpoint, --init random, --onnx."""
    from cstp_cli.evaluation import protocols as ev

    given = [x for x in (checkpoint, init, onnx) if x is not None]
    if len(given) != 1:
        raise UsageError("pass exactly one of --checkpoint CKPT, --init random or --onnx FILE")
    if onnx is not None:
        from cstp_cli.deploy.ort import OnnxEncoder

        session = OnnxEncoder(onnx, provider="cuda" if str(device).startswith("cuda") else "auto")
        meta = dict(getattr(session, "metadata", {}) or {})
        frames, size = onnx_clip_shape(meta)

        def pooled(x: Any) -> Any:  # torch tensors on a GPU go through onnxruntime's IO binding
            return np.asarray(session(x.contiguous() if hasattr(x, "contiguous") else x), dtype=np.float32)

        info = {"init": str(onnx), "frames": frames or 16, "size": size or 112, "provider": getattr(session, "provider", "?"),
                "backbone": meta.get("backbone", "?")}
        return ev.Encoder(pooled=pooled, conv5=None, device=device, name="onnx"), None, info
    module, info = load_encoder_source(checkpoint, init, backbone, width, seed)
    return ev.torch_encoder(module, device), module, info


def retrieve(
    data: Annotated[Optional[str], typer.Argument(help="Dataset root or cache file (default: the built-in synthetic set).")] = None,
    checkpoint: Annotated[Optional[str], typer.Option("--checkpoint", help="Encoder checkpoint.")] = None,
    init: Annotated[Optional[str], typer.Option("--init", help="'random': a random encoder (BN statistics re-estimated).")] = None,
    onnx: Annotated[Optional[str], typer.Option("--onnx", help="An encoder exported by cstp export (onnxruntime).")] = None,
    backbone: Annotated[Optional[str], typer.Option("--backbone", help="Backbone for --init random (default r21d).")] = None,
    width: Annotated[Optional[str], typer.Option("--width", help="full or tiny, for --init random.")] = None,
    split: Annotated[Optional[int], typer.Option("--split", help="Fold: gallery = its train, queries = its test (default 1).")] = None,
    stride: Annotated[Optional[int], typer.Option("--stride", help="Frame step s inside a clip (default 1).")] = None,
    clips: Annotated[Optional[int], typer.Option("--clips", help="Clips per video (default 10).")] = None,
    layer: Annotated[Optional[str], typer.Option("--layer", help="pooled (default) or conv5 (max-pooled (1,2,2), flattened).")] = None,
    clip_l2: Annotated[Optional[bool], typer.Option("--clip-l2/--no-clip-l2", help="L2-normalise each clip's feature (default on).")] = None,
    bn_reestimate: Annotated[Optional[bool], typer.Option("--bn-reestimate/--no-bn-reestimate", help="Re-estimate BN statistics on gallery clips (default: on for --init random).")] = None,
    frames: Annotated[Optional[int], typer.Option("--frames", help="Clip frames T (default: the encoder's).")] = None,
    clip_size: Annotated[Optional[int], typer.Option("--clip-size", help="Clip side S (default: the encoder's).")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Videos per batch (default 4).")] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", help="DataLoader workers (default 2).")] = None,
    device: Annotated[Optional[str], typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = None,
    size: Annotated[Optional[str], typer.Option("--size", help="Cache frame size WxH (default 171x128, the protocol's).")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Seed of --init random weights (default 0).")] = None,
    montage: Annotated[Optional[int], typer.Option("--montage", help="Queries shown in the PNG (0: none; default 6).")] = None,
    out: Annotated[Optional[str], typer.Option("--out", help="Output folder (default runs/retrieve-<ckpt>).")] = None,
    config: Annotated[Optional[str], typer.Option("--config", help="TOML file with a \\[retrieve] table.")] = None,
    preset: Annotated[Optional[str], typer.Option("--preset", help="Evaluation preset: ucf101-r21d-byol, ucf101-c3d-byol, k400-r21d-byol.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Retrieval R@1/5/10/20/50: test videos query the train videos by cosine similarity."""
    from cstp_cli.evaluation import protocols as ev
    from cstp_cli.core.progress import Progress
    from cstp_cli.evaluation.reports import format_table, retrieval_montage, write_json
    from cstp_cli.core import dist as ddp

    flags = dict(split=split, stride=stride, clips=clips, layer=layer, clip_l2=clip_l2, bn_reestimate=bn_reestimate,
                 frames=frames, clip_size=clip_size, batch_size=batch_size, workers=workers, device=device, size=size,
                 montage=montage, backbone=backbone, width=width, out=out, seed=seed)
    s = load_settings("retrieve", RETRIEVE_DEFAULTS, preset, config, flags)
    if s["layer"] not in ("pooled", "conv5"):
        raise UsageError(f"--layer must be pooled or conv5, got {s['layer']!r}")
    from cstp_cli.core.fsutil import check_output_dir

    dest = check_output_dir(Path(s["out"]) if s["out"] else default_out("retrieve", checkpoint, onnx), "--out")  # before any work
    ctx = ddp.init_distributed(s["device"] or "auto")  # torchrun: one rank per GPU; else one process
    dev = ctx.device
    encoder, module, info = feature_encoder(checkpoint, init, onnx, s["backbone"], s["width"], dev, int(s["seed"]))
    with ddp.main_first():  # rank 0 builds a missing cache, the others reuse it
        reader = open_data(data, parse_size(s["size"]), int(s["workers"]))
    fold = int(s["split"])
    gallery = ev.split_indices(reader, fold, "train")
    queries = ev.split_indices(reader, fold, "test")
    g_labels = ev.require_labels(reader, gallery, "gallery (train)")
    q_labels = ev.require_labels(reader, queries, "query (test)")
    T, S = int(s["frames"] or info["frames"]), int(s["clip_size"] or info["size"])
    common = dict(T=T, stride=int(s["stride"]), num_clips=int(s["clips"]), size=S,
                  batch_videos=int(s["batch_size"]), workers=int(s["workers"]))
    reest = s["bn_reestimate"] if s["bn_reestimate"] is not None else info["init"] == "random"
    if reest:
        if module is None:
            raise UsageError("--bn-reestimate needs a PyTorch encoder (--checkpoint or --init random)")
        bar = Progress(gallery.size, "BN statistics", unit="videos", enabled=not quiet and ctx.is_main)
        ev.reestimate_bn(module, reader, gallery, device=dev, progress=bar.update, **common)
        bar.close()
        encoder = ev.torch_encoder(module, dev)
    feats = {}
    for name, videos in (("gallery", gallery), ("queries", queries)):
        bar = Progress(len(ddp.shard_range(videos.size)), f"features {name}", unit="videos", enabled=not quiet and ctx.is_main)
        feats[name] = ddp.sharded_map(videos, lambda v: ev.video_features(
            encoder, reader, v, layer=s["layer"], clip_l2=bool(s["clip_l2"]), progress=bar.update, **common))
        bar.close()
    if not ctx.is_main:  # every rank has all features; rank 0 alone reports and writes
        return
    recalls, scores, top = ev.retrieval_report(feats["queries"], feats["gallery"], q_labels, g_labels,
                                               device=dev if str(dev).startswith("cuda") else "cpu")
    typer.echo(format_table([{"split": str(fold), **recalls}], ("split", *recalls)))
    switches = {"split": fold, "stride": int(s["stride"]), "clips": int(s["clips"]), "frames": T, "clip_size": S,
                "layer": s["layer"], "clip_l2": bool(s["clip_l2"]), "bn_reestimate": bool(reest),
                "frame_wh": [int(v) for v in reader.frame_wh], "similarity": "cosine"}
    write_json(dest / "retrieval.json", {"command": "retrieve", "encoder": info["init"], "data": data or "synthetic",
                                         "switches": switches, "gallery": int(gallery.size), "queries": int(queries.size),
                                         "feature_dim": int(feats["gallery"].shape[1]), "recall": recalls,
                                         "provider": info.get("provider")})
    typer.echo(f"results: {dest / 'retrieval.json'}")
    n = min(int(s["montage"]), queries.size)
    if n > 0:
        pick = np.linspace(0, queries.size - 1, n).round().astype(int)
        classes = list(getattr(reader, "classes", []) or [])
        path = retrieval_montage(
            dest / "retrieval.png",
            [ev.middle_frame(reader, int(queries[q])) for q in pick],
            [int(q_labels[q]) for q in pick],
            [[ev.middle_frame(reader, int(gallery[g])) for g in top[q, :5]] for q in pick],
            [[int(g_labels[g]) for g in top[q, :5]] for q in pick],
            classes, [list(scores[q, :5]) for q in pick],
        )
        typer.echo(f"montage: {path}")


def register(app: typer.Typer) -> None:
    app.command("retrieve")(retrieve)
