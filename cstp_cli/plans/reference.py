"""The authors' clip-pair sampling (METHOD App. A): :class:`ReferenceSampler`, ``--sampling reference``.

For comparison runs only. It covers stor, pace and rot at once and is allowed to know those
three tasks; the clean :class:`~cstp_cli.plans.sampling.PairSampler` knows none. Rotation
happens before cropping here: ``plan.extras["sampling.rot_first"] = [True, True]`` (see
:mod:`cstp_cli.plans.sampling`'s docstring); the photometric block is applied with p = 0.3.
The float truncations App. A reproduces live in :mod:`cstp_cli.plans.geometry` (``reference_*``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from cstp_cli.api import PHASES, PairPlan, PretextTask
from cstp_cli.plans import geometry
from cstp_cli.plans.sampling import DEFAULT_CANDIDATES, SamplerBase, draw_photometric

__all__ = ["ReferenceSampler", "REFERENCE_TASKS", "REFERENCE_PHOTOMETRIC_P", "REFERENCE_RATES"]

#: Tasks whose steps App. A replaces (it covers all three at once).
REFERENCE_TASKS = frozenset({"stor", "pace", "rot"})
REFERENCE_PHOTOMETRIC_P = 0.3
REFERENCE_RATES = (1, 2, 4, 8)


class ReferenceSampler(SamplerBase):
    """The authors' sampling (METHOD App. A) for stor, pace and rot at once (mode ``reference``).

    Unlike :class:`PairSampler` it knows its three tasks: it replaces their plan steps and the
    core defaults, reads ``stor``'s ``candidates`` and ``parts``, and writes ``stor.spatial``,
    ``stor.temporal``, ``pace.rate`` and ``rot.clips`` for whichever of them is active. Other
    tasks' plan steps run after it, phase by phase. ``shared`` fields are not applied (App. A
    draws its own); rotation happens before cropping (``sampling.rot_first``).
    """

    mode = "reference"

    def __init__(self, tasks: Sequence[PretextTask], T: int = 16):
        super().__init__(tasks, T)
        stor = self.task("stor")
        self.n = int(stor.options.get("candidates", DEFAULT_CANDIDATES)) if stor is not None else DEFAULT_CANDIDATES
        parts = stor.options.get("parts", ("spatial", "temporal")) if stor is not None else ()
        self.stor_parts = frozenset(parts)

    @property
    def mode_label(self) -> str:
        """``"reference"``."""
        return self.mode

    def plan(self, video: int, num_frames: int, frame_wh: tuple[int, int], rng: np.random.Generator) -> PairPlan:
        """The App. A plan of one sample, then the steps of tasks other than stor, pace, rot."""
        plan = self._new_plan(video, num_frames, frame_wh)
        self._reference(plan, rng)
        for phase in PHASES:
            for task in self.tasks:
                if phase in task.phases and task.name not in REFERENCE_TASKS:
                    task.plan_step(phase, plan, rng)
        plan.measured = geometry.measure(plan.idx, plan.boxes)
        return plan

    def _reference(self, plan: PairPlan, rng: np.random.Generator) -> None:
        """METHOD App. A for stor, pace and rot at once; labels only for active tasks."""
        T, N = plan.T, plan.num_frames
        (W, H), n = plan.frame_wh, self.n
        if N < T:
            j, k_t = 0, 0
            plan.pace, plan.idx = 1, geometry.looped_idx(T, N)
        else:
            j = geometry.reference_pace_index(N, T)
            j = int(rng.integers(0, j + 1))
            plan.pace = REFERENCE_RATES[j]
            a, b, k_t = geometry.reference_temporal(N, T, plan.pace, n, rng)
            plan.idx = geometry.clip_idx((a, b), plan.pace, T)
        plan.boxes, k_s = geometry.reference_spatial(W, H, n, rng)
        plan.rot90 = rng.integers(0, 4, size=2).astype(np.int64)
        plan.flip = rng.random(2) < 0.5
        plan.photometric = draw_photometric(rng, REFERENCE_PHOTOMETRIC_P)
        plan.extras["sampling.rot_first"] = np.array([True, True])
        labels = {
            "stor.spatial": np.int64(k_s),
            "stor.temporal": np.int64(k_t),
            "pace.rate": np.int64(j),
            "rot.clips": plan.rot90.copy(),
        }
        for key, value in labels.items():
            task_name, part = key.split(".")
            if self.task(task_name) is None or (task_name == "stor" and part not in self.stor_parts):
                continue
            plan.labels[key] = np.asarray(value, dtype=np.int64)
