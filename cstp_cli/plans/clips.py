"""One-clip plans: the training clips of fine-tuning and the linear probe (METHOD §6).

A :class:`ClipPlan` is the one-clip counterpart of :class:`~cstp_cli.api.PairPlan`: which
frames and which box to cut from one cached video, and how to flip, turn and colour it — no
pixels. It is drawn with the very code that draws pretraining's pairs, so fine-tuning trains
on the same semantics as pretraining (one augmentation pipeline, issue 11 item 2):

* randomness: the plan of sample ``i`` in epoch ``e`` comes from
  :func:`~cstp_cli.plans.sampling.plan_rng` ``(seed, e, i)`` and the epoch's order from
  :func:`~cstp_cli.plans.sampling.epoch_order` (METHOD §0);
* frames: ``T`` frames at the clip pace from a uniform start
  (:func:`~cstp_cli.plans.geometry.clip_idx`); a video shorter than the window loops,
  ``[(s·i) mod N]`` (:func:`~cstp_cli.plans.geometry.looped_idx`); ``augment="pace"`` draws
  the pace among the feasible 1, 2, 4, 8;
* box: the random-resized crop of METHOD §2.3 (:func:`~cstp_cli.plans.geometry.rrc_box`);
* flip p = ½; ``augment="rot"``: a uniform quarter turn r ∈ {0, 1, 2, 3}, applied after crop
  and resize (METHOD §2.4);
* colour: the colour-jitter part of the photometric block
  (:func:`~cstp_cli.plans.sampling.draw_photometric`: p = 0.8, brightness/contrast/saturation
  U[0.6, 1.4], hue U[−0.1, 0.1], a random order). METHOD §6's fine-tuning recipe is
  "RRC + colour jitter": the rotation jitter, grayscale and blur of the block are set to the
  identity.

:mod:`cstp_cli.augment` applies the plans (``augment_clips``: one ``grid_sample`` with zero
padding outside the frame, torchvision's luma and HSV hue) — the same code as pretraining.
Pure NumPy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from cstp_cli.errors import UsageError
from cstp_cli.plans import geometry
from cstp_cli.plans.sampling import draw_photometric

__all__ = ["ClipPlan", "ClipSampler", "stack_clip_plans", "PACES", "AUGMENTS"]

#: Paces ``--augment pace`` draws from (the feasible ones of a video).
PACES = (1, 2, 4, 8)
#: What ``--augment`` may randomise in training.
AUGMENTS = ("pace", "rot")

#: Photometric steps outside fine-tuning's recipe, and their identity values.
_OFF = {"angle": 0.0, "gray": False, "blur": False, "sigma": 0.0}


@dataclass
class ClipPlan:
    """Everything needed to cut one training clip from one cached video — no pixels.

    Attributes:
        video: index of the video in the cache.
        num_frames: N, its number of cached frames.
        frame_wh: (W, H) of the cache's frames.
        T: frames per clip.
        pace: frame step s of the clip.
        idx: ``int64[T]`` frame indices.
        box: ``int64[4]`` crop box ``(x, y, w, h)`` in cache pixels, half-open.
        rot90: quarter turns (counter-clockwise) after crop and resize.
        flip: horizontal flip.
        photometric: the photometric parameters of :class:`~cstp_cli.api.PairPlan` for one
            clip: each value an array with leading axis 1 (``order``: ``int64[1, 4]``).
    """

    video: int
    num_frames: int
    frame_wh: tuple[int, int]
    T: int
    pace: int = 1
    idx: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    box: np.ndarray = field(default_factory=lambda: np.zeros(4, dtype=np.int64))
    rot90: int = 0
    flip: bool = False
    photometric: dict[str, np.ndarray] = field(default_factory=dict)


class ClipSampler:
    """Draws one :class:`ClipPlan` per training sample (METHOD §6 with §0, §2.3, §2.4).

    Args:
        T: frames per clip (>= 1).
        pace: the clip pace s (``--clip-pace``).
        augment: any of :data:`AUGMENTS` (``"pace"``, ``"rot"``).
    """

    def __init__(self, T: int, pace: int = 4, augment: Sequence[str] = ()):
        bad = [a for a in augment if a not in AUGMENTS]
        if bad:
            raise UsageError(f"--augment accepts {', '.join(AUGMENTS)}; got {bad[0]!r}")
        if int(T) < 1 or int(pace) < 1:
            raise UsageError(f"clip frames and pace must be >= 1, got T={T}, pace={pace}")
        self.T, self.pace, self.augment = int(T), int(pace), tuple(augment)

    def plan(self, video: int, num_frames: int, frame_wh: tuple[int, int], rng: np.random.Generator) -> ClipPlan:
        """The plan of one clip of ``video`` (``num_frames`` frames of ``frame_wh`` = (W, H))."""
        T, N = self.T, int(num_frames)
        W, H = (int(v) for v in frame_wh)
        if N < 1:
            raise ValueError(f"video {video} has no frames")
        pace = self.pace
        if "pace" in self.augment:
            fits = [p for p in PACES if (T - 1) * p + 1 <= N] or [1]
            pace = int(fits[rng.integers(len(fits))])
        span = (T - 1) * pace
        if span > N - 1:
            idx = geometry.looped_idx(T, N, pace)[0]
        else:
            start = int(rng.integers(0, N - span))
            idx = geometry.clip_idx((start, start), pace, T)[0]
        box = np.asarray(geometry.rrc_box(W, H, rng), dtype=np.int64)
        flip = bool(rng.random() < 0.5)
        rot = int(rng.integers(4)) if "rot" in self.augment else 0
        drawn = draw_photometric(rng, 1.0)  # the pair's block; clip 1's colour jitter is used
        photometric = {k: np.asarray(v[:1]) for k, v in drawn.items()}
        for key, value in _OFF.items():
            photometric[key] = np.full(1, value, dtype=photometric[key].dtype)
        return ClipPlan(video=int(video), num_frames=N, frame_wh=(W, H), T=T, pace=pace, idx=idx.astype(np.int64),
                        box=box, rot90=rot, flip=flip, photometric=photometric)


def stack_clip_plans(plans: Sequence[ClipPlan]) -> dict[str, object]:
    """Stack B plans into arrays: ``box int64[B, 4]``, ``flip bool[B]``, ``rot90 int64[B]``,
    ``photometric[k] [B, ...]`` and the shared ``frame_wh``."""
    if not plans:
        raise ValueError("no clip plans to stack")
    return {
        "box": np.stack([p.box for p in plans]).astype(np.int64),
        "flip": np.array([p.flip for p in plans], dtype=bool),
        "rot90": np.array([p.rot90 for p in plans], dtype=np.int64),
        "photometric": {k: np.concatenate([p.photometric[k] for p in plans]) for k in plans[0].photometric},
        "frame_wh": plans[0].frame_wh,
    }
