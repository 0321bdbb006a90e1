"""Rotation prediction: a quarter-turn class per clip (METHOD §1, §2.4, §3).

Plan step ``per_clip``: r_c ~ U{0..3} independently per clip; ``plan.rot90`` and label
``"rot.clips"`` int64[2]. Device transform: ``torch.rot90`` by r_c quarter turns
(counter-clockwise, like ``np.rot90``) on the last two axes after crop and resize, except
for clips whose ``batch.extras["sampling.rot_first"]`` is set (App. A rotates the full frame
before cropping). Head ``D → D → 4`` shared by both clips; term ``"rot"`` =
``CE(head(y1), r1) + CE(head(y2), r2)`` (option ``clips=first``: clip 1 only).
Option ``pair=same`` (beyond the paper): one quarter turn for both clips of a pair, so the
clips keep their relative geometry (what STOR judges overlap from) while each clip's label
is still uniform.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from cstp_cli.api import Option, PairPlan, PlanBatch, PretextSpec, PretextTask, pretext_head
from cstp_cli.hookspecs import hookimpl

OPTIONS: dict[str, Option] = {
    "clips": Option("clips", "str", "both", "apply the head to both clips (authors' code) or the first only (paper)", choices=("both", "first")),
    "pair": Option(
        "pair", "str", "independent",
        "independent: a quarter turn per clip (the paper); same: one turn for both clips of a pair (beyond the paper: "
        "keeps the clips' relative geometry for STOR)",
        choices=("independent", "same"),
    ),
}


def rotate_clips(clips: torch.Tensor, quarter_turns: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
    """Rotate each clip by its quarter turns on the last two axes.

    clips float[B, 2, C, T, S, S]; quarter_turns int64[B, 2]; skip bool[B, 2] or None.
    Returns a new tensor of the same shape. Every clip's three turns are computed and the
    right one selected (``torch.where``): no data-dependent indexing, so no host sync on CUDA.
    """
    turns = quarter_turns.to(clips.device).long() % 4
    if skip is not None:
        turns = torch.where(skip.to(clips.device).bool(), torch.zeros_like(turns), turns)
    turns = turns.view(*turns.shape, *([1] * (clips.dim() - turns.dim())))
    out = clips
    for k in (1, 2, 3):
        out = torch.where(turns == k, torch.rot90(clips, k, dims=(-2, -1)), out)
    return out


class RotTask(PretextTask):
    """Rotation prediction (METHOD §2.4, §3)."""

    name = "rot"
    phases = frozenset({"per_clip"})
    writes = frozenset({"rot90"})

    def __init__(self, clips: str = "both", pair: str = "independent"):
        super().__init__(clips=clips, pair=pair)
        if clips not in ("both", "first"):
            raise ValueError(f"rot.clips must be both or first, got {clips!r}")
        if pair not in ("independent", "same"):
            raise ValueError(f"rot.pair must be independent or same, got {pair!r}")
        self.clips = 2 if clips == "both" else 1
        self.same_turn = pair == "same"

    def label_classes(self) -> dict[str, int]:
        """Four quarter turns."""
        return {"rot.clips": 4}

    def plan_step(self, phase: str, plan: PairPlan, rng: np.random.Generator) -> None:
        """``plan.rot90`` and ``"rot.clips"`` int64[2], uniform in 0..3 per clip (``pair=same``:
        one draw for both)."""
        if phase != "per_clip":
            return
        plan.rot90 = (np.repeat(rng.integers(0, 4), 2) if self.same_turn else rng.integers(0, 4, size=2)).astype(np.int64)
        plan.labels["rot.clips"] = plan.rot90.copy()

    def device_transform(self, clips: torch.Tensor, batch: PlanBatch) -> torch.Tensor:
        """clips float[B, 2, 3, T, S, S] → the same, rotated by ``batch.rot90`` (int64[B, 2])."""
        return rotate_clips(clips, batch.rot90, batch.extras.get("sampling.rot_first"))

    @property
    def chance_loss(self) -> dict[str, float]:
        """The term at chance: ``ln 4`` per clip it sums over, for the loss plot."""
        return {"rot": self.clips * math.log(4)}

    def head(self, feature_dim: int) -> nn.Module:
        """``D → D → 4`` (METHOD §3)."""
        d = int(feature_dim)
        return pretext_head(d, d, 4)

    def loss(self, y1: torch.Tensor, y2: torch.Tensor, labels: Mapping[str, torch.Tensor], head: nn.Module) -> dict[str, torch.Tensor]:
        """``{"rot": CE(head(y1), r1) + CE(head(y2), r2)}``; ``labels["rot.clips"]`` int64[B, 2]."""
        target = labels["rot.clips"].long()
        terms = [F.cross_entropy(head(y), target[:, c]) for c, y in enumerate((y1, y2)[: self.clips])]
        return {"rot": sum(terms)}


@hookimpl
def register_pretext_tasks(register):
    register(
        PretextSpec(
            name="rot",
            build=RotTask,
            default_weight=1.0,
            options=OPTIONS,
            description="rotation prediction (0/90/180/270 degrees per clip); also an augmentation",
        )
    )
