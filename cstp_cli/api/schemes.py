"""The contrastive-scheme interface (METHOD §4): an ``nn.Module`` the engine calls each step.

This module imports torch; :mod:`cstp_cli.api` loads it on first use of its names, so that
importing the API (``cstp --help``, ``cstp plugins``) needs no torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn as nn

from cstp_cli.errors import PluginError

__all__ = ["ContrastiveScheme", "SchemeOutput", "unwrap"]


@dataclass
class SchemeOutput:
    """What a contrastive scheme returns for one step.

    ``terms``: named scalar loss tensors (summed, then multiplied by λ_ctr).
    ``stats``: named scalar tensors logged but not optimised (e.g. ``"std"``, the collapse
    monitor: mean per-dimension std of the L2-normalised embeddings).
    """

    terms: dict[str, torch.Tensor]
    stats: dict[str, torch.Tensor] = field(default_factory=dict)


class ContrastiveScheme(nn.Module):
    """Base class of contrastive schemes (METHOD §4).

    The scheme owns its projector, predictor, target encoder and queue. The engine calls:

    1. ``attach(encoder)`` once after building, so target networks can copy the encoder;
    2. ``forward(y1, y2, x1, x2) -> SchemeOutput`` every step, with online features
       ``y1, y2 float[B, D]`` of the two views and the augmented clips
       ``x1, x2 float[B, 3, T, S, S]`` (for target passes);
    3. ``after_step(encoder, step, total_steps)`` after every optimiser step (momentum).

    Parameters with ``requires_grad=False`` (targets) are never given to the optimiser.
    """

    name: ClassVar[str] = ""

    def attach(self, encoder: nn.Module) -> None:
        """Called once with the online encoder (after the scheme is built)."""

    def after_step(self, encoder: nn.Module, step: int, total_steps: int) -> None:
        """Called after each optimiser step (e.g. momentum update of targets)."""

    def forward(self, y1: torch.Tensor, y2: torch.Tensor, x1: torch.Tensor, x2: torch.Tensor) -> SchemeOutput:
        """The scheme's loss terms and statistics for one step (every scheme overrides it)."""
        raise PluginError(f"contrastive scheme {type(self).__name__} does not implement forward()")


def unwrap(module: nn.Module) -> nn.Module:
    """The plain module inside DDP / DataParallel / ``torch.compile`` wrappers (the core's own,
    :func:`cstp_cli.core.dist.unwrap`)."""
    from cstp_cli.core.dist import unwrap as core_unwrap

    return core_unwrap(module)
