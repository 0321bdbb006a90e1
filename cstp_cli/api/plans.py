"""The plan contract: :class:`PairPlan` (worker side, NumPy) and :class:`PlanBatch` (device side).

A plan says which frames and boxes to cut from one cached video, how to flip, rotate and
colour each of the two clips, and carries the pretext labels (METHOD §2; DESIGN "Data flow").
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["PHASES", "PLAN_FIELDS", "PairPlan", "PlanBatch", "collate_plans", "share_clip_one"]

#: The fixed order in which plan steps run (METHOD §2).
PHASES: tuple[str, ...] = ("rate", "temporal", "spatial", "per_clip")

#: The plan fields a task can own (``PretextTask.writes``) or ask to be shared
#: (``PretextTask.shared``), and the phase in which the core default of each runs.
PLAN_FIELDS: dict[str, str] = {
    "pace": "rate",
    "idx": "temporal",
    "boxes": "spatial",
    "rot90": "per_clip",
    "flip": "per_clip",
    "photometric": "per_clip",
}


@dataclass
class PairPlan:
    """Everything needed to cut one clip pair from one cached video — no pixels (DESIGN).

    Geometry is integer and in cache pixels; boxes ``(x, y, w, h)`` half-open.

    Attributes:
        video: index of the video in the cache.
        num_frames: N, the number of cached frames of that video.
        frame_wh: (W, H) of the cache's frames.
        T: frames per clip.
        pace: playback step s shared by both clips (frames between consecutive clip frames).
        idx: ``int64[2, T]`` frame indices of clip 1 and clip 2.
        boxes: ``int64[2, 4]`` crop boxes of clip 1 and clip 2.
        rot90: ``int64[2]`` quarter turns (counter-clockwise) applied after crop+resize.
        flip: ``bool[2]`` horizontal flip per clip.
        photometric: per clip parameters, each value an array with leading axis 2
            (``"angle"`` float degrees, ``"jitter"`` bool, ``"brightness"``, ``"contrast"``,
            ``"saturation"``, ``"hue"`` float factors, ``"order"`` int[2, 4], ``"gray"`` bool,
            ``"blur"`` bool, ``"sigma"`` float).
        labels: ``"<task>.<name>"`` → int array (scalar or per clip, e.g. ``"rot.clips"``).
        extras: per-task data for its device transform, keyed ``"<task>.<name>"``.
        measured: exact measured quantities for reports (``"spatial"``, ``"temporal"``,
            ``"shared_frames"``); plain Python numbers.
    """

    video: int
    num_frames: int
    frame_wh: tuple[int, int]
    T: int
    pace: int = 1
    idx: np.ndarray = field(default_factory=lambda: np.zeros((2, 0), dtype=np.int64))
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((2, 4), dtype=np.int64))
    rot90: np.ndarray = field(default_factory=lambda: np.zeros(2, dtype=np.int64))
    flip: np.ndarray = field(default_factory=lambda: np.zeros(2, dtype=bool))
    photometric: dict[str, np.ndarray] = field(default_factory=dict)
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    measured: dict[str, float] = field(default_factory=dict)


@dataclass
class PlanBatch:
    """A batch of :class:`PairPlan` as tensors (the device side of a plan).

    Every field is a ``torch.Tensor`` with a leading batch axis B:
    ``video int64[B]``, ``pace int64[B]``, ``idx int64[B, 2, T]``, ``boxes int64[B, 2, 4]``,
    ``rot90 int64[B, 2]``, ``flip bool[B, 2]``, ``photometric[k] [B, 2, ...]``,
    ``labels[k] int64[B, ...]``, ``extras[k] [B, ...]``. ``frame_wh`` is shared.
    ``host_photometric`` is the CPU copy of ``photometric`` that :meth:`to` keeps, so the
    device augmentation reads which operations to run without a device→host sync.
    """

    video: torch.Tensor
    pace: torch.Tensor
    idx: torch.Tensor
    boxes: torch.Tensor
    rot90: torch.Tensor
    flip: torch.Tensor
    photometric: dict[str, torch.Tensor]
    labels: dict[str, torch.Tensor]
    extras: dict[str, torch.Tensor]
    frame_wh: tuple[int, int]
    host_photometric: dict[str, torch.Tensor] | None = field(default=None, repr=False, compare=False)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> PlanBatch:
        """Copy every tensor to ``device``."""

        def move(x: Any) -> Any:
            return x.to(device, non_blocking=non_blocking) if hasattr(x, "to") else x

        host = self.host_photometric
        if host is None and all(getattr(v, "device", None) is not None and v.device.type == "cpu" for v in self.photometric.values()):
            host = self.photometric
        return PlanBatch(
            video=move(self.video),
            pace=move(self.pace),
            idx=move(self.idx),
            boxes=move(self.boxes),
            rot90=move(self.rot90),
            flip=move(self.flip),
            photometric={k: move(v) for k, v in self.photometric.items()},
            labels={k: move(v) for k, v in self.labels.items()},
            extras={k: move(v) for k, v in self.extras.items()},
            frame_wh=self.frame_wh,
            host_photometric=host,
        )

    def pin_memory(self) -> PlanBatch:
        """Pinned copies of every tensor (DataLoader ``pin_memory`` calls this)."""

        def pin(x: Any) -> Any:
            return x.pin_memory() if hasattr(x, "pin_memory") else x

        return dataclasses.replace(
            self,
            video=pin(self.video),
            pace=pin(self.pace),
            idx=pin(self.idx),
            boxes=pin(self.boxes),
            rot90=pin(self.rot90),
            flip=pin(self.flip),
            photometric={k: pin(v) for k, v in self.photometric.items()},
            labels={k: pin(v) for k, v in self.labels.items()},
            extras={k: pin(v) for k, v in self.extras.items()},
        )


def collate_plans(plans: list[PairPlan]) -> PlanBatch:
    """Stack plans into a :class:`PlanBatch` of CPU tensors (keys must agree across plans)."""
    import torch

    def stack(arrays: list[Any]) -> torch.Tensor:
        return torch.as_tensor(np.stack([np.asarray(a) for a in arrays]))

    first = plans[0]
    return PlanBatch(
        video=torch.as_tensor([p.video for p in plans], dtype=torch.int64),
        pace=torch.as_tensor([p.pace for p in plans], dtype=torch.int64),
        idx=stack([p.idx for p in plans]).long(),
        boxes=stack([p.boxes for p in plans]).long(),
        rot90=stack([p.rot90 for p in plans]).long(),
        flip=stack([p.flip for p in plans]).bool(),
        photometric={k: stack([p.photometric[k] for p in plans]) for k in first.photometric},
        labels={k: stack([p.labels[k] for p in plans]).long() for k in first.labels},
        extras={k: stack([p.extras[k] for p in plans]) for k in first.extras},
        frame_wh=tuple(first.frame_wh),
    )


def share_clip_one(plan: PairPlan, fld: str) -> None:
    """Make clip 2's value of plan field ``fld`` equal to clip 1's (``idx``, ``boxes``,
    ``rot90``, ``flip`` or every ``photometric`` array); ``pace`` is always shared."""
    if fld == "pace":
        return
    if fld == "photometric":
        for key, value in plan.photometric.items():
            value = np.array(value, copy=True)
            value[1] = value[0]
            plan.photometric[key] = value
        return
    value = np.array(getattr(plan, fld), copy=True)
    value[1] = value[0]
    setattr(plan, fld, value)
