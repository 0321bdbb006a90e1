"""cstp-arrow: an arrow-of-time pretext task, a throw-away third-party plugin.

It proves that a pretext task needs nothing outside its own package and an entry point
(DESIGN "Plugin API"): its own plan step, device transform, head, loss and option.

* plan step (``per_clip``): each clip is played backwards with probability ``p``; writes
  label ``"arrow.reverse"`` and extra ``"arrow.reverse"``, both ``int64[2]`` (1 = reversed);
* device transform: flips the time axis of the flagged clips, ``float[B, 2, 3, T, S, S]``;
* head ``D → D → 2`` (Linear-BN-ReLU-Linear), shared by both clips;
* loss ``{"arrow": CE(head(y1), a1) + CE(head(y2), a2)}``.

Registered through ``[project.entry-points.cstp] arrow = "cstp_arrow"``.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from cstp_cli.api import Option, PairPlan, PlanBatch, PretextSpec, PretextTask, pretext_head
from cstp_cli.hookspecs import hookimpl

OPTIONS = {"p": Option("p", "float", 0.5, "probability that a clip is played backwards")}


class ArrowTask(PretextTask):
    """Arrow of time: is this clip played forwards (0) or backwards (1)?"""

    name = "arrow"
    phases = frozenset({"per_clip"})
    writes = frozenset()  # no core plan field: only its own label and extra

    def plan_step(self, phase: str, plan: PairPlan, rng: np.random.Generator) -> None:
        """Draw the direction of each clip: ``int64[2]``, 1 with probability ``p``."""
        reverse = (rng.random(2) < float(self.options["p"])).astype(np.int64)
        plan.extras["arrow.reverse"] = reverse
        if not getattr(self, "augment_only", False):
            plan.labels["arrow.reverse"] = reverse.copy()

    def device_transform(self, clips: torch.Tensor, batch: PlanBatch) -> torch.Tensor:
        """Reverse the T axis of flagged clips: ``float[B, 2, 3, T, S, S]`` → same shape."""
        flags = batch.extras["arrow.reverse"].to(clips.device).bool()
        return torch.where(flags[:, :, None, None, None, None], clips.flip(3), clips)

    def head(self, feature_dim: int) -> nn.Module:
        d = int(feature_dim)
        return pretext_head(d, d, 2)

    def loss(self, y1: torch.Tensor, y2: torch.Tensor, labels: Mapping[str, torch.Tensor], head: nn.Module) -> dict[str, torch.Tensor]:
        """``y1, y2 float[B, D]``; ``labels["arrow.reverse"] int64[B, 2]``."""
        target = labels["arrow.reverse"].long()
        return {"arrow": F.cross_entropy(head(y1), target[:, 0]) + F.cross_entropy(head(y2), target[:, 1])}


@hookimpl
def register_pretext_tasks(register: Any) -> None:
    register(PretextSpec(name="arrow", build=ArrowTask, default_weight=1.0, options=OPTIONS,
                         description="arrow of time (example plugin)"))
