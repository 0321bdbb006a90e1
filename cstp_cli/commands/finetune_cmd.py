"""``cstp finetune``: fine-tune an encoder on a labelled dataset (METHOD §6), per split.

Also holds the small helpers the evaluation commands share (settings, data, encoders).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import typer

from cstp_cli.commands.supervised_cli import supervised_command
from cstp_cli.core.options import parse_size, parse_splits, read_toml
from cstp_cli.errors import CheckpointError, UsageError

#: Evaluation presets live in their own folder so that ``cstp pretrain``'s preset list stays clean.
PRESET_DIR = Path(__file__).resolve().parent.parent / "presets" / "eval"

#: The finetune/linear settings and their defaults (METHOD §6).
SUPERVISED_DEFAULTS: dict[str, Any] = {
    "split": "1",
    "epochs": 100,
    "batch_size": 60,
    "lr": 0.02,
    "weight_decay": 5e-4,
    "plateau_patience": 10,
    "workers": 2,
    "device": "auto",
    "frames": None,  # None: the checkpoint's clip frames (16 for --init random)
    "clip_size": None,  # None: the checkpoint's clip size (112 for --init random)
    "clip_pace": 4,
    "test_clips": 10,
    "head": "code",
    "augment": "",
    "seed": 0,
    "backbone": "r21d",
    "width": "full",
    "size": None,  # None: a cache file's own frame size; 171x128 when a dataset folder is cached
    "out": None,
}


# --------------------------------------------------------------------------- shared helpers




def eval_preset_names() -> list[str]:
    """Shipped evaluation presets (``cstp_cli/presets/eval/*.toml``)."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def load_settings(
    command: str, defaults: Mapping[str, Any], preset: str | None, config: str | None, flags: Mapping[str, Any]
) -> dict[str, Any]:
    """defaults < preset's ``[command]`` table < config file's ``[command]`` table < flags (non-None).

    Presets live in ``cstp_cli/presets/eval/NAME.toml`` (named like the pretraining preset they
    evaluate; an ``eval-`` prefix is accepted); unknown keys are refused in one line.
    """
    out = dict(defaults)
    layers: list[tuple[str, Mapping[str, Any]]] = []
    if preset:
        name = preset[len("eval-"):] if preset.startswith("eval-") else preset
        path = PRESET_DIR / f"{name}.toml"
        if not path.is_file():
            raise UsageError(f"unknown evaluation preset {preset!r}; presets: {', '.join(eval_preset_names()) or 'none'}")
        layers.append((f"preset {name}", read_toml(path).get(command, {})))
    if config:
        layers.append((f"config {config}", read_toml(Path(config)).get(command, {})))
    layers.append(("command line", {k: v for k, v in flags.items() if v is not None}))
    for source, table in layers:
        for key, value in table.items():
            if key not in defaults:
                raise UsageError(f"{source}: unknown {command} setting {key!r} (settings: {', '.join(defaults)})")
            out[key] = value
    return out






def open_data(data: str | None, size: tuple[int, int] | None, workers: int | None) -> Any:
    """DATA (dataset root, cache file or nothing = the synthetic set) → an open ``CacheReader``.

    ``size`` None: a cache file at its own frame size, a dataset folder cached at 171x128,
    the synthetic set at its native size; a given ``size`` must match a cache file's."""
    from cstp_cli.data.cache import CacheReader
    from cstp_cli.data.resolve import resolve_data

    return CacheReader(resolve_data(data, size=size, workers=workers))


def load_encoder_source(
    checkpoint: str | None, init: str | None, backbone: str, width: str, seed: int = 0
) -> tuple[Any, dict[str, Any]]:
    """The encoder module and its info (``backbone``, ``width``, ``feature_dim``, ``frames``,
    ``size``, ``init``) from ``--checkpoint`` or ``--init random`` (weights drawn after
    ``torch.manual_seed(seed)``); exactly one must be given."""
    import torch

    from cstp_cli.core.checkpoint import build_backbone, load_checkpoint, load_encoder

    if (checkpoint is None) == (init is None):
        raise UsageError("pass exactly one of --checkpoint CKPT or --init random")
    if init is not None:
        if init != "random":
            raise UsageError(f"--init accepts only 'random', got {init!r}")
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


def default_out(command: str, checkpoint: str | None, onnx: str | None = None) -> Path:
    stem = Path(checkpoint or onnx).stem if (checkpoint or onnx) else "random"
    return Path("runs") / f"{command}-{stem}"


# --------------------------------------------------------------------------- finetune / linear

#: Files a finetune/linear run leaves in its ``--out`` folder; any of them means it holds a run.
SUPERVISED_RUN_FILES = ("results.json", "split*/checkpoint.pt")


def run_supervised_command(mode: str, data: str | None, checkpoint: str | None, init: str | None,
                           preset: str | None, config: str | None, resume: bool, quiet: bool,
                           flags: dict[str, Any]) -> None:
    """Shared body of ``cstp finetune`` and ``cstp linear``: every requested fold, then the mean."""
    import copy

    from cstp_cli.core.progress import progress_factory
    from cstp_cli.evaluation.reports import format_table, write_json
    from cstp_cli.evaluation.supervised import SupervisedConfig, run_supervised

    from cstp_cli.core.rundir import check_run_folder

    s = load_settings(mode, SUPERVISED_DEFAULTS, preset, config, flags)
    folds = parse_splits(s["split"])
    out = Path(s["out"]) if s["out"] else default_out(mode, checkpoint)
    check_run_folder(out, SUPERVISED_RUN_FILES, flag="--out", resume=resume, continue_hint="--resume")  # before any data work
    module, info = load_encoder_source(checkpoint, init, s["backbone"], s["width"], int(s["seed"]))
    augment = [a.strip() for a in str(s["augment"] or "").split(",") if a.strip() and a.strip() != "none"]
    cfg = SupervisedConfig(
        mode=mode, epochs=int(s["epochs"]), batch_size=int(s["batch_size"]), lr=float(s["lr"]),
        weight_decay=float(s["weight_decay"]), plateau_patience=int(s["plateau_patience"]),
        frames=int(s["frames"] or info["frames"]), clip_size=int(s["clip_size"] or info["size"]),
        clip_pace=int(s["clip_pace"]), test_clips=int(s["test_clips"]), head=str(s["head"]),
        augment=augment, seed=int(s["seed"]), workers=int(s["workers"]), device=str(s["device"]),
        bn_reestimate=(mode == "linear" and info["init"] == "random"),
    )
    cfg.validate()
    from cstp_cli.core import dist as ddp

    ctx = ddp.init_distributed(cfg.device or "auto")  # torchrun: one rank per GPU; else one process
    with ddp.main_first():
        reader = open_data(data, parse_size(s["size"]) if s["size"] else None, cfg.workers)
    quiet = quiet or not ctx.is_main
    log = (lambda m: None) if quiet else (lambda m: typer.echo(m, err=True))
    info = {**info, "frame_wh": tuple(int(v) for v in reader.frame_wh), "data": str(data) if data else "synthetic"}
    initial = copy.deepcopy(module.state_dict())
    rows = []
    for fold in folds:
        module.load_state_dict(initial)  # every fold starts from the same encoder
        result = run_supervised(cfg, reader, fold, module, info, out / f"split{fold}", resume=resume,
                                progress_factory=progress_factory(not quiet), log=log)
        rows.append({"split": str(fold), **result.metrics})
    keys = ("video_top1", "video_top5", "clip_top1")
    if not ctx.is_main:
        return
    if len(rows) > 1:
        rows.append({"split": "mean", **{k: float(np.mean([r[k] for r in rows])) for k in keys}})
    typer.echo(format_table(rows, ("split", *keys)))
    write_json(out / "results.json", {"command": mode, "init": info["init"], "settings": {**s, "augment": augment},
                                      "config": {k: v for k, v in vars(cfg).items()}, "results": rows})
    typer.echo(f"results: {out / 'results.json'}")


finetune = supervised_command(
    "finetune",
    init_help="'random': train from scratch instead of a checkpoint.",
    doc="Fine-tune all layers on a labelled dataset; report video-level top-1/top-5 and clip accuracy.",
)


def register(app: typer.Typer) -> None:
    app.command("finetune")(finetune)
