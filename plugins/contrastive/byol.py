"""BYOL: online projector + predictor regress a momentum target (METHOD §4; the paper's choice).

* Online: ``z = g(y)``, ``p = q(z)`` with predictor q ``proj_dim → pred_hidden → proj_dim``
  (128 → 4096 → 128). The predictor takes the projector's **raw** output, as in the BYOL
  paper (Grill et al. 2020, §3.1) and lightly; the L2 norm belongs to the loss only
  (METHOD §4's "output L2-normalised" holds for SimCLR and MoCo, not for BYOL).
  Option ``pred_input=normalized`` feeds ``normalize(g(y))`` instead (cstp before this fix).
* Target: momentum copy of f and g, copied at init (g at construction, f in
  :meth:`BYOL.attach`), frozen; ``z' = g'(f'(x))`` under ``no_grad``.
* ``L = (2 − 2cos(p1, sg z2')) + (2 − 2cos(p2, sg z1'))``, mean over the batch (the cosine
  is the normalisation).
* After each optimiser step ``ξ ← m·ξ + (1−m)·θ``: m = ``base_momentum`` (0.998) with
  ``momentum=constant``, or ``m_k = 1 − (1−m0)(cos(πk/K)+1)/2`` with ``momentum=cosine``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from cstp_cli.api import ContrastiveScheme, Option, SchemeOutput, SchemeSpec
from cstp_cli.hookspecs import hookimpl
from cstp_plugins.contrastive.common import (
    projector_options,
    collapse_std,
    fp32,
    make_target,
    mlp,
    momentum_at,
    momentum_update,
    projector,
)


#: What the predictor q reads: ``g(y)`` (the BYOL paper) or ``normalize(g(y))`` (the old cstp).
PRED_INPUTS = ("raw", "normalized")


def regression_loss(p: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``2 − 2cos(p, sg target)`` per sample: float[B, d] ×2 → float32[B] (target detached)."""
    return 2.0 - 2.0 * F.cosine_similarity(p.float(), target.detach().float(), dim=1)


class BYOL(ContrastiveScheme):
    """BYOL scheme (see the module docstring). Call :meth:`attach` before ``forward`` or loading."""

    name = "byol"

    def __init__(
        self,
        feature_dim: int,
        base_momentum: float = 0.998,
        momentum: str = "constant",
        proj_hidden: int = 4096,
        proj_dim: int = 128,
        pred_hidden: int = 4096,
        pred_input: str = "raw",
    ):
        super().__init__()
        if momentum not in ("constant", "cosine"):
            raise ValueError(f"momentum must be constant or cosine, got {momentum!r}")
        if pred_input not in PRED_INPUTS:
            raise ValueError(f"pred_input must be raw or normalized, got {pred_input!r}")
        self.pred_input = pred_input
        self.base_momentum = float(base_momentum)
        self.schedule = momentum
        self.projector = projector(feature_dim, proj_hidden, proj_dim)
        self.predictor = mlp([proj_dim, pred_hidden, proj_dim])
        self.target_projector = make_target(self.projector)
        self.register_module("target_encoder", None)

    def attach(self, encoder: nn.Module) -> None:
        """Copy the online encoder into the target encoder (frozen, in this module's state_dict)."""
        self.target_encoder = make_target(encoder)

    def momentum_for(self, step: int, total_steps: int) -> float:
        """The momentum used after optimiser step ``step`` of ``total_steps``."""
        return momentum_at(self.base_momentum, step, total_steps, self.schedule)

    def after_step(self, encoder: nn.Module, step: int, total_steps: int) -> None:
        """``ξ ← m·ξ + (1−m)·θ`` for the target encoder and projector."""
        m = self.momentum_for(step, total_steps)
        momentum_update(self.target_encoder, encoder, m)
        momentum_update(self.target_projector, self.projector, m)

    def embed(self, y: torch.Tensor) -> torch.Tensor:
        """The predictor's input: ``g(y)`` (``raw``) or ``normalize(g(y))`` (``normalized``):
        float[B, D] → float[B, proj_dim]."""
        z = self.projector(y)
        return F.normalize(z.float(), dim=1) if self.pred_input == "normalized" else z

    @torch.no_grad()
    def target(self, x: torch.Tensor) -> torch.Tensor:
        """Target ``g'(f'(x))``: clips float[B, 3, T, S, S] → float32[B, proj_dim], no grad
        (normalised by the cosine of the loss)."""
        if self.target_encoder is None:
            raise RuntimeError("BYOL.attach(encoder) must be called before the first step")
        return self.target_projector(self.target_encoder(x)).float()

    def forward(self, y1: torch.Tensor, y2: torch.Tensor, x1: torch.Tensor, x2: torch.Tensor) -> SchemeOutput:
        """Online features y1, y2 float[B, D] and clips x1, x2 → ``{"byol": loss}``, stats ``{"std"}``."""
        z1, z2 = self.embed(y1), self.embed(y2)
        p1, p2 = self.predictor(z1), self.predictor(z2)
        t1, t2 = self.target(x1), self.target(x2)
        with fp32(z1.device):
            loss = (regression_loss(p1, t2) + regression_loss(p2, t1)).mean()
        return SchemeOutput(terms={"byol": loss}, stats={"std": collapse_std(torch.cat([z1, z2]))})


OPTIONS = {
    "base_momentum": Option("base_momentum", "float", 0.998, "target momentum m (m0 of the cosine schedule)"),
    "momentum": Option(
        "momentum", "str", "constant", "constant m, or cosine: m rises from m0 to 1", choices=("constant", "cosine")
    ),
    **projector_options(4096, 128),
    "pred_hidden": Option("pred_hidden", "int", 4096, "predictor hidden width"),
    "pred_input": Option(
        "pred_input",
        "str",
        "raw",
        "the predictor's input: raw projector output (BYOL paper) or normalized (earlier cstp)",
        choices=PRED_INPUTS,
    ),
}


@hookimpl
def register_contrastive_schemes(register: Any) -> None:
    register(
        SchemeSpec(
            name="byol",
            build=BYOL,
            options=OPTIONS,
            description="BYOL: predictor + momentum target (m = 0.998), copied at init",
        )
    )
