"""Component specs: what a plugin registers through :mod:`cstp_cli.hookspecs`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Mapping

from cstp_cli.api.options import Option

if TYPE_CHECKING:  # torch is imported only where a model is built (`cstp --help` needs none)
    import torch.nn as nn

    from cstp_cli.api.schemes import ContrastiveScheme
    from cstp_cli.api.tasks import PretextTask

__all__ = ["BackboneSpec", "SchemeSpec", "PretextSpec"]


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
    build: Callable[..., nn.Module]
    feature_dim: int
    description: str = ""
    dynamic_time: bool = True
    min_frames: int = 1


@dataclass(frozen=True)
class SchemeSpec:
    """A contrastive scheme: ``build(feature_dim, **options) -> ContrastiveScheme``.

    ``options`` are declared here and parsed by the engine: ``build`` receives every
    declared option as a typed keyword argument.
    """

    name: str
    build: Callable[..., ContrastiveScheme]
    options: Mapping[str, Option] = field(default_factory=dict)
    description: str = ""


@dataclass(frozen=True)
class PretextSpec:
    """A pretext task: ``build(**options) -> PretextTask``; weight λ defaults to ``default_weight``.

    ``options`` are declared here and parsed by the engine: ``build`` receives every
    declared option as a typed keyword argument (a ``list[int]`` option as a list, a
    ``bool`` as a bool) and only checks ranges.
    """

    name: str
    build: Callable[..., PretextTask]
    default_weight: float = 1.0
    options: Mapping[str, Option] = field(default_factory=dict)
    description: str = ""
