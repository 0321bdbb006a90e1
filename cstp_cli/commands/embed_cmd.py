"""``cstp embed``: video features with the retrieval protocol's clips (METHOD §7), to a file.

Flags → :class:`~cstp_cli.evaluation.settings.EmbedSettings` →
:func:`cstp_cli.evaluation.embedding.run_embedding` → one line naming the file (``.h5`` or
``.npz``; the layout is documented in :mod:`cstp_cli.evaluation.embedding`).
"""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from cstp_cli.core.settings import Extra, command
from cstp_cli.evaluation.settings import EmbedSettings

BEFORE = (
    Extra("data", Annotated[Optional[str], typer.Argument(help="Dataset root or cache file (default: the built-in synthetic set).")]),
    Extra("output", Annotated[str, typer.Option("--output", "-o", help="Features file (.h5 or .npz).")], "features.h5"),
    Extra("onnx", Annotated[Optional[str], typer.Option("--onnx", help="An encoder exported by cstp export (onnxruntime).")]),
    Extra("checkpoint", Annotated[Optional[str], typer.Option("--checkpoint", help="Encoder checkpoint.")]),
)
AFTER = (
    Extra("config", Annotated[Optional[str], typer.Option("--config", help="TOML file with an \\[embed] table.")]),
    Extra("quiet", Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")], False),
)


@command(EmbedSettings, before=BEFORE, after=AFTER)
def embed(*, data: str | None, output: str, onnx: str | None, checkpoint: str | None, config: str | None, quiet: bool,
          flags: dict[str, Any]) -> None:
    """Compute one feature per video (mean of 10 L2-normalised clip features) and write them to a file."""
    from cstp_cli.evaluation.embedding import run_embedding
    from cstp_cli.evaluation.sources import EncoderSource

    settings = EmbedSettings.layered(config=config, flags=flags)
    result = run_embedding(settings, EncoderSource(checkpoint=checkpoint, onnx=onnx), output, data, progress=not quiet)
    if result.is_main:
        typer.echo(f"{result.num_videos} videos × {result.feature_dim} features → {result.path}")


def register(app: typer.Typer) -> None:
    app.command("embed")(embed)
