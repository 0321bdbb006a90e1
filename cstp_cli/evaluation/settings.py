"""Settings of the evaluation commands: every key declared once, with its type, default and help.

:class:`FinetuneSettings` (``cstp finetune``), :class:`LinearSettings` (``cstp linear``),
:class:`RetrievalSettings` (``cstp retrieve``) and :class:`EmbedSettings` (``cstp embed``)
are :class:`~cstp_cli.core.settings.Settings` dataclasses, layered by the one function
:meth:`~cstp_cli.core.settings.Settings.layered`: declared defaults (METHOD §6, §7) < an
evaluation preset (``--preset``; ``cstp_cli/presets/eval/NAME.toml``, named like the
pretraining preset they evaluate, an ``eval-`` prefix accepted) < a ``--config`` TOML file
< command-line flags. Each command reads its own table of a preset or config file
(``[finetune]``, ``[linear]``, ``[retrieve]``, ``[embed]``). The commands' Typer options are
generated from these declarations (:func:`~cstp_cli.core.settings.command`).

This module imports neither torch nor NumPy: the command modules import it at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cstp_cli.core.options import parse_size, parse_splits, positive_problem, size_problem, splits_problem
from cstp_cli.core.settings import Settings, setting
from cstp_cli.errors import UsageError

__all__ = ["PRESET_DIR", "eval_preset_names", "FinetuneSettings", "LinearSettings", "RetrievalSettings", "EmbedSettings"]

#: Evaluation presets live in their own folder so that ``cstp pretrain``'s preset list stays clean.
PRESET_DIR = Path(__file__).resolve().parent.parent / "presets" / "eval"


def eval_preset_names() -> list[str]:
    """Shipped evaluation presets (``cstp_cli/presets/eval/*.toml``)."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


class EvalSettings(Settings):
    """Base of the evaluation settings: the shared preset folder (``eval-`` prefix accepted)."""

    PRESETS = PRESET_DIR

    @classmethod
    def preset_path(cls, name: str) -> Path:
        stem = name[len("eval-"):] if name.startswith("eval-") else name
        path = PRESET_DIR / f"{stem}.toml"
        if not path.is_file():
            raise UsageError(f"unknown evaluation preset {name!r}; presets: {', '.join(eval_preset_names()) or 'none'}")
        return path

    @property
    def frame_size(self) -> tuple[int, int]:
        """``size`` parsed as (W, H)."""
        return parse_size(self.size) if self.size else None  # type: ignore[attr-defined]


@dataclass
class FinetuneSettings(EvalSettings):
    """``cstp finetune``: all layers trained on a labelled dataset (METHOD §6 defaults)."""

    TABLE = "finetune"
    WHAT = "finetune"

    backbone: str = setting("r21d", "Backbone for --init random.")
    width: str = setting("full", "full or tiny, for --init random.", choices=("full", "tiny"))
    split: str = setting("1", "Fold(s), e.g. 1 or 1,2,3 (mean printed).", check=splits_problem)
    epochs: int = setting(100, "Epochs.", minimum=1)
    batch_size: int = setting(60, "Clips per step.", minimum=1)
    lr: float = setting(0.02, "SGD learning rate.", check=positive_problem)
    workers: int = setting(2, "DataLoader workers.", minimum=0)
    device: str = setting("auto", "auto, cpu, cuda or cuda:N.")
    frames: int | None = setting(None, "Clip frames T; none: the checkpoint's (16 for --init random).", minimum=1)
    clip_size: int | None = setting(None, "Clip side S; none: the checkpoint's (112 for --init random).", minimum=8)
    clip_pace: int = setting(4, "Frame step of train and test clips.", minimum=1)
    test_clips: int = setting(10, "Uniformly spaced test clips per video.", minimum=1)
    head: str = setting("code", "code (L2→BN→Linear) or fc.", choices=("code", "fc"))
    augment: str = setting("", "pace,rot: randomise pace/rotation in training (empty or none: neither).")
    seed: int = setting(0, "Random seed.")
    size: str | None = setting(None, "Cache frame size WxH when DATA is a dataset folder (171x128 when none); a cache file is read at its own size.", check=size_problem)
    out: str | None = setting(None, "Output folder; none: runs/finetune-<ckpt>.")
    weight_decay: float = setting(5e-4, "SGD weight decay.", flag=False, minimum=0.0)
    plateau_patience: int = setting(10, "Epochs without a better validation loss before lr ×0.1.", flag=False, minimum=0)

    @property
    def folds(self) -> list[int]:
        """``split`` as fold numbers."""
        return parse_splits(self.split)

    @property
    def augment_list(self) -> list[str]:
        """``augment`` as names (``none`` and empty items dropped)."""
        return [a.strip() for a in str(self.augment or "").split(",") if a.strip() and a.strip() != "none"]


@dataclass
class LinearSettings(FinetuneSettings):
    """``cstp linear``: the linear probe — the fine-tune recipe with the backbone frozen (METHOD §6)."""

    TABLE = "linear"
    WHAT = "linear"

    out: str | None = setting(None, "Output folder; none: runs/linear-<ckpt>.")


@dataclass
class RetrievalSettings(EvalSettings):
    """``cstp retrieve``: nearest-neighbour video retrieval (METHOD §7; VCOP's protocol)."""

    TABLE = "retrieve"
    WHAT = "retrieve"

    backbone: str = setting("r21d", "Backbone for --init random.")
    width: str = setting("full", "full or tiny, for --init random.", choices=("full", "tiny"))
    split: int = setting(1, "Fold: gallery = its train, queries = its test.", minimum=1)
    stride: int = setting(1, "Frame step s inside a clip.", minimum=1)
    clips: int = setting(10, "Clips per video.", minimum=1)
    layer: str = setting("pooled", "pooled or conv5 (max-pooled (1,2,2), flattened).", choices=("pooled", "conv5"))
    clip_l2: bool = setting(True, "L2-normalise each clip's feature.")
    bn_reestimate: bool | None = setting(None, "Re-estimate BN statistics on gallery clips; none: on for --init random only.")
    frames: int | None = setting(None, "Clip frames T; none: the encoder's.", minimum=1)
    clip_size: int | None = setting(None, "Clip side S; none: the encoder's.", minimum=8)
    batch_size: int = setting(4, "Videos per batch (× clips).", minimum=1)
    workers: int = setting(2, "DataLoader workers.", minimum=0)
    device: str = setting("auto", "auto, cpu, cuda or cuda:N.")
    size: str | None = setting(None, "Cache frame size WxH when DATA is a dataset folder (the protocol's 171x128 when none); a cache file is read at its own size.", check=size_problem)
    seed: int = setting(0, "Seed of --init random weights.")
    montage: int = setting(6, "Queries shown in the PNG (0: none).", minimum=0)
    out: str | None = setting(None, "Output folder; none: runs/retrieve-<ckpt>.")


@dataclass
class EmbedSettings(EvalSettings):
    """``cstp embed``: one feature per video with the retrieval protocol's clips (METHOD §7)."""

    PRESETS = None
    TABLE = "embed"
    WHAT = "embed"

    split: int = setting(1, "Fold for --which train/test.", minimum=1)
    which: str = setting("all", "all, train or test videos.", choices=("all", "train", "test"))
    stride: int = setting(1, "Frame step s inside a clip.", minimum=1)
    clips: int = setting(10, "Clips per video.", minimum=1)
    layer: str = setting("pooled", "pooled or conv5 (PyTorch only).", choices=("pooled", "conv5"))
    clip_l2: bool = setting(True, "L2-normalise each clip's feature.")
    frames: int | None = setting(None, "Clip frames T; none: the encoder's.", minimum=1)
    clip_size: int | None = setting(None, "Clip side S; none: the encoder's.", minimum=8)
    batch_size: int = setting(4, "Videos per batch (× clips).", minimum=1)
    workers: int = setting(2, "DataLoader workers.", minimum=0)
    device: str = setting("auto", "auto, cpu, cuda or cuda:N.")
    size: str | None = setting(None, "Cache frame size WxH when DATA is a dataset folder (171x128 when none); a cache file is read at its own size.", check=size_problem)
    backbone: str = setting("r21d", "Backbone of the encoder (recorded).", flag=False)
    width: str = setting("full", "Width of the encoder (recorded).", flag=False)
