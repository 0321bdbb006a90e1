"""The pretext-task interface (METHOD §1–§3) and the heads' MLP.

A task describes itself to the core through this interface only: the plan fields it owns
(``writes``), the fields it needs equal in both clips (``shared``), a tag for the
sampling mode (``mode_tag``), facts for ``pairs.jsonl`` (``plan_info``) and the class counts
of its labels (``label_classes``). The core sampler reads no task's options.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Mapping

import numpy as np

from cstp_cli.api.plans import PairPlan, PlanBatch
from cstp_cli.errors import PluginError

if TYPE_CHECKING:
    import torch
    import torch.nn as nn

__all__ = ["PretextTask", "pretext_head"]


class PretextTask:
    """A pretext task (or an augmentation) contributing plan steps, a head and a loss.

    Subclasses set the class attributes and override what they use. The engine builds one
    instance per run with the spec's options already parsed (``build(**options)`` receives
    typed values; ``self.options`` keeps them). A task named in ``--augment`` but not
    ``--pretext`` runs only its plan steps and device transform.

    Class (or instance) attributes:
        name: the registered name; label and extra keys are ``"<name>.<key>"``.
        phases: subset of :data:`~cstp_cli.api.PHASES` this task has a plan step in.
        writes: plan fields this task owns (``"pace"``, ``"idx"``, ``"boxes"``, ``"rot90"``,
            ``"flip"``, ``"photometric"``); the core default for an owned field does not run;
            two active owners of one field are an error naming both.
        augmentation_only_writes: fields still written when the task runs as an
            augmentation only (``None``: the same as ``writes``).
        shared: plan fields that must be equal for the two clips while this task is active
            (e.g. temporal-only STOR: ``{"boxes", "flip", "photometric"}``, so that only
            time differs). The sampler draws the core default and copies clip 1's value to
            clip 2; an active task that owns such a field is an error naming both.
    """

    name: ClassVar[str] = ""
    phases: ClassVar[frozenset[str]] = frozenset()
    writes: ClassVar[frozenset[str]] = frozenset()
    augmentation_only_writes: ClassVar[frozenset[str] | None] = None
    uses_feature_maps: bool = False
    shared: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, **options: Any):
        self.options = dict(options)
        #: Set by the engine: True when the task is named in ``--augment`` only (plan
        #: steps and device transform run; no head, no loss).
        self.augment_only: bool = False

    # description (what the core may know of a task) ---------------------------------
    @property
    def mode_tag(self) -> str | None:
        """A tag appended to the clean sampling mode (``"clean+<tag>"`` in ``pairs.jsonl``),
        or None. STOR says ``"decorrelate"`` when its box sizes are decorrelated."""
        return None

    def plan_info(self) -> dict[str, Any]:
        """Record-level facts of this task's plans for ``pairs.jsonl`` (JSON values), e.g.
        STOR's ``{"candidates": ["1", "4/5", ...]}``. Keys must not clash across tasks."""
        return {}

    def label_classes(self) -> dict[str, int]:
        """Number of classes of each label key this task writes (``{"rot.clips": 4}``), so
        reports count unseen classes as 0."""
        return {}

    # worker side ---------------------------------------------------------------------
    def plan_step(self, phase: str, plan: PairPlan, rng: np.random.Generator) -> None:
        """Fill this task's fields, labels and extras of ``plan`` for ``phase`` (NumPy only)."""

    # device side ---------------------------------------------------------------------
    def device_transform(self, clips: torch.Tensor, batch: PlanBatch) -> torch.Tensor:
        """Transform clips ``float[B, 2, 3, T, S, S]`` in [0, 1] on the device; return the same shape.

        Runs after crop/resize/flip/photometric and before normalisation.
        """
        return clips

    # training side -------------------------------------------------------------------
    def head(self, feature_dim: int) -> nn.Module:
        """The ``nn.Module`` head(s) this task trains on top of features ``float[B, D]``.

        A task without one (an augmentation) keeps this default and can only be named in
        ``--augment``.
        """
        raise PluginError(f"pretext task {self.name!r} has no head; name it in --augment, not --pretext")

    def loss(
        self, y1: torch.Tensor, y2: torch.Tensor, labels: Mapping[str, torch.Tensor], head: nn.Module
    ) -> dict[str, torch.Tensor]:
        """Named loss terms (scalar tensors) from features ``y1``, ``y2`` ``float[B, D]``.

        ``labels``: the batch's labels, ``"<task>.<name>"`` → ``int64[B, ...]``. The engine
        sums the terms and multiplies by the task's weight λ.
        """
        raise PluginError(f"pretext task {self.name!r} has no loss; name it in --augment, not --pretext")


def pretext_head(d_in: int, d_hidden: int, d_out: int) -> nn.Sequential:
    """The pretext heads' MLP (METHOD §3): Linear → BN → ReLU → Linear, an ``nn.Sequential``
    mapping ``float[B, d_in]`` to logits ``float[B, d_out]``."""
    import torch.nn as nn

    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.BatchNorm1d(d_hidden), nn.ReLU(inplace=True), nn.Linear(d_hidden, d_out))
