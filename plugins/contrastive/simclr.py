"""SimCLR: the NT-Xent loss over 2B views (METHOD §4).

For each of the 2B views (two per video) the other view of its video is the positive and the
2B − 2 other views are negatives; τ = 0.1; the positive is in the denominator (option
``denominator=cstp-eq1`` drops it, CSTP's Eq. 1; the old spelling ``paper`` is still
accepted, with a deprecation note). Under DDP the negatives of every rank are
used, gathered with gradients (:func:`gather_with_grad`); each rank averages over its own
2B_local queries, and DDP's gradient averaging makes that the full-batch loss.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from cstp_cli.api import ContrastiveScheme, Option, SchemeOutput, SchemeSpec
from cstp_cli.hookspecs import hookimpl
from cstp_plugins.contrastive.common import collapse_std, fp32, gather_with_grad, projector, projector_options, rank_offset


#: ``denominator`` values: NT-Xent as SimCLR and lightly (``standard``), or CSTP's Eq. 1.
DENOMINATORS = ("standard", "cstp-eq1")
#: Old spellings, accepted with a deprecation note.
DENOMINATOR_ALIASES = {"paper": "cstp-eq1"}


def _denominator(value: str) -> str:
    if value in DENOMINATOR_ALIASES:
        import warnings

        new = DENOMINATOR_ALIASES[value]
        warnings.warn(f"simclr.denominator={value} is deprecated; write denominator={new}", FutureWarning, stacklevel=3)
        value = new
    if value not in DENOMINATORS:
        raise ValueError(f"denominator must be standard or cstp-eq1, got {value!r}")
    return value


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float, denominator: str = "standard") -> torch.Tensor:
    """NT-Xent of local views against all views of all ranks (METHOD §4, SimCLR).

    ``z1, z2`` float[B, d], L2-normalised, row i of each from video i of this rank.
    Returns the float32 scalar mean over the 2B local queries of
    ``−log( exp(s_pos/τ) / Σ_{k ≠ self} exp(s_k/τ) )`` (``standard``), or with the positive
    also left out of the sum (``cstp-eq1``, CSTP's Eq. 1).
    """
    z1, z2 = z1.float(), z2.float()
    b = z1.shape[0]
    offset = rank_offset(b, z1.device)
    d = z1.shape[1]
    both = gather_with_grad(torch.cat([z1, z2], dim=1))  # float[N, 2d], N = global batch: one gather
    all1, all2 = both[:, :d], both[:, d:]
    n = both.shape[0]
    keys = torch.cat([all1, all2])  # float[2N, d]
    queries = torch.cat([z1, z2])  # float[2B, d]
    logits = queries @ keys.t() / temperature  # float[2B, 2N]
    local = torch.arange(b, device=z1.device) + offset
    self_idx = torch.cat([local, local + n])  # each query's own column
    pos_idx = torch.cat([local + n, local])  # the other view of its video
    rows = torch.arange(2 * b, device=z1.device)
    positive = logits[rows, pos_idx]
    masked = logits.clone()
    masked[rows, self_idx] = float("-inf")
    if _denominator(denominator) == "cstp-eq1":
        masked[rows, pos_idx] = float("-inf")
    return (torch.logsumexp(masked, dim=1) - positive).mean()


class SimCLR(ContrastiveScheme):
    """SimCLR scheme: projector g ``D → proj_hidden → proj_dim``, normalised, then :func:`nt_xent`."""

    name = "simclr"

    def __init__(
        self,
        feature_dim: int,
        temperature: float = 0.1,
        denominator: str = "standard",
        proj_hidden: int = 4096,
        proj_dim: int = 128,
    ):
        super().__init__()
        self.temperature = float(temperature)
        self.denominator = _denominator(denominator)
        self.projector = projector(feature_dim, proj_hidden, proj_dim)

    def embed(self, y: torch.Tensor) -> torch.Tensor:
        """``normalize(g(y))``: float[B, D] → float32[B, proj_dim] (one view, its own BN statistics)."""
        return F.normalize(self.projector(y).float(), dim=1)

    def forward(self, y1: torch.Tensor, y2: torch.Tensor, x1: torch.Tensor | None = None, x2: torch.Tensor | None = None) -> SchemeOutput:
        """Online features ``y1, y2`` float[B, D] → ``{"simclr": loss}``, stats ``{"std"}``; clips unused."""
        z1, z2 = self.embed(y1), self.embed(y2)
        with fp32(z1.device):
            loss = nt_xent(z1, z2, self.temperature, self.denominator)
        return SchemeOutput(terms={"simclr": loss}, stats={"std": collapse_std(torch.cat([z1, z2]))})


OPTIONS = {
    "temperature": Option("temperature", "float", 0.1, "softmax temperature τ"),
    "denominator": Option(
        "denominator",
        "str",
        "standard",
        "standard: the positive is in the denominator (NT-Xent); cstp-eq1: dropped (CSTP's Eq. 1; old name: paper)",
        choices=DENOMINATORS,
        aliases=DENOMINATOR_ALIASES,
    ),
    **projector_options(4096, 128),
}


@hookimpl
def register_contrastive_schemes(register: Any) -> None:
    register(
        SchemeSpec(
            name="simclr",
            build=SimCLR,
            options=OPTIONS,
            description="SimCLR NT-Xent over 2B views, τ = 0.1, negatives from every rank",
        )
    )


__all__ = ["SimCLR", "nt_xent", "register_contrastive_schemes"]
