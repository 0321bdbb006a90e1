"""CNN-4: a plain four-layer 3D CNN for CPU demonstrations and small-scale studies.

Not a paper backbone (METHOD §5 names r21d, c3d, r3d18, r2plus1d18, s3d). It is the small
network of issue 4's reference study ("4-layer 0.3 M-parameter 3D CNN, 8-frame 32×32 clips"):
shallow enough that its features stay informative at random init and that a few hundred SGD
steps on two CPU cores move them. Four 3×3×3 convolutions (padding 1, with bias), each
followed by BN and ReLU; max pools (1, 2, 2) after conv1 and (2, 2, 2) after conv2 and conv3;
global average pool (``cnn4t``: pools (1, 2, 2) only, the time axis kept). Tiny width:
channels 16, 32, 64, 128 (292,320 parameters, D = 128); full width: 64, 128, 256, 512 (4.65 M, D = 512). Needs T >= 4 (two temporal halvings).
"""

from __future__ import annotations

from .common import PlainConvEncoder

FULL_CHANNELS = (64, 128, 256, 512)
#: After which conv (index into the 4) a pool follows, and its kernel = stride.
POOLS = {0: (1, 2, 2), 1: (2, 2, 2), 2: (2, 2, 2)}
MIN_FRAMES = 4


class CNN4(PlainConvEncoder):
    """Four conv-BN-ReLU blocks: ``float[B, 3, T, H, W] -> float[B, 512]`` (tiny: 128).

    ``features(x)`` is the conv4 map ``float[B, C, T//4, H//8, W//8]`` (128×2×4×4 for a tiny 8×32² clip).
    """

    arch = "cnn4"
    full_channels = FULL_CHANNELS
    pools = POOLS
    tiny_divisor = 4


#: cnn4t's pools: (1, 2, 2) after conv1-3, the time axis kept to the last map.
TIME_KEPT_POOLS = {0: (1, 2, 2), 1: (1, 2, 2), 2: (1, 2, 2)}


class CNN4T(CNN4):
    """cnn4 keeping the time axis (pools (1, 2, 2) only): ``features(x)`` is
    ``float[B, C, T, H//8, W//8]`` (128×8×4×4 for a tiny 8×32² clip), so a STOR head can read
    time shifts of single frames (``stor.fusion=profile``); about 1.6× cnn4's compute
    (conv3 and conv4 see T instead of T/2 and T/4 frames). Any T >= 1."""

    arch = "cnn4t"
    pools = TIME_KEPT_POOLS


def build(width: str = "full") -> CNN4:
    """Build CNN-4 at ``width`` ``"full"`` or ``"tiny"``."""
    return CNN4(width)


def build_time_kept(width: str = "full") -> CNN4T:
    """Build cnn4t (CNN-4 keeping time) at ``width`` ``"full"`` or ``"tiny"``."""
    return CNN4T(width)
