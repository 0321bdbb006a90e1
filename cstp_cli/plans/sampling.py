"""Clip-pair plans: per-sample RNG, the phase-ordered pair sampler, App. A, ``pairs.jsonl``.

Pure NumPy, no pixels (DESIGN "Data flow"). A :class:`~cstp_cli.api.PairPlan` says which
frames and boxes to cut, how to flip, rotate and colour each clip, and carries the pretext
labels; :mod:`cstp_cli.augment` applies it on the device.

**Randomness (METHOD §0).** The plan of sample ``i`` in epoch ``e`` is drawn from
:func:`plan_rng` ``(seed, e, i)``, the epoch's order from :func:`epoch_order` ``(seed, e)``:
plans do not depend on worker count, world size or call order.

**Phases (METHOD §2).** :meth:`PairSampler.plan` runs :data:`~cstp_cli.api.PHASES` in order
(``rate``, ``temporal``, ``spatial``, ``per_clip``). In each phase the core default of every
field of that phase (``pace``; ``idx``; ``boxes``; ``rot90``, ``flip``, ``photometric``) that
no active task owns runs first, then the plan step of every active task that lists the phase,
in the order the tasks were given. Core defaults: s = 1; independent uniform starts at the
same pace (videos shorter than a clip loop: both clips ``[i mod N]``); box 2 an independent
random-resized crop; r = 0; flip p = ½; the photometric block below.

**Photometric block (METHOD §2.4)** — ``plan.photometric``, every value with leading axis 2
(clip 1, clip 2), one draw shared by the clip's T frames. The block is applied to a clip
with probability ``photometric_p`` (1 = every clip; App. A uses 0.3). How to apply it, per
clip c, after cutting ``boxes[c]`` and in this order:

1. ``angle[c]`` (float32, degrees, U(−10, 10)): rotate the crop counter-clockwise about the
   box centre by this angle (fold it into the crop's affine grid), then resize to S×S;
2. ``flip[c]`` (the plan's own field): mirror horizontally;
3. if ``jitter[c]`` (bool, p = 0.8): for ``op`` in ``order[c]`` (int64[4], a permutation of
   0 brightness, 1 contrast, 2 saturation, 3 hue — torchvision ``ColorJitter``'s ``fn_idx``)
   apply ``adjust_brightness(x, brightness[c])``, ``adjust_contrast(x, contrast[c])``,
   ``adjust_saturation(x, saturation[c])`` or ``adjust_hue(x, hue[c])`` with
   ``torchvision.transforms.functional`` semantics; the factors are the multiplicative
   factors ``ColorJitter`` draws (brightness/contrast/saturation U[0.6, 1.4], float32) and
   the hue shift U[−0.1, 0.1];
4. if ``gray[c]`` (bool, p = 0.2): ``rgb_to_grayscale(x, num_output_channels=3)``;
5. if ``blur[c]`` (bool, p = 0.5): Gaussian blur with ``sigma[c]`` (float32, U[0.1, 2];
   kernel size the augmentation's choice, stated there).

When a step is not drawn its values are the identity (angle 0, factors 1, 1, 1, hue 0, order
0 1 2 3, sigma 0), so the fields can also be applied unconditionally. Then each task's device
transform (``rot`` rotates by ``rot90``) and normalisation ``x/255·2 − 1``.

**Reference sampling (METHOD App. A)** — ``mode="reference"`` replaces the stor/pace/rot
steps and the core defaults at once. Rotation happens before cropping there:
``plan.extras["sampling.rot_first"] = [True, True]`` tells the augmentation to rotate the
*full* frame by ``rot90[c]`` quarter turns counter-clockwise (``torch.rot90``: an odd number
of turns gives an H×W frame, anchored at the origin), then cut ``boxes[c]`` (the numbers
drawn in W×H, read in the rotated frame's coordinates) from it, zero-padded where the box
falls outside; the ``rot`` device transform skips such clips.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any, Sequence

import numpy as np

from cstp_cli.plans import geometry
from cstp_cli.api import PHASES, PairPlan, PretextTask
from cstp_cli.errors import UsageError

__all__ = [
    "plan_rng",
    "epoch_order",
    "PairSampler",
    "draw_photometric",
    "identity_photometric",
    "plan_to_json",
    "candidate_strings",
    "MODES",
]

MODES = ("clean", "reference")

#: The phase in which the core default of each plan field runs.
FIELD_PHASE: dict[str, str] = {
    "pace": "rate",
    "idx": "temporal",
    "boxes": "spatial",
    "rot90": "per_clip",
    "flip": "per_clip",
    "photometric": "per_clip",
}

#: Tasks whose steps ``mode="reference"`` replaces (App. A covers all three at once).
REFERENCE_TASKS = frozenset({"stor", "pace", "rot"})
REFERENCE_PHOTOMETRIC_P = 0.3
REFERENCE_RATES = (1, 2, 4, 8)


def plan_rng(seed: int, epoch: int, i: int) -> np.random.Generator:
    """The generator of sample ``i`` in epoch ``epoch`` (METHOD §0)."""
    return np.random.default_rng([int(seed), int(epoch), int(i)])


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order ``int64[n]`` (a permutation of ``0..n−1``) of epoch ``epoch`` (METHOD §0)."""
    return np.random.default_rng([int(seed), int(epoch)]).permutation(int(n)).astype(np.int64)


