"""``cstp linear``: the linear probe — backbone frozen in eval mode, classifier only (METHOD §6).

Flags → :class:`~cstp_cli.evaluation.settings.LinearSettings` →
:func:`cstp_cli.evaluation.linear.run_linear` → the table; the options are ``cstp finetune``'s.
"""

from __future__ import annotations

import typer

from cstp_cli.commands.finetune_cmd import supervised_command
from cstp_cli.evaluation.linear import run_linear
from cstp_cli.evaluation.settings import LinearSettings

linear = supervised_command(
    "linear", LinearSettings, run_linear,
    init_help="'random': probe a random encoder (BN statistics re-estimated).",
    doc="Train a classifier on frozen features (backbone in eval mode, bit-identical afterwards).",
)


def register(app: typer.Typer) -> None:
    app.command("linear")(linear)
