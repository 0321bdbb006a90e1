"""``cstp plugins``: list every component with its kind, provider, version, options, status."""

from __future__ import annotations

import json
from typing import Annotated

import typer


def _options_text(spec) -> str:
    options = getattr(spec, "options", {}) or {}
    return ", ".join(f"{o.name}={o.default!r}" for o in options.values())


def plugins(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also print each option's help.")] = False,
) -> None:
    """List installed backbones, contrastive schemes and pretext tasks, and skipped plugins."""
    from cstp_cli.plugins import get_registry

    registry = get_registry()
    rows = []
    for comp in registry.all():
        options = getattr(comp.spec, "options", {}) or {}
        rows.append(
            {
                "kind": comp.kind,
                "name": comp.name,
                "plugin": comp.plugin,
                "version": comp.version,
                "status": "ok",
                "options": {
                    o.name: {"type": o.type, "default": o.default, "help": o.help} for o in options.values()
                },
                "weight": getattr(comp.spec, "default_weight", None),
                "description": comp.spec.description,
            }
        )
    for plugin, reason in registry.report.skipped.items():
        rows.append({"kind": "plugin", "name": plugin, "plugin": plugin, "version": "?", "status": f"skipped: {reason}", "options": {}})
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    header = f"{'kind':<12} {'name':<12} {'plugin':<22} {'version':<9} {'status':<8} options"
    typer.echo(header)
    typer.echo("-" * len(header))
    for row in rows:
        opts = ", ".join(f"{k}={v['default']!r}" for k, v in row["options"].items())
        if row.get("weight") is not None:
            opts = f"weight={row['weight']}" + (", " + opts if opts else "")
        typer.echo(f"{row['kind']:<12} {row['name']:<12} {row['plugin']:<22} {row['version']:<9} {row['status']:<8} {opts}")
        if verbose:
            for k, v in row["options"].items():
                typer.echo(f"{'':<14}{k} ({v['type']}): {v['help']}")


def register(app: typer.Typer) -> None:
    app.command("plugins")(plugins)
