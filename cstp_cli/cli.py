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
        _register_plugin_commands(app)
    except CstpError as exc:
        _fail(exc)
    return app


#: The distribution whose entry points are the built-in plugins (they add no commands).
_BUILTIN_DISTRIBUTION = "cstp"


def _third_party_plugins() -> list[str]:
    """Names of the ``"cstp"`` entry points of other distributions than cstp itself."""
    import importlib.metadata as md

    out = []
    for ep in md.entry_points(group="cstp"):
        dist = (getattr(getattr(ep, "dist", None), "name", None) or "?").lower()
        if dist != _BUILTIN_DISTRIBUTION:
            out.append(ep.name)
    return out


def _register_plugin_commands(app: typer.Typer) -> None:
    """Let plugins add commands (hook ``register_commands``).

    The built-in plugins add none and import torch, so the plugin registry is loaded only
    when a third-party plugin is installed: ``cstp --help`` and every command's ``--help``
    stay free of torch (issue 13 item 9). Components are looked up when a command runs.
    """
    if not _third_party_plugins():
        return
    from cstp_cli.plugins import get_registry

    get_registry().pm.hook.register_commands(app=app)


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
