"""The ``cstp`` command line (Typer). One module per command; no ML logic here.

Error policy (DESIGN "Errors"): a :class:`~cstp_cli.errors.CstpError` prints one line and
exits with its code (1, or 2 for usage errors); any other exception is a bug: exit 3 with
a hint to set ``CSTP_DEBUG=1`` for the traceback.
"""

from __future__ import annotations

import importlib
import os
import sys

import typer

from cstp_cli import __version__
from cstp_cli.errors import CstpError

#: Command modules under ``cstp_cli.commands``; each has ``register(app)``.
COMMAND_MODULES = (
    "pretrain_cmd",
    "finetune_cmd",
    "linear_cmd",
    "retrieve_cmd",
    "embed_cmd",
    "export_cmd",
    "cache_cmd",
    "data_cmd",
    "plugins_cmd",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cstp {__version__}")
        raise typer.Exit()


def build_app() -> typer.Typer:
    """The Typer application with every built-in and plugin command."""
    app = typer.Typer(
        name="cstp",
        help="Self-supervised video representations with CSTP: pretrain, evaluate, export.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )

    @app.callback()
    def _root(
        version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    ) -> None:
        """cstp: contrastive spatio-temporal pretext learning for video."""

    for name in COMMAND_MODULES:
        spec = importlib.util.find_spec(f"cstp_cli.commands.{name}")
        if spec is None:  # pragma: no cover - during development only
            continue
        importlib.import_module(f"cstp_cli.commands.{name}").register(app)
    try:
        from cstp_cli.plugins import get_registry

        get_registry().pm.hook.register_commands(app=app)
    except CstpError as exc:
        _fail(exc)
    return app


def _fail(exc: CstpError) -> None:
    if os.environ.get("CSTP_DEBUG"):
        raise exc
    print(f"{_rank_prefix()}error: {exc}", file=sys.stderr)
    sys.exit(exc.exit_code)


def _rank_prefix() -> str:
    """``"rank N: "`` under torchrun with several processes (each rank prints its own line)."""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        return f"rank {os.environ.get('RANK', '?')}: "
    return ""


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``cstp`` console script."""
    app = build_app()
    try:
        app(args=argv, prog_name="cstp", standalone_mode=True)
    except CstpError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as exc:  # a bug
        if os.environ.get("CSTP_DEBUG"):
            raise
        print(
            f"internal error: {type(exc).__name__}: {exc} (this is a bug; set CSTP_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        sys.exit(3)


if __name__ == "__main__":  # pragma: no cover
    main()
