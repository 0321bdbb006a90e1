"""R(2+1)D-10, the default backbone (METHOD §5; the VCOP / PacePred / CSTP variant).

Every 3-D convolution is factorised into a spatial ``(1, k, k)`` convolution to ``M``
channels, BN + ReLU, and a temporal ``(t, 1, 1)`` convolution, with
``M = floor(t·k²·Cin·Cout / (k²·Cin + t·Cout))`` (the parameter count of the full
``t×k×k`` convolution). Conv biases are off.

* stem: (2+1)D conv 3→64, kernel (3, 7, 7), stride (1, 2, 2), padding (1, 3, 3), BN, ReLU —
  with the formula M = floor(3·49·3·64 / (49·3 + 3·64)) = 83; no max-pool;
* conv2–conv5: one residual block each (64, 128, 256, 512 channels); a block is
  (2+1)D 3×3×3 → BN → ReLU → (2+1)D 3×3×3 → BN, plus the shortcut, then ReLU;
* conv3–conv5 downsample by (2, 2, 2) in the block's first (2+1)D conv (spatial stride on the
  spatial conv, temporal stride on the temporal conv) and in a (2+1)D 1×1×1 + BN shortcut.

Full width: 14,365,303 parameters (14.37 M); conv5 at 16×112² is 512×2×7×7; D = 512.
Tiny width: channels /8 (8, 16, 32, 64), D = 64.
"""

from __future__ import annotations

import torch
from torch import nn

from .common import VideoEncoder, check_width, init_conv_bn

WIDTH_CHANNELS = {"full": (64, 128, 256, 512), "tiny": (8, 16, 32, 64)}


def mid_channels(t: int, k: int, cin: int, cout: int) -> int:
    """``floor(t·k²·Cin·Cout / (k²·Cin + t·Cout))`` (METHOD §5)."""
    return (t * k * k * cin * cout) // (k * k * cin + t * cout)


class Conv2Plus1d(nn.Sequential):
    """(2+1)D convolution ``float[B, Cin, T, H, W] -> float[B, Cout, T', H', W']``.

    Spatial conv ``(1, k, k)`` (stride ``(1, s, s)``, padding ``(0, p, p)``) → BN → ReLU →
    temporal conv ``(t, 1, 1)`` (stride ``(st, 1, 1)``, padding ``(pt, 0, 0)``), no biases.
    """

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: tuple[int, int],
        stride: tuple[int, int] = (1, 1),
        padding: tuple[int, int] | None = None,
    ) -> None:
        t, k = kernel
        st, ss = stride
        pt, ps = padding if padding is not None else (t // 2, k // 2)
        mid = mid_channels(t, k, cin, cout)
        super().__init__(
            nn.Conv3d(cin, mid, (1, k, k), stride=(1, ss, ss), padding=(0, ps, ps), bias=False),
            nn.BatchNorm3d(mid),
            nn.ReLU(),
            nn.Conv3d(mid, cout, (t, 1, 1), stride=(st, 1, 1), padding=(pt, 0, 0), bias=False),
        )
        self.mid = mid


class ResBlock(nn.Module):
    """One residual block of R(2+1)D-10; ``stride`` 2 halves T, H and W."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = Conv2Plus1d(cin, cout, (3, 3), (stride, stride))
        self.bn1 = nn.BatchNorm3d(cout)
        self.relu = nn.ReLU()
        self.conv2 = Conv2Plus1d(cout, cout, (3, 3))
        self.bn2 = nn.BatchNorm3d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                Conv2Plus1d(cin, cout, (1, 1), (stride, stride), padding=(0, 0)),
                nn.BatchNorm3d(cout),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class R21D(VideoEncoder):
    """R(2+1)D-10: ``float[B, 3, T, H, W] -> float[B, 512]`` (tiny: 64); conv5 map via ``features``."""

    def __init__(self, width: str = "full") -> None:
        super().__init__()
        c2, c3, c4, c5 = WIDTH_CHANNELS[check_width("r21d", width)]
        self.stem = nn.Sequential(
            Conv2Plus1d(3, c2, (3, 7), (1, 2), padding=(1, 3)),
            nn.BatchNorm3d(c2),
            nn.ReLU(),
        )
        self.conv2 = ResBlock(c2, c2, 1)
        self.conv3 = ResBlock(c2, c3, 2)
        self.conv4 = ResBlock(c3, c4, 2)
        self.conv5 = ResBlock(c4, c5, 2)
        self.feature_dim = c5
        init_conv_bn(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """conv5 map ``float[B, C5, ceil(T/8), ceil(H/16), ceil(W/16)]`` (512×2×7×7 at 16×112²)."""
        x = self.stem(x)
        return self.conv5(self.conv4(self.conv3(self.conv2(x))))


def build(width: str = "full") -> R21D:
    """Build R(2+1)D-10 at ``width`` ``"full"`` or ``"tiny"``."""
    return R21D(width)
