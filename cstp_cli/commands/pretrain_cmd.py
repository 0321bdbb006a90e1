"""``cstp pretrain [DATA]``: self-supervised pretraining with the CSTP joint objective.

No ML logic here: flags → config (:mod:`cstp_cli.engine.config`) → :func:`cstp_cli.engine.loop.pretrain`.
"""

from __future__ import annotations

import datetime
import shlex
from pathlib import Path
from typing import Annotated, Optional

import typer

Opt = typer.Option


def pretrain(
    data: Annotated[Optional[str], typer.Argument(help="Dataset folder or cache file (.h5); none: the built-in synthetic set with the cpu-synthetic preset.")] = None,
    backbone: Annotated[Optional[str], Opt(help="Encoder (see `cstp plugins`). (default: r21d)")] = None,
    width: Annotated[Optional[str], Opt(help="Encoder width: full or tiny (CPU runs). (default: full)")] = None,
    epochs: Annotated[Optional[int], Opt(help="Epochs over the training split. (default: 300)")] = None,
    batch_size: Annotated[Optional[int], Opt("--batch-size", help="Global batch size (clip pairs per step). (default: 60)")] = None,
    lr: Annotated[Optional[float], Opt(help="Base learning rate of SGD (cosine to 1e-5). (default: 0.03)")] = None,
    workers: Annotated[Optional[int], Opt(help="DataLoader worker processes. (default: 4)")] = None,
    device: Annotated[Optional[str], Opt(help="auto, cpu, cuda or cuda:N. (default: auto)")] = None,
    precision: Annotated[Optional[str], Opt(help="bf16 (autocast on CUDA) or fp32. (default: bf16)")] = None,
    compile: Annotated[Optional[bool], Opt("--compile/--no-compile", help="torch.compile the encoder. (default: off)")] = None,
    sync_bn: Annotated[Optional[bool], Opt("--sync-bn/--no-sync-bn", help="SyncBatchNorm across GPUs under torchrun (CUDA only; docs/distributed.md). (default: off)")] = None,
    seed: Annotated[Optional[int], Opt(help="Seed of plans, epoch orders and initial weights. (default: 0)")] = None,
    out: Annotated[Optional[Path], Opt("--out", "-o", help="Run folder (checkpoint.pt, metrics.jsonl, loss.png). (default: runs/pretrain-<time>)")] = None,
    resume: Annotated[Optional[Path], Opt(help="Continue the run of this checkpoint at its next unconsumed sample.")] = None,
    config: Annotated[Optional[Path], Opt("--config", help="TOML config file: settings as top-level keys, \\[objective], \\[pretext.NAME] and \\[contrastive.NAME] tables (docs/ablations.md).")] = None,
    preset: Annotated[Optional[str], Opt(help="Named recipe: cpu-synthetic, ucf101-r21d-byol, ucf101-c3d-byol, k400-r21d-byol.")] = None,
    contrastive: Annotated[Optional[str], Opt(help="Contrastive scheme NAME[=λ] or none. (default: byol=0.1)")] = None,
    pretext: Annotated[Optional[str], Opt(help="Pretext tasks NAME[=λ],... or none. (default: stor,rot,pace)")] = None,
    augment: Annotated[Optional[str], Opt(help="Tasks used as augmentation only (plan + device transform, no loss): NAME,... or none. (default: pace,rot)")] = None,
    set_: Annotated[Optional[list[str]], Opt("--set", help="Component option COMPONENT.OPTION=VALUE, e.g. stor.decorrelate=true (repeatable).")] = None,
    sampling: Annotated[Optional[str], Opt(help="clean (METHOD §2) or reference (the authors' sampling, App. A). (default: clean)")] = None,
    split: Annotated[Optional[int], Opt(help="Fold whose train split is pretrained on. (default: 1)")] = None,
    clip_size: Annotated[Optional[int], Opt("--clip-size", help="Clip side S in pixels. (default: 112)")] = None,
    frames: Annotated[Optional[int], Opt("--frames", help="Frames per clip T. (default: 16)")] = None,
    size: Annotated[Optional[str], Opt("--size", help="Cache frame size WxH when DATA is a dataset folder. (default: 171x128)")] = None,
    max_steps: Annotated[Optional[int], Opt("--max-steps", help="Stop (with a checkpoint) after this many optimiser steps in total.")] = None,
    quiet: Annotated[bool, Opt("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Pretrain a video encoder with contrastive learning + pretext tasks (CSTP).

    A bare `cstp pretrain` trains on the built-in synthetic dataset with the cpu-synthetic
    preset (about a minute and a half on 2 CPU cores) and prints where the checkpoint and
    metrics are, and the retrieval command that evaluates it.
    """
    from cstp_cli.core.options import parse_sets
    from cstp_cli.engine.config import build_config
    from cstp_cli.engine.loop import pretrain as run_pretrain

    objective = {k: v for k, v in (("contrastive", contrastive), ("pretext", pretext), ("augment", augment)) if v is not None}
    flags = {
        "data": data, "backbone": backbone, "width": width, "epochs": epochs, "batch_size": batch_size,
        "lr": lr, "workers": workers, "device": device, "precision": precision, "compile": compile, "sync_bn": sync_bn,
        "seed": seed, "out": str(out) if out is not None else None, "sampling": sampling, "split": split,
        "clip_size": clip_size, "frames": frames, "size": size, "max_steps": max_steps,
        "objective": objective or None, "sets": parse_sets(set_) or None,
    }
    if resume is not None:
        cfg = {k: v for k, v in flags.items() if v is not None}
        if config is not None or preset is not None:
            from cstp_cli.errors import UsageError

            raise UsageError("--resume continues the checkpoint's own config; drop --config/--preset")
    else:
        cfg = build_config(data_given=data is not None, preset=preset, config_file=config, flags=flags)
        if cfg["out"] is None:
            cfg["out"] = str(Path("runs") / f"pretrain-{datetime.datetime.now():%Y%m%d-%H%M%S}")
    log = lambda line: typer.echo(line, err=True)  # noqa: E731
    result = run_pretrain(cfg, resume=resume, progress=not quiet, log=log)
    if not result.is_main:  # torchrun: only rank 0 reports
        if result.interrupted:
            raise typer.Exit(130)
        return
    typer.echo(f"checkpoint: {result.checkpoint}")
    typer.echo(f"metrics:    {result.metrics}")
    if result.plot is not None:
        typer.echo(f"loss plot:  {result.plot}")
    if not quiet and not result.interrupted:
        # the run's own config: on --resume it names the DATA and size of the original run
        typer.echo(f"next:       {next_command(result.config.get('data'), result.checkpoint, result.config.get('size'))}")
    if result.interrupted:
        typer.echo(f"interrupted after step {result.steps}; continue with: cstp pretrain --resume {result.checkpoint}", err=True)
        raise typer.Exit(130)


def register(app: typer.Typer) -> None:
    app.command("pretrain")(pretrain)


def next_command(data: str | None, checkpoint: Path, size: str | None) -> str:
    """The retrieval command that evaluates a finished pretraining run (METHOD §7); ``size`` is
    the config's ``WxH`` string, passed on only with DATA (the built-in set has its own)."""
    parts = ["cstp retrieve", *([shlex.quote(str(data))] if data else []), "--checkpoint", shlex.quote(str(checkpoint))]
    if data and size:
        parts += ["--size", size]
    return " ".join(parts)
