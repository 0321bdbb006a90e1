"""The public plugin API of cstp: specs, the plan contract and the component interfaces.

Plugins import only this module and :mod:`cstp_cli.hookspecs`. Everything here is
stable API; everything else in ``cstp_cli`` is internal. The integer plan-geometry helpers
of :mod:`cstp_cli.plans.geometry` that a pretext task needs (``delta_steps``, ``draw_rrc_size``,
``rrc_box``, ``corner_shift``; METHOD §2.2–§2.3) are re-exported here, so a plugin computes
offsets and crops exactly as the core sampler does.

Conventions (METHOD §0): frames are 0-indexed at the cache's frame rate; every frame of a
cache has one size W×H (written width×height); boxes are ``(x, y, w, h)`` in integer cache
pixels, half-open; a clip has T frames; plan geometry is integer arithmetic only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Callable, ClassVar, Mapping

import numpy as np

from cstp_cli.errors import PluginError
from cstp_cli.plans.geometry import corner_shift, delta_steps, draw_rrc_size, rrc_box

__all__ = [
    "Option",
    "BackboneSpec",
    "SchemeSpec",
    "PretextSpec",
    "PairPlan",
    "PlanBatch",
    "PHASES",
    "PretextTask",
    "ContrastiveScheme",
    "SchemeOutput",
    "collate_plans",
    "parse_fraction",
    "delta_steps",
    "draw_rrc_size",
    "rrc_box",
    "corner_shift",
    "pretext_head",
]

#: The fixed order in which plan steps run (METHOD §2).
PHASES: tuple[str, ...] = ("rate", "temporal", "spatial", "per_clip")


def parse_fraction(text: str) -> Fraction:
    """Parse ``"4/5"`` or ``"1"`` into an exact :class:`fractions.Fraction`."""
    return Fraction(text.strip())


_BOOL_TRUE = {"1", "true", "yes", "on"}
_BOOL_FALSE = {"0", "false", "no", "off"}


def _parse_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).lower() in _BOOL_TRUE:
        return True
    if str(value).lower() in _BOOL_FALSE:
        return False
    raise ValueError(f"{name} expects true/false, got {value!r}")


def _items(value: Any) -> list[Any]:
    """A TOML list as it is; a command-line string split at commas."""
    if isinstance(value, (list, tuple)):
        return list(value)
    return [v for v in str(value).split(",") if v.strip()]


#: Option type → parser ``(option name, value) -> typed value``.
_PARSERS: dict[str, Callable[[str, Any], Any]] = {
    "int": lambda name, v: int(v),
    "float": lambda name, v: float(v),
    "str": lambda name, v: str(v),
    "bool": _parse_bool,
    "list[int]": lambda name, v: [int(x) for x in _items(v)],
    "list[str]": lambda name, v: [str(x).strip() for x in _items(v)],
}


@dataclass(frozen=True)
class Option:
    """A typed, documented option of a component, set with ``--set name.option=value``.

    ``type`` is one of ``int``, ``float``, ``str``, ``bool`` or ``list[int]`` /
    ``list[str]`` (comma-separated on the command line, a list in TOML).
    """

    name: str
    type: str
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None

    def __post_init__(self) -> None:
        if self.type not in _PARSERS:
            raise ValueError(f"option {self.name} has unknown type {self.type!r}; one of {', '.join(_PARSERS)}")

    def parse(self, value: Any) -> Any:
        """Convert a command-line string (or a TOML value) to this option's type.

        Raises ``ValueError`` with a readable message on a bad value.
        """
        out = _PARSERS[self.type](self.name, value)
        if self.choices is not None:
            values = out if isinstance(out, list) else [out]
            bad = [v for v in values if v not in self.choices]
            if bad:
                raise ValueError(
                    f"{self.name} must be one of {', '.join(map(str, self.choices))}, got {bad[0]!r}"
                )
        return out


def resolve_options(declared: Mapping[str, Option], given: Mapping[str, Any], owner: str) -> dict[str, Any]:
    """Merge ``given`` (strings or TOML values) over the declared defaults.

    Raises ``KeyError`` naming the unknown option and the known ones.
    """
    out = {name: opt.default for name, opt in declared.items()}
    for key, value in given.items():
        if key not in declared:
            known = ", ".join(sorted(declared)) or "none"
            raise KeyError(f"{owner} has no option {key!r} (options: {known})")
        out[key] = declared[key].parse(value)
    return out


# --------------------------------------------------------------------------- specs


@dataclass(frozen=True)
class BackboneSpec:
    """A video encoder: clip ``float[B, 3, T, H, W]`` → feature ``float[B, D]``.

    ``build(width)`` returns an ``nn.Module`` with ``width`` ``"full"`` (METHOD §5) or
    ``"tiny"`` (a narrow version for CPU runs). The module must have:

    * ``forward(x) -> float[B, D]`` — globally pooled features;
    * ``features(x) -> float[B, C, t, h, w]`` — the last conv map (conv5), with
      ``C = D`` and ``forward(x)`` its global average (a pretext task with
      ``uses_feature_maps`` relies on both);
    * an int attribute ``feature_dim`` (D of the built width).

    ``dynamic_time``: the model accepts any T >= ``min_frames`` (ONNX time axis).
    """

    name: str
    build: Callable[..., Any]
    feature_dim: int
    description: str = ""
    dynamic_time: bool = True
    min_frames: int = 1


@dataclass(frozen=True)
class SchemeSpec:
    """A contrastive scheme: ``build(feature_dim, **options) -> ContrastiveScheme``."""

    name: str
    build: Callable[..., "ContrastiveScheme"]
    options: Mapping[str, Option] = field(default_factory=dict)
    description: str = ""


@dataclass(frozen=True)
class PretextSpec:
    """A pretext task: ``build(**options) -> PretextTask``; weight λ defaults to ``default_weight``."""

    name: str
    build: Callable[..., "PretextTask"]
    default_weight: float = 1.0
    options: Mapping[str, Option] = field(default_factory=dict)
    description: str = ""


# --------------------------------------------------------------------------- plans


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
    """

    video: Any
    pace: Any
    idx: Any
    boxes: Any
    rot90: Any
    flip: Any
    photometric: dict[str, Any]
    labels: dict[str, Any]
    extras: dict[str, Any]
    frame_wh: tuple[int, int]

    def to(self, device: Any, non_blocking: bool = False) -> "PlanBatch":
        """Copy every tensor to ``device``."""

        def move(x: Any) -> Any:
            return x.to(device, non_blocking=non_blocking) if hasattr(x, "to") else x

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
        )

    def pin_memory(self) -> "PlanBatch":
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

    def stack(arrays: list[Any]) -> Any:
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


