"""Shared pieces of the built-in backbones (METHOD §5).

Every backbone module derives from :class:`VideoEncoder`: ``features(x)`` returns the last
conv map ``float[B, C, t, h, w]`` and ``forward(x)`` its global average ``float[B, C]``
(adaptive, so any T >= the backbone's ``min_frames`` and any H, W >= 32 work).
"""

from __future__ import annotations

import abc
from typing import Mapping, Sequence

import torch
from torch import nn

WIDTHS = ("full", "tiny")


def check_width(name: str, width: str) -> str:
    """Return ``width`` if it is ``"full"`` or ``"tiny"``, else raise ``ValueError`` naming the backbone."""
    if width not in WIDTHS:
        raise ValueError(f"backbone {name} has widths {', '.join(WIDTHS)}, not {width!r}")
    return width


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (trainable or not; BN buffers excluded)."""
    return sum(p.numel() for p in module.parameters())


def init_conv_bn(module: nn.Module) -> None:
    """He (fan-out) initialisation of every Conv3d, BN weight 1 and bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm3d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    """3×3×3 conv (padding 1, bias) → BN → ReLU; keeps T, H, W."""
    return nn.Sequential(nn.Conv3d(cin, cout, 3, padding=1), nn.BatchNorm3d(cout), nn.ReLU())


def plain_conv_stack(channels: Sequence[int], pools: Mapping[int, tuple[int, int, int]]) -> nn.Sequential:
    """``conv_bn_relu`` blocks from 3 input channels through ``channels``, with a max pool
    (kernel = stride) after block ``i`` for each ``i`` in ``pools`` (C3D, METHOD §5; cnn4)."""
    layers: list[nn.Module] = []
    cin = 3
    for i, cout in enumerate(channels):
        layers.append(conv_bn_relu(cin, cout))
        if i in pools:
            layers.append(nn.MaxPool3d(pools[i], stride=pools[i]))
        cin = cout
    return nn.Sequential(*layers)


class VideoEncoder(nn.Module, abc.ABC):
    """Base class: ``forward(x float[B, 3, T, H, W]) -> float[B, D]`` = global mean of ``features(x)``.

    Subclasses implement ``features`` and set ``feature_dim`` (D of the built width).
    """

    feature_dim: int = 0

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool3d(1)

    @abc.abstractmethod
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last conv map ``float[B, C, t, h, w]`` before pooling."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Clip ``float[B, 3, T, H, W]`` → globally pooled feature ``float[B, D]``."""
        return torch.flatten(self.pool(self.features(x)), 1)


class PlainConvEncoder(VideoEncoder):
    """A :func:`plain_conv_stack` then the global average (C3D, cnn4).

    Subclasses set ``arch`` (the backbone's name), ``full_channels``, ``pools`` and
    ``tiny_divisor`` (the tiny width divides every channel count by it).
    """

    arch: str = ""
    full_channels: tuple[int, ...] = ()
    pools: Mapping[int, tuple[int, int, int]] = {}
    tiny_divisor: int = 1

    def __init__(self, width: str = "full") -> None:
        super().__init__()
        div = 1 if check_width(self.arch, width) == "full" else self.tiny_divisor
        channels = [c // div for c in self.full_channels]
        self.body = plain_conv_stack(channels, self.pools)
        self.feature_dim = channels[-1]
        init_conv_bn(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last conv map ``float[B, C, t, h, w]`` (t, h, w shrunk by the pools)."""
        return self.body(x)
