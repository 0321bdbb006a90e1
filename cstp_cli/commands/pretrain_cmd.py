"""``cstp pretrain [DATA]``: self-supervised pretraining with the CSTP joint objective.

Flags → settings (:class:`cstp_cli.engine.config.PretrainSettings`, which declares every
option, its type, default and help) → :func:`cstp_cli.engine.loop.pretrain` → printing.
"""

from __future__ import annotations

import datetime
import shlex
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from cstp_cli.core.settings import Extra, command
from cstp_cli.engine.config import BARE_PRESET, PretrainSettings

BEFORE = (
    Extra("data", Annotated[Optional[str], typer.Argument(help="Dataset folder or cache file (.h5); none: the built-in synthetic set with the cpu-synthetic preset.")]),
)
AFTER = (
    Extra("resume", Annotated[Optional[Path], typer.Option(help="Continue the run of this checkpoint at its next unconsumed sample.")]),
    Extra("config", Annotated[Optional[Path], typer.Option("--config", help="TOML config file: settings as top-level keys, \\[objective], \\[pretext.NAME] and \\[contrastive.NAME] tables (docs/ablations.md).")]),
    Extra("preset", Annotated[Optional[str], typer.Option(help=f"Named recipe: {', '.join(PretrainSettings.preset_names())} (a bare run: {BARE_PRESET}).")]),
    Extra("quiet", Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")], False),
)


@command(PretrainSettings, before=BEFORE, after=AFTER, bare_preset=BARE_PRESET)
def pretrain(*, data: str | None, resume: Path | None, config: Path | None, preset: str | None, quiet: bool, flags: dict[str, Any]) -> None:
    """Pretrain a video encoder with contrastive learning + pretext tasks (CSTP).

    A bare `cstp pretrain` trains on the built-in synthetic dataset with the cpu-synthetic
    preset (a few minutes on an idle 2-core machine) and prints where the
    checkpoint and metrics are, and the retrieval command that evaluates it.
    """
    from cstp_cli.core.options import parse_sets
    from cstp_cli.engine.config import build_config
    from cstp_cli.engine.loop import pretrain as run_pretrain
    from cstp_cli.errors import UsageError

    flags = {**flags, "data": data, "out": str(flags["out"]) if flags.get("out") is not None else None}
    flags["sets"] = parse_sets(flags["sets"]) or None if flags.get("sets") else None
    if resume is not None:
        if config is not None or preset is not None:
            raise UsageError("--resume continues the checkpoint's own config; drop --config/--preset")
        cfg: Any = {k: v for k, v in flags.items() if v is not None}
    else:
        cfg = build_config(data_given=data is not None, preset=preset, config_file=config, flags=flags)
        if cfg.out is None:
            cfg.out = str(Path("runs") / f"pretrain-{datetime.datetime.now():%Y%m%d-%H%M%S}")
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
        # the run's own settings: on --resume they name the DATA and size of the original run
        typer.echo(f"next:       {next_command(result.config.data, result.checkpoint, result.config.size)}")
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