# --------------------------------------------------------------------------- tasks


class PretextTask:
    """A pretext task (or an augmentation) contributing plan steps, a head and a loss.

    Subclasses set the class attributes and override what they use. The engine builds one
    instance per run with resolved options (``self.options``). A task named in
    ``--augment`` but not ``--pretext`` runs only its plan steps and device transform.

    Class attributes:
        name: the registered name; label and extra keys are ``"<name>.<key>"``.
        phases: subset of :data:`PHASES` this task has a plan step in.
        writes: plan fields this task owns (``"pace"``, ``"idx"``, ``"boxes"``, ``"rot90"``,
            ``"flip"``, ``"photometric"``); the core default for an owned field does not run;
            two active owners of one field are an error naming both.
        augmentation_only_writes: fields still written when the task runs as an
            augmentation only (``None``: the same as ``writes``).
        uses_feature_maps: when True (a class or instance attribute), the engine computes
            each clip's last conv map ``m = encoder.features(x) float[B, C, t, h, w]``, takes
            ``y`` as its global average (what a backbone's ``forward`` returns) and calls
            ``loss(y1, y2, labels, head, maps=(m1, m2))``. Default False: ``loss`` gets
            pooled features only (and ``forward`` is the encoder pass).
    """

    name: ClassVar[str] = ""
    phases: ClassVar[frozenset[str]] = frozenset()
    writes: ClassVar[frozenset[str]] = frozenset()
    augmentation_only_writes: ClassVar[frozenset[str] | None] = None
    uses_feature_maps: bool = False

    def __init__(self, **options: Any):
        self.options = dict(options)
        #: Set by the engine: True when the task is named in ``--augment`` only (plan
        #: steps and device transform run; no head, no loss).
        self.augment_only: bool = False

    # worker side ---------------------------------------------------------------------
    def plan_step(self, phase: str, plan: PairPlan, rng: np.random.Generator) -> None:
        """Fill this task's fields, labels and extras of ``plan`` for ``phase`` (NumPy only)."""

    # device side ---------------------------------------------------------------------
    def device_transform(self, clips: Any, batch: PlanBatch) -> Any:
        """Transform clips ``float[B, 2, 3, T, S, S]`` in [0, 1] on the device; return the same shape.

        Runs after crop/resize/flip/photometric and before normalisation.
        """
        return clips

    # training side -------------------------------------------------------------------
    def head(self, feature_dim: int) -> Any:
        """The ``nn.Module`` head(s) this task trains on top of features ``float[B, D]``.

        A task without one (an augmentation) keeps this default and can only be named in
        ``--augment``.
        """
        raise PluginError(f"pretext task {self.name!r} has no head; name it in --augment, not --pretext")

    def loss(self, y1: Any, y2: Any, labels: Mapping[str, Any], head: Any) -> dict[str, Any]:
        """Named loss terms (scalar tensors) from features ``y1``, ``y2`` ``float[B, D]``.

        The engine sums the terms and multiplies by the task's weight λ. A task with
        ``uses_feature_maps`` also receives ``maps=(m1, m2)`` (see the class docstring).
        """
        raise PluginError(f"pretext task {self.name!r} has no loss; name it in --augment, not --pretext")


