"""``cstp data``: the built-in synthetic dataset (``synth``) and clip-pair plans (``pairs``)."""

from __future__ import annotations

import typer

data_app = typer.Typer(help="Generate the built-in synthetic dataset; inspect clip-pair plans.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    from cstp_cli.commands import data_pairs, data_synth

    data_synth.register(data_app)
    data_pairs.register(data_app)
    app.add_typer(data_app, name="data")