def candidate_strings(n: int) -> list[str]:
    """The overlap rates ``1, (n−1)/n, …, 1/n`` as strings (label k ↔ rate ``1 − k/n``)."""
    return [str(Fraction(n - k, n)) for k in range(n)]


# --------------------------------------------------------------------------- photometric


def identity_photometric() -> dict[str, np.ndarray]:
    """Photometric parameters that change nothing, for both clips (see the module docstring)."""
    return {
        "angle": np.zeros(2, np.float32),
        "jitter": np.zeros(2, bool),
        "brightness": np.ones(2, np.float32),
        "contrast": np.ones(2, np.float32),
        "saturation": np.ones(2, np.float32),
        "hue": np.zeros(2, np.float32),
        "order": np.tile(np.arange(4, dtype=np.int64), (2, 1)),
        "gray": np.zeros(2, bool),
        "blur": np.zeros(2, bool),
        "sigma": np.zeros(2, np.float32),
    }


def draw_photometric(rng: np.random.Generator, p: float = 1.0) -> dict[str, np.ndarray]:
    """Draw the photometric block of both clips (METHOD §2.4; semantics in the module docstring).

    Every value is drawn for both clips whatever is applied (fixed RNG use); undrawn steps are
    set to the identity.
    """
    out = identity_photometric()
    u = rng.random((2, 7))  # block, angle, jitter, brightness, contrast, saturation, hue
    order = np.argsort(rng.random((2, 4)), axis=1).astype(np.int64)
    v = rng.random((2, 3))  # gray, blur, sigma
    block = u[:, 0] < p
    jitter = block & (u[:, 2] < 0.8)
    blur = block & (v[:, 1] < 0.5)
    out["angle"] = np.where(block, -10.0 + 20.0 * u[:, 1], 0.0).astype(np.float32)
    out["jitter"] = jitter
    for j, key in enumerate(("brightness", "contrast", "saturation")):
        out[key] = np.where(jitter, 0.6 + 0.8 * u[:, 3 + j], 1.0).astype(np.float32)
    out["hue"] = np.where(jitter, -0.1 + 0.2 * u[:, 6], 0.0).astype(np.float32)
    out["order"] = np.where(jitter[:, None], order, out["order"])
    out["gray"] = block & (v[:, 0] < 0.2)
    out["blur"] = blur
    out["sigma"] = np.where(blur, 0.1 + 1.9 * v[:, 2], 0.0).astype(np.float32)
    return out


