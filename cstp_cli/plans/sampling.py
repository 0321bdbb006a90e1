"""Clip-pair plans: per-sample RNG, the phase-ordered pair sampler, ``pairs.jsonl``.

*Why one file of ~415 lines*: the sampler's phase model (METHOD §0, §2) — the order of the
phases, the core defaults of every plan field and the shared-field rule — reads as one
piece; the authors' App. A sampling lives apart in :mod:`cstp_cli.plans.reference`.

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
in the order the tasks were given; last, clip 2's value of every field of the phase that an
active task declares ``shared`` is set to clip 1's (temporal-only STOR shares crop, flip and
colour; spatial-only STOR shares the frames). Core defaults: s = 1; independent uniform
starts at the same pace (videos shorter than a clip loop: both clips ``[i mod N]``); box 2 an
independent random-resized crop; r = 0; flip p = ½; the photometric block below. The clean
sampler reads no task's options: a task describes itself through the API (``writes``,
``shared``, ``mode_tag``, ``plan_info``, ``label_classes``).

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

**Reference sampling (METHOD App. A)** — :class:`ReferenceSampler` (``--sampling reference``;
:func:`make_sampler` picks the class) replaces the stor/pace/rot steps and the core defaults
at once; it is the one sampler that knows those three tasks. Rotation happens before cropping there:
``plan.extras["sampling.rot_first"] = [True, True]`` tells the augmentation to rotate the
*full* frame by ``rot90[c]`` quarter turns counter-clockwise (``torch.rot90``: an odd number
of turns gives an H×W frame, anchored at the origin), then cut ``boxes[c]`` (the numbers
drawn in W×H, read in the rotated frame's coordinates) from it, zero-padded where the box
falls outside; the ``rot`` device transform skips such clips.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from cstp_cli.api import PHASES, PLAN_FIELDS, PairPlan, PretextTask, share_clip_one
from cstp_cli.errors import UsageError
from cstp_cli.plans import geometry
from cstp_cli.plans.geometry import candidate_strings

if TYPE_CHECKING:
    from cstp_cli.plans.reference import ReferenceSampler

__all__ = [
    "plan_rng",
    "epoch_order",
    "PairSampler",
    "make_sampler",
    "draw_photometric",
    "identity_photometric",
    "plan_to_json",
    "candidate_strings",
    "MODES",
]

MODES = ("clean", "reference")

#: The phase in which the core default of each plan field runs (the API's table).
FIELD_PHASE: dict[str, str] = PLAN_FIELDS

#: Overlap rates n when no active task declares its own (METHOD §0).
DEFAULT_CANDIDATES = 5



def plan_rng(seed: int, epoch: int, i: int) -> np.random.Generator:
    """The generator of sample ``i`` in epoch ``epoch`` (METHOD §0)."""
    return np.random.default_rng([int(seed), int(epoch), int(i)])


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order ``int64[n]`` (a permutation of ``0..n−1``) of epoch ``epoch`` (METHOD §0)."""
    return np.random.default_rng([int(seed), int(epoch)]).permutation(int(n)).astype(np.int64)


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


# --------------------------------------------------------------------------- the samplers


def _owned_fields(task: PretextTask) -> frozenset[str]:
    if getattr(task, "augment_only", False):
        only = getattr(task, "augmentation_only_writes", None)
        return frozenset(task.writes if only is None else only)
    return frozenset(task.writes)


def _check_T(T: int) -> int:
    if int(T) < 2:
        raise UsageError(f"clips need at least 2 frames, got T={T}; use --frames 2 or more")
    return int(T)


