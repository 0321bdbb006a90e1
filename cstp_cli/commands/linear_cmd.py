"""``cstp linear``: the linear probe — backbone frozen in eval mode, classifier only (METHOD §6)."""

from __future__ import annotations

import typer

from cstp_cli.commands.supervised_cli import supervised_command

linear = supervised_command(
    "linear",
    init_help="'random': probe a random encoder (BN statistics re-estimated).",
    doc="Train a classifier on frozen features (backbone in eval mode, bit-identical afterwards).",
)


def register(app: typer.Typer) -> None:
    app.command("linear")(linear)