# --------------------------------------------------------------------------- core defaults


def default_pace(plan: PairPlan, rng: np.random.Generator) -> None:
    """Rate phase, pace inactive: s = 1 (METHOD §2.1)."""
    plan.pace = 1


def default_temporal(plan: PairPlan, rng: np.random.Generator) -> None:
    """Temporal phase, stor inactive: independent uniform starts at pace s; short videos loop."""
    T, N, s = plan.T, plan.num_frames, plan.pace
    span = (T - 1) * s
    if span > N - 1:
        plan.idx = geometry.looped_idx(T, N, s if N >= T else 1)
        return
    a, b = (int(v) for v in rng.integers(0, N - span, size=2))
    plan.idx = geometry.clip_idx((a, b), s, T)


def default_boxes(plan: PairPlan, rng: np.random.Generator) -> None:
    """Spatial phase, stor inactive: two independent random-resized crops (METHOD §2.3)."""
    W, H = plan.frame_wh
    plan.boxes = np.array([geometry.rrc_box(W, H, rng), geometry.rrc_box(W, H, rng)], dtype=np.int64)


def default_rot90(plan: PairPlan, rng: np.random.Generator) -> None:
    """Per-clip phase, rot inactive: r = 0."""
    plan.rot90 = np.zeros(2, dtype=np.int64)


def default_flip(plan: PairPlan, rng: np.random.Generator) -> None:
    """Horizontal flip, p = ½ per clip (METHOD §2.4)."""
    plan.flip = rng.random(2) < 0.5


CORE_DEFAULTS = {
    "pace": default_pace,
    "idx": default_temporal,
    "boxes": default_boxes,
    "rot90": default_rot90,
    "flip": default_flip,
}


# --------------------------------------------------------------------------- the sampler


def _owned_fields(task: PretextTask) -> frozenset[str]:
    if getattr(task, "augment_only", False):
        only = getattr(task, "augmentation_only_writes", None)
        return frozenset(task.writes if only is None else only)
    return frozenset(task.writes)