class SamplerBase:
    """What both samplers share: the tasks, T, the task lookup and the ``pairs.jsonl`` facts."""

    mode: str = ""

    def __init__(self, tasks: Sequence[PretextTask], T: int):
        self.tasks = list(tasks)
        self.T = _check_T(T)

    def task(self, name: str) -> PretextTask | None:
        """The active task called ``name``, or None."""
        return next((t for t in self.tasks if t.name == name), None)

    def plan_info(self) -> dict[str, Any]:
        """Record-level facts of the active tasks (``PretextTask.plan_info``), merged.

        ``candidates`` (schema 1 always has it) falls back to METHOD §0's default rates
        (n = 5) when no active task declares any.
        """
        info: dict[str, Any] = {}
        for task in self.tasks:
            for key, value in task.plan_info().items():
                if key in info:
                    raise UsageError(f"tasks disagree on pairs.jsonl key {key!r}; drop one of them")
                info[key] = value
        info.setdefault("candidates", candidate_strings(DEFAULT_CANDIDATES))
        return info

    @property
    def candidates(self) -> list[str]:
        """The overlap rates as strings, label order (METHOD §0)."""
        return list(self.plan_info()["candidates"])

    def label_classes(self) -> dict[str, int]:
        """Number of classes per label key of the active tasks (for the report's histograms)."""
        out: dict[str, int] = {}
        for task in self.tasks:
            out.update(task.label_classes())
        return out

    def _new_plan(self, video: int, num_frames: int, frame_wh: tuple[int, int]) -> PairPlan:
        W, H = (int(v) for v in frame_wh)
        plan = PairPlan(video=int(video), num_frames=int(num_frames), frame_wh=(W, H), T=self.T)
        if plan.num_frames < 1:
            raise ValueError(f"video {video} has no frames")
        return plan


class PairSampler(SamplerBase):
    """Draws one :class:`~cstp_cli.api.PairPlan` per sample, METHOD §2 (the clean mode).

    Knows no particular task: it runs the phases, the core default of every field no active
    task owns, each task's plan steps, and copies clip 1's value of every field an active
    task declares ``shared`` to clip 2. Its mode is ``clean`` plus the tasks' ``mode_tag``
    (``clean+decorrelate``).

    Args:
        tasks: the active tasks (from ``--pretext`` and ``--augment``), built with their options.
        T: frames per clip (>= 2).
        photometric_p: probability of the photometric block per clip.

    Raises:
        UsageError: two active tasks own one plan field, a task owns a field another one
            needs shared, or a bad ``T``.
    """

    mode = "clean"

    def __init__(self, tasks: Sequence[PretextTask], T: int = 16, photometric_p: float = 1.0):
        super().__init__(tasks, T)
        self.photometric_p = float(photometric_p)
        self.owners = self._check_owners()
        self.shared = self._check_shared()

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

    def _check_shared(self) -> dict[str, str]:
        """Field → the first task that needs it equal in both clips; refuses an owned one."""
        shared: dict[str, str] = {}
        for task in self.tasks:
            for fld in sorted(getattr(task, "shared", frozenset())):
                if fld not in PLAN_FIELDS:
                    raise UsageError(f"task {task.name} asks to share {fld!r}, not a plan field ({', '.join(PLAN_FIELDS)})")
                if fld in self.owners:
                    raise UsageError(
                        f"task {task.name} needs {fld!r} equal in both clips, but {self.owners[fld]} draws it; "
                        f"drop one of them, or see {task.name}'s options"
                    )
                shared.setdefault(fld, task.name)
        return shared

    @property
    def mode_label(self) -> str:
        """``pairs.jsonl``'s mode: ``clean`` plus ``+tag`` per task tag (``clean+decorrelate``)."""
        tags = [t.mode_tag for t in self.tasks if t.mode_tag]
        return "+".join([self.mode, *tags])

    def plan(self, video: int, num_frames: int, frame_wh: tuple[int, int], rng: np.random.Generator) -> PairPlan:
        """The plan of one sample of ``video`` (``num_frames`` frames of ``frame_wh`` = (W, H))."""
        plan = self._new_plan(video, num_frames, frame_wh)
        for phase in PHASES:
            self._core_phase(phase, plan, rng)
            for task in self.tasks:
                if phase in task.phases:
                    task.plan_step(phase, plan, rng)
            for fld in self.shared:
                if PLAN_FIELDS[fld] == phase:
                    share_clip_one(plan, fld)
        plan.measured = geometry.measure(plan.idx, plan.boxes)
        return plan

    def _core_phase(self, phase: str, plan: PairPlan, rng: np.random.Generator) -> None:
        for fld, fld_phase in PLAN_FIELDS.items():
            if fld_phase != phase or fld in self.owners:
                continue
            if fld == "photometric":
                plan.photometric = draw_photometric(rng, self.photometric_p)
            else:
                CORE_DEFAULTS[fld](plan, rng)


