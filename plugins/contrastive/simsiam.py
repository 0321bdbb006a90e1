"""SimSiam: projector + predictor with a stop-gradient, no target network (METHOD §4).

* Projector ``D → 2048 → 2048 → 2048``, BatchNorm after each Linear (ReLU after the first
  two), the last BatchNorm without affine parameters; predictor ``2048 → 512 → 2048``
  (Linear-BN-ReLU-Linear). The predictor takes the projector's **raw** output (SimSiam,
  Chen & He 2021); the L2 norm is inside D only (METHOD §4's "output L2-normalised" does not
  apply here).
* ``L = ½·D(p1, sg z2) + ½·D(p2, sg z1)`` with ``D(p, z) = −cos(p, z)``, mean over the batch.
* The clips x1, x2 are not used.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from cstp_cli.api import ContrastiveScheme, Option, SchemeOutput, SchemeSpec
from cstp_cli.hookspecs import hookimpl
from cstp_plugins.contrastive.common import collapse_std, fp32, mlp, projector_options


def negative_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``D(p, sg z) = −cos(p, z)`` averaged over the batch: float[B, d] ×2 → float32 scalar."""
    return -F.cosine_similarity(p.float(), z.detach().float(), dim=1).mean()


class SimSiam(ContrastiveScheme):
    """SimSiam scheme (see the module docstring)."""

    name = "simsiam"

    def __init__(self, feature_dim: int, proj_hidden: int = 2048, proj_dim: int = 2048, pred_hidden: int = 512):
        super().__init__()
        self.projector = mlp([feature_dim, proj_hidden, proj_hidden, proj_dim], last_bn=True, last_affine=False)
        self.predictor = mlp([proj_dim, pred_hidden, proj_dim])

    def forward(self, y1: torch.Tensor, y2: torch.Tensor, x1: torch.Tensor | None = None, x2: torch.Tensor | None = None) -> SchemeOutput:
        """Online features y1, y2 float[B, D] → ``{"simsiam": loss}``, stats ``{"std"}`` (of normalised z)."""
        z1, z2 = self.projector(y1), self.projector(y2)
        p1, p2 = self.predictor(z1), self.predictor(z2)
        with fp32(z1.device):
            loss = 0.5 * negative_cosine(p1, z2) + 0.5 * negative_cosine(p2, z1)
        return SchemeOutput(terms={"simsiam": loss}, stats={"std": collapse_std(torch.cat([z1, z2]))})


OPTIONS = {
    **projector_options(2048, 2048),
    "pred_hidden": Option("pred_hidden", "int", 512, "predictor bottleneck width"),
}


@hookimpl
def register_contrastive_schemes(register: Any) -> None:
    register(
        SchemeSpec(
            name="simsiam",
            build=SimSiam,
            options=OPTIONS,
            description="SimSiam: stop-gradient with a predictor, no target network",
        )
    )
