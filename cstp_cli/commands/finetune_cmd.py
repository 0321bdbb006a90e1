"""``cstp finetune``: fine-tune an encoder on a labelled dataset (METHOD §6), per split.

Flags → :class:`~cstp_cli.evaluation.settings.FinetuneSettings` (every option declared once,
with its type, default and help) → :func:`cstp_cli.evaluation.finetune.run_finetune` → the
table and the results file. ``cstp linear`` (:mod:`cstp_cli.commands.linear_cmd`) takes the
same options from :class:`~cstp_cli.evaluation.settings.LinearSettings`.
"""

from __future__ import annotations

from typing import Annotated, Any, Callable, Optional

import typer

from cstp_cli.core.settings import Extra, Settings, command
from cstp_cli.evaluation.finetune import run_finetune  # light: torch is imported when a run starts
from cstp_cli.evaluation.settings import FinetuneSettings, eval_preset_names


def supervised_extras(kind: str, init_help: str) -> tuple[tuple[Extra, ...], tuple[Extra, ...]]:
    """The parameters of ``cstp finetune``/``linear`` that are not settings: (before, after)."""
    before = (
        Extra("data", Annotated[Optional[str], typer.Argument(help="Dataset root or cache file (default: the built-in synthetic set).")]),
        Extra("checkpoint", Annotated[Optional[str], typer.Option("--checkpoint", help="Encoder checkpoint (cstp pretrain/finetune).")]),
        Extra("init", Annotated[Optional[str], typer.Option("--init", help=init_help)]),
    )
    after = (
        Extra("resume", Annotated[bool, typer.Option("--resume", help="Continue the runs in --out (each split's checkpoint.pt) at their next epoch.")], False),
        Extra("config", Annotated[Optional[str], typer.Option("--config", help=f"TOML file with a \\[{kind}] table.")]),
        Extra("preset", Annotated[Optional[str], typer.Option("--preset", help=f"Evaluation preset: {', '.join(eval_preset_names())}.")]),
        Extra("quiet", Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or per-epoch lines.")], False),
    )
    return before, after


def supervised_command(kind: str, settings_cls: type[Settings], run: Callable[..., Any], init_help: str,
                       doc: str) -> Callable[..., None]:
    """The Typer command of ``kind``: layered settings → ``run`` → the table and the results path."""
    before, after = supervised_extras(kind, init_help)

    @command(settings_cls, before=before, after=after)
    def cmd(*, data: str | None, checkpoint: str | None, init: str | None, resume: bool, config: str | None,
            preset: str | None, quiet: bool, flags: dict[str, Any]) -> None:
        from cstp_cli.evaluation.sources import EncoderSource

        settings = settings_cls.layered(preset=preset, config=config, flags=flags)
        log = None if quiet else (lambda m: typer.echo(m, err=True))
        result = run(settings, EncoderSource(checkpoint=checkpoint, init=init), data, resume=resume,
                     progress=not quiet, log=log)
        if not result.is_main:
            return
        typer.echo(result.table())
        typer.echo(f"results: {result.results}")

    cmd.__name__ = cmd.__qualname__ = kind
    cmd.__doc__ = doc
    return cmd


finetune = supervised_command(
    "finetune", FinetuneSettings, run_finetune,
    init_help="'random': train from scratch instead of a checkpoint.",
    doc="Fine-tune all layers on a labelled dataset; report video-level top-1/top-5 and clip accuracy.",
)


def register(app: typer.Typer) -> None:
    app.command("finetune")(finetune)