class PairSampler:
    """Draws one :class:`~cstp_cli.api.PairPlan` per sample (METHOD §2 / App. A).

    Args:
        tasks: the active tasks (from ``--pretext`` and ``--augment``), each with its options.
        T: frames per clip (>= 2).
        mode: ``"clean"`` (METHOD §2) or ``"reference"`` (App. A for stor, pace and rot).
        photometric_p: probability of the photometric block per clip in clean mode.

    Raises:
        UsageError: two active tasks own one plan field, or a bad ``mode``/``T``.
    """

    def __init__(
        self,
        tasks: Sequence[PretextTask],
        T: int = 16,
        mode: str = "clean",
        photometric_p: float = 1.0,
    ):
        if mode not in MODES:
            raise UsageError(f"unknown sampling mode {mode!r}; use one of: {', '.join(MODES)}")
        if int(T) < 2:
            raise UsageError(f"clips need at least 2 frames, got T={T}; use --frames 2 or more")
        self.tasks = list(tasks)
        self.T = int(T)
        self.mode = mode
        self.photometric_p = float(photometric_p)
        self.owners = self._check_owners()
        stor = self.task("stor")
        self.n = int(stor.options.get("candidates", 5)) if stor is not None else 5
        self.decorrelate = bool(stor is not None and stor.options.get("decorrelate", False))

    def _check_owners(self) -> dict[str, str]:
        owners: dict[str, str] = {}
        for task in self.tasks:
            for fld in sorted(_owned_fields(task)):
                if fld in owners:
                    raise UsageError(
                        f"plan field {fld!r} is owned by two active tasks: {owners[fld]} and {task.name}; "
                        "drop one of them from --pretext/--augment"
                    )
                owners[fld] = task.name
        return owners

    def task(self, name: str) -> PretextTask | None:
        """The active task called ``name``, or None."""
        return next((t for t in self.tasks if t.name == name), None)

    @property
    def mode_label(self) -> str:
        """``pairs.jsonl``'s mode: ``clean``, ``clean+decorrelate`` or ``reference``."""
        if self.mode == "reference":
            return "reference"
        return "clean+decorrelate" if self.decorrelate else "clean"

    @property
    def candidates(self) -> list[str]:
        """The overlap rates as strings, label order (METHOD §0)."""
        return candidate_strings(self.n)

    # ---------------------------------------------------------------------------------
    def plan(self, video: int, num_frames: int, frame_wh: tuple[int, int], rng: np.random.Generator) -> PairPlan:
        """The plan of one sample of ``video`` (``num_frames`` frames of ``frame_wh`` = (W, H))."""
        W, H = (int(v) for v in frame_wh)
        plan = PairPlan(video=int(video), num_frames=int(num_frames), frame_wh=(W, H), T=self.T)
        if plan.num_frames < 1:
            raise ValueError(f"video {video} has no frames")
        if self.mode == "reference":
            self._reference(plan, rng)
            skip = REFERENCE_TASKS
        else:
            skip = frozenset()
        for phase in PHASES:
            if self.mode == "clean":
                self._core_phase(phase, plan, rng)
            for task in self.tasks:
                if phase in task.phases and task.name not in skip:
                    task.plan_step(phase, plan, rng)
        plan.measured = geometry.measure(plan.idx, plan.boxes)
        return plan

    def _core_phase(self, phase: str, plan: PairPlan, rng: np.random.Generator) -> None:
        for fld, fld_phase in FIELD_PHASE.items():
            if fld_phase != phase or fld in self.owners:
                continue
            if fld == "photometric":
                plan.photometric = draw_photometric(rng, self.photometric_p)
            else:
                CORE_DEFAULTS[fld](plan, rng)

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
        stor = self.task("stor")
        parts = set(stor.options.get("parts", ("spatial", "temporal"))) if stor is not None else set()
        for key, value in labels.items():
            task_name, part = key.split(".")
            if self.task(task_name) is None or (task_name == "stor" and part not in parts):
                continue
            plan.labels[key] = np.asarray(value, dtype=np.int64)


# --------------------------------------------------------------------------- pairs.jsonl


def _label_json(value: Any) -> Any:
    arr = np.asarray(value)
    return int(arr) if arr.ndim == 0 else arr.astype(int).tolist()


def plan_to_json(plan: PairPlan, mode: str, paths: Sequence[str], candidates: Sequence[str]) -> dict[str, Any]:
    """One ``pairs.jsonl`` object, schema 1 (METHOD §2).

    ``mode``: ``clean``, ``clean+decorrelate`` or ``reference``; ``paths``: the cache's
    relative video paths (indexed by ``plan.video``); ``candidates``: the rates as strings.
    """
    measured = dict(plan.measured) or geometry.measure(plan.idx, plan.boxes)
    return {
        "schema": 1,
        "mode": mode,
        "video": str(paths[plan.video]),
        "num_frames": int(plan.num_frames),
        "frame_wh": [int(plan.frame_wh[0]), int(plan.frame_wh[1])],
        "T": int(plan.T),
        "pace": int(plan.pace),
        "candidates": [str(c) for c in candidates],
        "idx": np.asarray(plan.idx).astype(int).tolist(),
        "boxes": np.asarray(plan.boxes).astype(int).tolist(),
        "rot90": np.asarray(plan.rot90).astype(int).tolist(),
        "flip": [bool(v) for v in np.asarray(plan.flip)],
        "labels": {k: _label_json(v) for k, v in plan.labels.items()},
        "measured": {
            "spatial": round(float(measured["spatial"]), 4),
            "temporal": round(float(measured["temporal"]), 4),
            "shared_frames": int(measured["shared_frames"]),
        },
    }
