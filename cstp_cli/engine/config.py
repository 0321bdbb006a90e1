"""Settings of ``cstp pretrain``: every key declared once (:class:`PretrainSettings`).

Precedence, lowest first (one function, :meth:`~cstp_cli.core.settings.Settings.layered`):
the declared defaults (METHOD §6, the paper's recipe) < a preset (``--preset``, or the
config file's ``preset = "..."``; ``cpu-synthetic`` when no DATA is given) < the TOML config
file (``--config``) < command-line flags. :meth:`~cstp_cli.core.settings.Settings.to_dict`
gives plain TOML types, so a checkpoint stores the settings as they are and
``weights_only=True`` loads them.

TOML layout (every key optional)::

    preset = "ucf101-r21d-byol"
    backbone = "r21d"             # and every other setting below
    [objective]
    contrastive = "byol=0.1"      # NAME[=λ] or "none"
    pretext = "stor,rot,pace"     # NAME[=λ],... or "none"; a TOML list works too
    augment = "pace,rot"          # NAME,... or "none"
    [pretext.stor]                # options of a pretext task (also for --augment tasks)
    decorrelate = true
    [contrastive.byol]            # options of a contrastive scheme
    momentum = 0.998
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from cstp_cli.core.options import parse_size, read_toml
from cstp_cli.core.options import positive_problem as _positive
from cstp_cli.core.options import size_problem as _size_problem
from cstp_cli.core.settings import Settings, setting
from cstp_cli.errors import UsageError

PRESET_DIR = Path(__file__).resolve().parent.parent / "presets"
#: The preset of a bare ``cstp pretrain`` (no DATA: the built-in synthetic dataset).
BARE_PRESET = "cpu-synthetic"


#: Units of ``--checkpoint-every``: seconds per time unit, or "steps"/"epochs".
_EVERY_UNITS: dict[str, float | str] = {
    "s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0,
    "m": 60.0, "min": 60.0, "mins": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hour": 3600.0, "hours": 3600.0,
    "step": "steps", "steps": "steps", "epoch": "epochs", "epochs": "epochs",
}


def parse_every(value: Any) -> tuple[str, float]:
    """``--checkpoint-every`` → ``(kind, amount)``: ``"10m"`` → ``("seconds", 600.0)``,
    ``"500steps"`` → ``("steps", 500)``, ``"2epochs"`` → ``("epochs", 2)``, ``"end"`` →
    ``("end", 0)`` (only at the end and on an interrupt). Raises :class:`UsageError`."""
    text = str(value).strip().lower().replace(" ", "")
    if text in ("end", "never", "off"):
        return "end", 0.0
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([a-z]+)", text)
    unit = _EVERY_UNITS.get(match.group(2)) if match else None
    amount = float(match.group(1)) if match else 0.0
    if unit is None or amount <= 0 or (isinstance(unit, str) and amount != int(amount)):
        raise UsageError(
            f"--checkpoint-every expects a time (30s, 10m, 1h), a step count (500steps), "
            f"an epoch count (1epoch) or end, got {value!r}"
        )
    return ("seconds", amount * unit) if isinstance(unit, float) else (unit, float(int(amount)))


def _every_problem(value: Any) -> str | None:
    try:
        parse_every(value)
    except UsageError as exc:
        return str(exc).removeprefix("--checkpoint-every ")
    return None


def _fraction(value: Any) -> str | None:
    return None if 0.0 <= value <= 1.0 else f"must be in [0, 1], got {value}"


def _as_text(value: Any) -> str:
    """Objective selections may be TOML lists: ``["stor", "rot=0.5"]`` → ``"stor,rot=0.5"``."""
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value) or "none"
    return str(value)


@dataclass
class ObjectiveSettings(Settings):
    """The ``[objective]`` table: which scheme and tasks make the joint loss (METHOD §1)."""

    WHAT = "objective"

    contrastive: str = setting("byol", "Contrastive scheme NAME[=λ] or none (λ defaults to 0.1).")
    pretext: str = setting("stor,rot,pace", "Pretext tasks NAME[=λ],... or none.")
    augment: str = setting("pace,rot", "Tasks used as augmentation only (plan + device transform, no loss): NAME,... or none.")

    def __post_init__(self) -> None:
        self.contrastive, self.pretext, self.augment = (_as_text(v) for v in (self.contrastive, self.pretext, self.augment))


@dataclass
class PretrainSettings(Settings):
    """Everything a pretraining run is defined by (METHOD §6 defaults)."""

    PRESETS = PRESET_DIR
    WHAT = "pretrain"

    data: str | None = setting(None, "Dataset folder or cache file (.h5); none: the built-in synthetic set.", flag=False, resume=True)
    backbone: str = setting("r21d", "Encoder (see `cstp plugins`).")
    width: str = setting("full", "Encoder width: full or tiny (CPU runs).", choices=("full", "tiny"))
    epochs: int = setting(300, "Epochs over the training split.", minimum=1, resume=True)
    batch_size: int = setting(60, "Global batch size (clip pairs per step).", minimum=2)
    lr: float = setting(0.03, "Base learning rate of SGD (cosine to --min-lr).", check=_positive)
    momentum: float = setting(0.9, "SGD momentum.", minimum=0.0)
    weight_decay: float = setting(5e-4, "SGD weight decay.", minimum=0.0)
    min_lr: float = setting(1e-5, "Learning rate at the end of the cosine schedule.", minimum=0.0)
    warmup_epochs: int = setting(0, "Linear warm-up epochs before the cosine (the authors' code: 150).", minimum=0)
    grad_clip: float = setting(18.0, "Clip the global gradient norm to this (0: off; the authors' code: 18).", minimum=0.0)
    workers: int = setting(4, "DataLoader worker processes.", minimum=0, resume=True)
    device: str = setting("auto", "auto, cpu, cuda or cuda:N.", resume=True)
    precision: str = setting("bf16", "bf16 (autocast on CUDA) or fp32.", choices=("bf16", "fp32"))
    compile: bool = setting(False, "torch.compile the encoder.")
    sync_bn: bool = setting(False, "SyncBatchNorm across GPUs under torchrun (CUDA only; docs/distributed.md).", resume=True)
    seed: int = setting(0, "Seed of plans, epoch orders and initial weights.")
    out: str | None = setting(None, "Run folder (checkpoint.pt, metrics.jsonl, loss.png); none: runs/pretrain-<time>.", short="-o", flag="--out", resume=True)
    sampling: str = setting("clean", "clean (METHOD §2) or reference (the authors' sampling, App. A).", choices=("clean", "reference"))
    photometric_p: float = setting(1.0, "Probability of the photometric block per clip (the authors' code: 0.3).", check=_fraction)
    split: int = setting(1, "Fold whose train split is pretrained on.", minimum=1)
    frames: int = setting(16, "Frames per clip T.", minimum=2)
    clip_size: int = setting(112, "Clip side S in pixels.", minimum=8)
    size: str | None = setting(None, "Cache frame size WxH when DATA is a dataset folder; none: a cache file's own size, 171x128 when building.", check=_size_problem)
    max_steps: int | None = setting(None, "Stop (with a checkpoint) after this many optimiser steps in total.", minimum=1, resume=True)
    checkpoint_every: str = setting("10m", "How often checkpoint.pt and loss.png are written: a time (30s, 10m, 1h), "
                                    "a step count (500steps), epochs (1epoch) or end; always also at the end and on Ctrl+C.",
                                    check=_every_problem, resume=True)
    objective: ObjectiveSettings = setting(None, "The joint objective.", kind="sub")
    pretext: dict = setting({}, "Options of pretext tasks, [pretext.NAME] tables.", kind="table", flag=False)
    contrastive: dict = setting({}, "Options of contrastive schemes, [contrastive.NAME] tables.", kind="table", flag=False)
    sets: dict = setting({}, "Component option COMPONENT.OPTION=VALUE, e.g. stor.decorrelate=true (repeatable).",
                         kind="table", flag="--set", cli_type=list[str])
    preset: str | None = setting(None, "The preset the run was layered on (recorded).", flag=False)

    def __post_init__(self) -> None:
        if self.objective is None:
            self.objective = ObjectiveSettings()
        elif isinstance(self.objective, Mapping):
            self.objective = ObjectiveSettings.from_dict(self.objective)

    def validate(self) -> None:
        super().validate()
        if not self.warmup_epochs < self.epochs:
            raise UsageError(f"--warmup-epochs must be below --epochs ({self.epochs}), got {self.warmup_epochs}")

    @property
    def frame_size(self) -> tuple[int, int] | None:
        """``size`` parsed as (W, H), or None."""
        return parse_size(self.size) if self.size else None

    @classmethod
    def resume_mutable(cls) -> frozenset[str]:
        """Settings a resumed run may change without breaking the run's definition."""
        return frozenset(name for name, (_, meta) in cls.declared().items() if meta.resume)


def load_preset(name: str) -> dict[str, Any]:
    """The values of pretraining preset ``name`` (unknown names list the shipped ones)."""
    return PretrainSettings.preset_values(name)


def preset_names() -> list[str]:
    """Names of the shipped pretraining presets (``cstp_cli/presets/*.toml``)."""
    return PretrainSettings.preset_names()


def build_config(
    *,
    data_given: bool,
    preset: str | None = None,
    config_file: str | Path | None = None,
    flags: Mapping[str, Any] | None = None,
) -> PretrainSettings:
    """The effective settings: defaults < preset < config file < ``flags`` (non-None values).

    ``flags`` are keyed by setting name (``contrastive``/``pretext``/``augment`` included, or
    an ``objective`` table) and ``sets`` is the parsed ``--set`` table. The preset is
    ``preset``, else the config file's ``preset = "..."``, else :data:`BARE_PRESET` when no
    DATA is given.
    """
    file_preset = read_toml(config_file).get("preset") if config_file else None
    chosen = preset or file_preset or (None if data_given else BARE_PRESET)
    values = PretrainSettings.flags_to_values(flags or {})
    settings = PretrainSettings.layered(preset=chosen, config=config_file, flags=values)
    settings.preset = chosen
    return settings
