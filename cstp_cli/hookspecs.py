"""The only extension surface of cstp: pluggy hooks of the project ``"cstp"``.

A plugin is a module (or object) with functions decorated by :data:`hookimpl`, made
known through the ``"cstp"`` entry-point group (built-ins are registered the same way).
Each ``register_*`` hook receives a ``register`` callback; call it once per component::

    from cstp_cli.hookspecs import hookimpl
    from cstp_cli.api import PretextSpec

    @hookimpl
    def register_pretext_tasks(register):
        register(PretextSpec(name="arrow", build=ArrowTask, default_weight=1.0))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import pluggy

if TYPE_CHECKING:  # the hooks' argument types; importing them here would cost the CLI's start-up
    import typer

    from cstp_cli.api import BackboneSpec, PretextSpec, SchemeSpec

hookspec = pluggy.HookspecMarker("cstp")
hookimpl = pluggy.HookimplMarker("cstp")


@hookspec
def register_backbones(register: Callable[[BackboneSpec], None]) -> None:
    """Register video encoders: call ``register(BackboneSpec(...))`` for each.

    The spec's ``build(width)`` returns an ``nn.Module`` mapping ``float[B, 3, T, H, W]``
    to ``float[B, D]`` (see :class:`cstp_cli.api.BackboneSpec`).
    """


@hookspec
def register_contrastive_schemes(register: Callable[[SchemeSpec], None]) -> None:
    """Register contrastive schemes: call ``register(SchemeSpec(...))`` for each.

    The spec's ``build(feature_dim, **options)`` receives the declared options parsed and
    returns a :class:`cstp_cli.api.ContrastiveScheme` (an ``nn.Module``); it never sees
    other components.
    """


@hookspec
def register_pretext_tasks(register: Callable[[PretextSpec], None]) -> None:
    """Register pretext tasks (and augmentations): call ``register(PretextSpec(...))``.

    The spec's ``build(**options)`` receives the declared options parsed (typed values) and
    returns a :class:`cstp_cli.api.PretextTask` with its plan steps, optional device
    transform, head and loss.
    """


@hookspec
def register_commands(app: typer.Typer) -> None:
    """Add sub-commands to the ``cstp`` Typer application ``app``."""
