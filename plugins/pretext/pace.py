"""Pace prediction: the playback rate s shared by both clips (METHOD §1, §2.1, §3).

Plan step ``rate``: s uniform among the paces ``P`` (option ``rates``, default 1, 2, 4, 8)
with ``(T−1)·s + 1 ≤ N``; label ``"pace.rate"`` = the index of s in ``P``. A video too short
for every pace plays at s = 1 and is labelled with the slowest pace (index of 1 when P has 1).
Head ``D → D → |P|`` (Linear-BN-ReLU-Linear) shared by both clips; term ``"pace"`` =
``CE(head(y1)) + CE(head(y2))`` (option ``clips=first``: clip 1 only, the paper's text).
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from cstp_cli.api import Option, PairPlan, PretextSpec, PretextTask, pretext_head
from cstp_cli.hookspecs import hookimpl

OPTIONS: dict[str, Option] = {
    "rates": Option("rates", "list[int]", [1, 2, 4, 8], "playback paces s (frames between clip frames), label = index"),
    "clips": Option("clips", "str", "both", "apply the head to both clips (authors' code) or the first only (paper)", choices=("both", "first")),
}


class PaceTask(PretextTask):
    """Playback-rate prediction (METHOD §2.1, §3)."""

    name = "pace"
    phases = frozenset({"rate"})
    writes = frozenset({"pace"})

    def __init__(self, rates: Sequence[int] = (1, 2, 4, 8), clips: str = "both"):
        super().__init__(rates=list(rates), clips=clips)
        self.rates = [int(r) for r in rates]
        if not self.rates or min(self.rates) < 1 or len(set(self.rates)) != len(self.rates):
            raise ValueError(f"pace.rates must be distinct positive integers, got {self.rates}")
        if clips not in ("both", "first"):
            raise ValueError(f"pace.clips must be both or first, got {clips!r}")
        self.clips = 2 if clips == "both" else 1

    def label_classes(self) -> dict[str, int]:
        """One class per pace of ``rates``."""
        return {"pace.rate": len(self.rates)}

    def plan_step(self, phase: str, plan: PairPlan, rng: np.random.Generator) -> None:
        """METHOD §2.1: ``plan.pace`` and ``"pace.rate"``."""
        if phase != "rate":
            return
        feasible = [j for j, s in enumerate(self.rates) if (plan.T - 1) * s + 1 <= plan.num_frames]
        if feasible:
            j = feasible[int(rng.integers(0, len(feasible)))]
            plan.pace = self.rates[j]
        else:
            j = int(np.argmin(self.rates))
            plan.pace = 1
        plan.labels["pace.rate"] = np.int64(j)

    @property
    def chance_loss(self) -> dict[str, float]:
        """The term at chance: ``ln |P|`` per clip it sums over, for the loss plot."""
        return {"pace": self.clips * math.log(len(self.rates))}

    def head(self, feature_dim: int) -> nn.Module:
        """``D → D → |P|`` (METHOD §3)."""
        d = int(feature_dim)
        return pretext_head(d, d, len(self.rates))

    def loss(self, y1: torch.Tensor, y2: torch.Tensor, labels: Mapping[str, torch.Tensor], head: nn.Module) -> dict[str, torch.Tensor]:
        """``{"pace": CE(head(y1)) + CE(head(y2))}``; y float[B, D], ``labels["pace.rate"]`` int64[B]."""
        target = labels["pace.rate"].long()
        terms = [F.cross_entropy(head(y), target) for y in (y1, y2)[: self.clips]]
        return {"pace": sum(terms)}


@hookimpl
def register_pretext_tasks(register):
    register(
        PretextSpec(
            name="pace",
            build=PaceTask,
            default_weight=1.0,
            options=OPTIONS,
            description="playback-rate prediction (both clips share one pace); also an augmentation",
        )
    )
