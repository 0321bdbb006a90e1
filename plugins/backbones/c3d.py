"""C3D with batch norm, without fc6/fc7 (METHOD §5).

Eight 3×3×3 convolutions (padding 1, with bias) each followed by BN and ReLU, channels
64, 128, 256, 256, 512, 512, 512, 512; max pools (1, 2, 2) after conv1 and (2, 2, 2) after
conv2, conv3b and conv4b; global average pool. Full width: 27,661,440 parameters
(27.66 M); conv5 at 16×112² is 512×2×7×7; D = 512. Needs T >= 8 (three temporal halvings)
and H, W >= 16. Tiny width: channels /8, D = 64.
"""

from __future__ import annotations

from .common import PlainConvEncoder

FULL_CHANNELS = (64, 128, 256, 256, 512, 512, 512, 512)
#: After which conv (index into the 8) a pool follows, and its kernel = stride.
POOLS = {0: (1, 2, 2), 1: (2, 2, 2), 3: (2, 2, 2), 5: (2, 2, 2)}
MIN_FRAMES = 8


class C3D(PlainConvEncoder):
    """C3D-BN: ``float[B, 3, T, H, W] -> float[B, 512]`` (tiny: 64).

    ``features(x)`` is the conv5b map ``float[B, C, T//8, H//16, W//16]`` (512×2×7×7 at 16×112²).
    """

    arch = "c3d"
    full_channels = FULL_CHANNELS
    pools = POOLS
    tiny_divisor = 8


def build(width: str = "full") -> C3D:
    """Build C3D-BN at ``width`` ``"full"`` or ``"tiny"``."""
    return C3D(width)