def make_sampler(
    tasks: Sequence[PretextTask], T: int = 16, mode: str = "clean", photometric_p: float = 1.0
) -> PairSampler | ReferenceSampler:
    """The sampler of ``--sampling MODE``: :class:`PairSampler` (``clean``) or
    :class:`~cstp_cli.plans.reference.ReferenceSampler` (``reference``, whose photometric p
    is App. A's 0.3). Both have ``plan(video, num_frames, frame_wh, rng)``, ``mode_label``,
    ``candidates``, ``plan_info()`` and ``label_classes()``."""
    if mode == "clean":
        return PairSampler(tasks, T=T, photometric_p=photometric_p)
    if mode == "reference":
        from cstp_cli.plans.reference import ReferenceSampler

        return ReferenceSampler(tasks, T=T)
    raise UsageError(f"unknown sampling mode {mode!r}; use one of: {', '.join(MODES)}")


# --------------------------------------------------------------------------- pairs.jsonl


def _label_json(value: Any) -> Any:
    arr = np.asarray(value)
    return int(arr) if arr.ndim == 0 else arr.astype(int).tolist()


#: Plan fields compared between the two clips for ``pairs.jsonl``'s ``same`` list.
SAME_FIELDS = ("idx", "boxes", "flip", "rot90", "photometric")


def same_fields(plan: PairPlan) -> list[str]:
    """The fields of :data:`SAME_FIELDS` whose clip-1 and clip-2 values are equal in ``plan``."""
    out = []
    for fld in SAME_FIELDS:
        if fld == "photometric":
            equal = all(np.array_equal(np.asarray(v)[0], np.asarray(v)[1]) for v in plan.photometric.values())
        else:
            value = np.asarray(getattr(plan, fld))
            equal = value.shape[0] == 2 and np.array_equal(value[0], value[1])
        if equal:
            out.append(fld)
    return out


def plan_to_json(
    plan: PairPlan, mode: str, paths: Sequence[str], info: Mapping[str, Any] | Sequence[str]
) -> dict[str, Any]:
    """One ``pairs.jsonl`` object, schema 1 (METHOD §2).

    ``mode``: the sampler's ``mode_label`` (``clean``, ``clean+decorrelate``, ``reference``);
    ``paths``: the cache's relative video paths (indexed by ``plan.video``); ``info``: the
    sampler's ``plan_info()`` (``candidates`` and any other task facts, written as top-level
    keys), or just the candidate rates as strings. ``same`` lists the fields equal in both
    clips (e.g. ``["boxes", "flip", "photometric"]`` for temporal-only STOR).
    """
    info = dict(info) if isinstance(info, Mapping) else {"candidates": list(info)}
    measured = dict(plan.measured) or geometry.measure(plan.idx, plan.boxes)
    record = {
        "schema": 1,
        "mode": mode,
        "video": str(paths[plan.video]),
        "num_frames": int(plan.num_frames),
        "frame_wh": [int(plan.frame_wh[0]), int(plan.frame_wh[1])],
        "T": int(plan.T),
        "pace": int(plan.pace),
        "candidates": [str(c) for c in info.pop("candidates")],
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
        "same": same_fields(plan),
    }
    for key, value in info.items():
        record.setdefault(key, value)
    return record
