"""The public plugin API of cstp: specs, options, the plan contract and the component interfaces.

Plugins import only this package and :mod:`cstp_cli.hookspecs`. Everything here is stable
API; everything else in ``cstp_cli`` is internal. The package is split by subject, every
name re-exported here:

* :mod:`cstp_cli.api.options` — :class:`Option`, :func:`resolve_options` (the engine's one
  parser of component options), :func:`parse_fraction`;
* :mod:`cstp_cli.api.specs` — :class:`BackboneSpec`, :class:`SchemeSpec`, :class:`PretextSpec`;
* :mod:`cstp_cli.api.plans` — :class:`PairPlan`, :class:`PlanBatch`, :func:`collate_plans`,
  :data:`PHASES`, :data:`PLAN_FIELDS`;
* :mod:`cstp_cli.api.tasks` — :class:`PretextTask`, :func:`pretext_head`;
* :mod:`cstp_cli.api.schemes` — :class:`ContrastiveScheme` (an ``nn.Module``),
  :class:`SchemeOutput`, :func:`unwrap`. These import torch, so they are loaded on first
  use: importing the API (as ``cstp --help`` does) needs no torch.

The integer plan geometry of :mod:`cstp_cli.plans.geometry` that a pretext task needs
(METHOD §2.1–§2.3: ``delta_steps``, ``draw_rrc_size``, ``rrc_box``, ``corner_shift``,
``min_overlap_width``, ``overlap_height``, ``inside``, ``intersection_area``, ``clip_idx``,
``looped_idx``, ``candidate_strings``) is re-exported, so a plugin computes offsets and crops exactly as the core
sampler does.

Conventions (METHOD §0): frames are 0-indexed at the cache's frame rate; every frame of a
cache has one size W×H (written width×height); boxes are ``(x, y, w, h)`` in integer cache
pixels, half-open; a clip has T frames; plan geometry is integer arithmetic only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cstp_cli.api.options import Option, option_defaults, parse_fraction, resolve_options
from cstp_cli.api.plans import PHASES, PLAN_FIELDS, PairPlan, PlanBatch, collate_plans, share_clip_one
from cstp_cli.api.specs import BackboneSpec, PretextSpec, SchemeSpec
from cstp_cli.api.tasks import PretextTask, pretext_head
from cstp_cli.plans.geometry import (
    candidate_strings,
    clip_idx,
    corner_shift,
    delta_steps,
    draw_rrc_size,
    inside,
    intersection_area,
    looped_idx,
    min_overlap_width,
    overlap_height,
    rrc_box,
)

if TYPE_CHECKING:
    from cstp_cli.api.schemes import ContrastiveScheme, SchemeOutput, unwrap

__all__ = [
    "Option",
    "BackboneSpec",
    "SchemeSpec",
    "PretextSpec",
    "PairPlan",
    "PlanBatch",
    "PHASES",
    "PLAN_FIELDS",
    "PretextTask",
    "ContrastiveScheme",
    "SchemeOutput",
    "collate_plans",
    "share_clip_one",
    "parse_fraction",
    "resolve_options",
    "option_defaults",
    "delta_steps",
    "draw_rrc_size",
    "rrc_box",
    "corner_shift",
    "min_overlap_width",
    "overlap_height",
    "inside",
    "intersection_area",
    "clip_idx",
    "candidate_strings",
    "looped_idx",
    "pretext_head",
    "unwrap",
]

_TORCH_NAMES = frozenset({"ContrastiveScheme", "SchemeOutput", "unwrap"})


def __getattr__(name: str) -> Any:
    """Load the torch-importing names (:mod:`cstp_cli.api.schemes`) on first use (PEP 562)."""
    if name in _TORCH_NAMES:
        from cstp_cli.api import schemes

        value = getattr(schemes, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