@dataclass
class SchemeOutput:
    """What a contrastive scheme returns for one step.

    ``terms``: named scalar loss tensors (summed, then multiplied by λ_ctr).
    ``stats``: named scalar tensors logged but not optimised (e.g. ``"std"``, the collapse
    monitor: mean per-dimension std of the L2-normalised embeddings).
    """

    terms: dict[str, Any]
    stats: dict[str, Any] = field(default_factory=dict)


def pretext_head(d_in: int, d_hidden: int, d_out: int) -> Any:
    """The pretext heads' MLP (METHOD §3): Linear → BN → ReLU → Linear, an ``nn.Sequential``
    mapping ``float[B, d_in]`` to logits ``float[B, d_out]``."""
    import torch.nn as nn

    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.BatchNorm1d(d_hidden), nn.ReLU(inplace=True), nn.Linear(d_hidden, d_out))


def _module_base() -> type:
    import torch.nn as nn

    return nn.Module


class ContrastiveScheme(_module_base()):  # type: ignore[misc]
    """Base class of contrastive schemes (an ``nn.Module``; METHOD §4).

    The scheme owns its projector, predictor, target encoder and queue. The engine calls:

    1. ``attach(encoder)`` once after building, so target networks can copy the encoder;
    2. ``forward(y1, y2, x1, x2) -> SchemeOutput`` every step, with online features
       ``y1, y2 float[B, D]`` of the two views and the augmented clips
       ``x1, x2 float[B, 3, T, S, S]`` (for target passes);
    3. ``after_step(encoder, step, total_steps)`` after every optimiser step (momentum).

    Parameters with ``requires_grad=False`` (targets) are never given to the optimiser.
    """

    name: ClassVar[str] = ""

    def attach(self, encoder: Any) -> None:
        """Called once with the online encoder (after the scheme is built)."""

    def after_step(self, encoder: Any, step: int, total_steps: int) -> None:
        """Called after each optimiser step (e.g. momentum update of targets)."""

    def forward(self, y1: Any, y2: Any, x1: Any, x2: Any) -> SchemeOutput:
        """The scheme's loss terms and statistics for one step (every scheme overrides it)."""
        raise PluginError(f"contrastive scheme {type(self).__name__} does not implement forward()")
