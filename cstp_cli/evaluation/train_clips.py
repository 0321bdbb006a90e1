"""Training clips of fine-tuning and the linear probe: one-clip plans, pixels, device augmentation.

The plans are drawn by :class:`~cstp_cli.plans.clips.ClipSampler` (METHOD §0 randomness,
§2.3 crop, §2.4 colour jitter, §6 recipe) and applied by :func:`cstp_cli.augment.augment_clips`
— the code pretraining uses (issue 11 item 2), so crop, padding, luma and hue semantics are
the same and checked against torchvision in the tests.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from cstp_cli.augment import augment_clips, normalise
from cstp_cli.plans.clips import ClipPlan, ClipSampler, stack_clip_plans
from cstp_cli.plans.sampling import epoch_order, plan_rng

__all__ = ["TrainClipDataset", "collate_train", "augment_training_clips"]


class TrainClipDataset:
    """Training clips of ``videos`` (a map-style dataset, epoch-aware via :meth:`set_epoch`).

    Item i of epoch e: ``(frames uint8[T, H, W, 3], ClipPlan, label)`` of video
    ``videos[order_e[i]]`` with ``order_e = epoch_order(seed, e)`` and the plan drawn from
    ``plan_rng(seed, e, i)`` (METHOD §0), so batches do not depend on the worker count.
    """

    def __init__(self, reader: Any, videos: np.ndarray, labels: np.ndarray, sampler: ClipSampler, seed: int = 0):
        self.reader, self.videos, self.labels = reader, np.asarray(videos), np.asarray(labels)
        self.sampler, self.seed = sampler, int(seed)
        self.num_frames = np.asarray(reader.num_frames, dtype=np.int64)
        self.frame_wh = tuple(int(v) for v in reader.frame_wh)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return int(self.videos.size)

    def plan(self, i: int) -> tuple[ClipPlan, int]:
        """The plan of item ``i`` of the current epoch and its position in ``videos``."""
        j = int(epoch_order(self.seed, self.epoch, self.videos.size)[i])
        v = int(self.videos[j])
        return self.sampler.plan(v, int(self.num_frames[v]), self.frame_wh, plan_rng(self.seed, self.epoch, i)), j

    def __getitem__(self, i: int) -> tuple[np.ndarray, ClipPlan, int]:
        plan, j = self.plan(i)
        unique, inverse = np.unique(plan.idx, return_inverse=True)
        frames = np.asarray(self.reader.read(plan.video, unique))[inverse]
        return frames, plan, int(self.labels[j])


def collate_train(items: Sequence[tuple[np.ndarray, ClipPlan, int]]) -> tuple[torch.Tensor, dict[str, Any], torch.Tensor]:
    """``(frames uint8[B, T, H, W, 3], plans as tensors, labels int64[B])``."""
    frames = torch.from_numpy(np.stack([it[0] for it in items]))
    stacked = stack_clip_plans([it[1] for it in items])
    plans = {
        "box": torch.from_numpy(stacked["box"]),
        "flip": torch.from_numpy(stacked["flip"]),
        "rot90": torch.from_numpy(stacked["rot90"]),
        "photometric": {k: torch.from_numpy(v) for k, v in stacked["photometric"].items()},
        "frame_wh": stacked["frame_wh"],
    }
    return frames, plans, torch.as_tensor([it[2] for it in items], dtype=torch.int64)


def augment_training_clips(frames: torch.Tensor, plans: dict[str, Any], size: int, device: Any) -> torch.Tensor:
    """Apply training plans on ``device`` (METHOD §2.4): crop + resize + flip in one
    ``grid_sample``, colour jitter, quarter turns after resizing, normalisation ``x/255·2 − 1``.

    Args:
        frames: ``uint8[B, T, H, W, 3]``.
        plans: :func:`collate_train`'s plan tensors.
        size: S.

    Returns:
        ``float32[B, 3, T, S, S]`` in [−1, 1].
    """
    x = frames.to(device, non_blocking=True)
    photometric = {k: v.to(device) for k, v in plans["photometric"].items()}
    x = augment_clips(x, plans["box"].to(device), tuple(plans["frame_wh"]), flip=plans["flip"].to(device),
                      photometric=photometric, out_size=size)
    rot = plans["rot90"].remainder(4)
    for k in (1, 2, 3):
        sel = (rot == k).nonzero().flatten().tolist()
        if sel:
            x[sel] = torch.rot90(x[sel], k, dims=(3, 4))
    return normalise(x)
