"""``cstp retrieve``: nearest-neighbour video retrieval (METHOD §7; VCOP's protocol).

Flags → :class:`~cstp_cli.evaluation.settings.RetrievalSettings` →
:func:`cstp_cli.evaluation.retrieval.run_retrieval` → R@1/5/10/20/50 as a table, the JSON
with the switches and a PNG montage of a few queries and their top-5.
"""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from cstp_cli.core.settings import Extra, command
from cstp_cli.evaluation.settings import RetrievalSettings, eval_preset_names

BEFORE = (
    Extra("data", Annotated[Optional[str], typer.Argument(help="Dataset root or cache file (default: the built-in synthetic set).")]),
    Extra("checkpoint", Annotated[Optional[str], typer.Option("--checkpoint", help="Encoder checkpoint.")]),
    Extra("init", Annotated[Optional[str], typer.Option("--init", help="'random': a random encoder (BN statistics re-estimated).")]),
    Extra("onnx", Annotated[Optional[str], typer.Option("--onnx", help="An encoder exported by cstp export (onnxruntime).")]),
)
AFTER = (
    Extra("config", Annotated[Optional[str], typer.Option("--config", help="TOML file with a \\[retrieve] table.")]),
    Extra("preset", Annotated[Optional[str], typer.Option("--preset", help=f"Evaluation preset: {', '.join(eval_preset_names())}.")]),
    Extra("quiet", Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")], False),
)


@command(RetrievalSettings, before=BEFORE, after=AFTER)
def retrieve(*, data: str | None, checkpoint: str | None, init: str | None, onnx: str | None, config: str | None,
             preset: str | None, quiet: bool, flags: dict[str, Any]) -> None:
    """Retrieval R@1/5/10/20/50: test videos query the train videos by cosine similarity."""
    from cstp_cli.evaluation.retrieval import run_retrieval
    from cstp_cli.evaluation.sources import EncoderSource

    settings = RetrievalSettings.layered(preset=preset, config=config, flags=flags)
    result = run_retrieval(settings, EncoderSource(checkpoint=checkpoint, init=init, onnx=onnx), data, progress=not quiet)
    if not result.is_main:
        return
    typer.echo(result.table())
    typer.echo(f"results: {result.report}")
    if result.montage is not None:
        typer.echo(f"montage: {result.montage}")


def register(app: typer.Typer) -> None:
    app.command("retrieve")(retrieve)
