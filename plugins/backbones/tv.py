"""torchvision video backbones without their classifiers (METHOD §5): r3d18, r2plus1d18, s3d.

Full widths are torchvision's own definitions (``torchvision.models.video``, ``weights=None``)
with the ``fc`` / classifier dropped and the pooling replaced by a global adaptive average
(S3D's fixed ``AvgPool3d((2, 7, 7))`` would not fit 112-px clips).

Tiny widths are assembled from torchvision's own building blocks (``BasicBlock``,
``Conv3DSimple``, ``Conv2Plus1D``, ``TemporalSeparableConv``, ``SepInceptionBlock3D``) with
every channel count divided by 8; the ResNets keep one block per stage instead of two
(torchvision's ``VideoResNet`` hard-codes 64-channel stems and widths, so the tiny stems are
written here with the same layer pattern). Module names (``stem``, ``layer1``…``layer4``,
``features``) are the same at both widths.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn
from torchvision.models import video as tvv
from torchvision.models.video.resnet import BasicBlock, Conv2Plus1D, Conv3DSimple
from torchvision.models.video.s3d import SepInceptionBlock3D, TemporalSeparableConv
from torchvision.ops.misc import Conv3dNormActivation

from .common import VideoEncoder, check_width, init_conv_bn

TINY_DIV = 8
RESNET_WIDTHS = (64, 128, 256, 512)


# ----------------------------------------------------------------------------- ResNets


class VideoResNetEncoder(VideoEncoder):
    """torchvision VideoResNet trunk: ``float[B, 3, T, H, W] -> float[B, C4]`` (stem, layer1–4)."""

    def __init__(self, stem: nn.Module, layers: list[nn.Module], feature_dim: int) -> None:
        super().__init__()
        self.stem = stem
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.feature_dim = feature_dim

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """layer4 map ``float[B, C4, ceil(T/8), ceil(H/16), ceil(W/16)]`` (512×2×7×7 at 16×112²)."""
        x = self.stem(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def _make_layer(conv_builder: type, cin: int, cout: int, blocks: int, stride: int) -> nn.Sequential:
    """A stage of ``blocks`` torchvision ``BasicBlock``s (1×1×1 conv + BN shortcut when shapes change)."""
    downsample = None
    if stride != 1 or cin != cout:
        downsample = nn.Sequential(
            nn.Conv3d(cin, cout, 1, stride=conv_builder.get_downsample_stride(stride), bias=False),
            nn.BatchNorm3d(cout),
        )
    layers = [BasicBlock(cin, cout, conv_builder, stride, downsample)]
    layers += [BasicBlock(cout, cout, conv_builder) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


def _tiny_stem(factorised: bool, cout: int) -> nn.Sequential:
    """torchvision's ``BasicStem`` (3×7×7) or ``R2Plus1dStem`` (1×7×7 → 3×1×1) at ``cout`` channels."""
    if not factorised:
        return nn.Sequential(
            nn.Conv3d(3, cout, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False),
            nn.BatchNorm3d(cout),
            nn.ReLU(inplace=True),
        )
    mid = 45 // TINY_DIV + 1  # torchvision's 45 mid-channels, scaled
    return nn.Sequential(
        nn.Conv3d(3, mid, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False),
        nn.BatchNorm3d(mid),
        nn.ReLU(inplace=True),
        nn.Conv3d(mid, cout, (3, 1, 1), padding=(1, 0, 0), bias=False),
        nn.BatchNorm3d(cout),
        nn.ReLU(inplace=True),
    )


def _resnet(name: str, width: str, factorised: bool) -> VideoResNetEncoder:
    if check_width(name, width) == "full":
        net = (tvv.r2plus1d_18 if factorised else tvv.r3d_18)(weights=None)
        layers = [net.layer1, net.layer2, net.layer3, net.layer4]
        return VideoResNetEncoder(net.stem, layers, RESNET_WIDTHS[-1])
    widths = [c // TINY_DIV for c in RESNET_WIDTHS]
    builder = Conv2Plus1D if factorised else Conv3DSimple
    cins = [widths[0]] + widths[:-1]
    layers = [_make_layer(builder, cin, cout, 1, 1 if i == 0 else 2) for i, (cin, cout) in enumerate(zip(cins, widths))]
    model = VideoResNetEncoder(_tiny_stem(factorised, widths[0]), layers, widths[-1])
    init_conv_bn(model)
    return model


def build_r3d18(width: str = "full") -> VideoResNetEncoder:
    """torchvision R3D-18 trunk (33.17 M parameters at full width, D = 512; tiny D = 64)."""
    return _resnet("r3d18", width, factorised=False)


def build_r2plus1d18(width: str = "full") -> VideoResNetEncoder:
    """torchvision R(2+1)D-18 trunk (31.30 M parameters at full width, D = 512; tiny D = 64)."""
    return _resnet("r2plus1d18", width, factorised=True)


# ----------------------------------------------------------------------------- S3D

#: S3D's inception blocks (in, b0_out, b1_mid, b1_out, b2_mid, b2_out, b3_out), and where
#: max pools sit between them, as in torchvision's S3D definition.
S3D_INCEPTION = (
    (192, 64, 96, 128, 16, 32, 32),
    (256, 128, 128, 192, 32, 96, 64),
    "pool3",
    (480, 192, 96, 208, 16, 48, 64),
    (512, 160, 112, 224, 24, 64, 64),
    (512, 128, 128, 256, 24, 64, 64),
    (512, 112, 144, 288, 32, 64, 64),
    (528, 256, 160, 320, 32, 128, 128),
    "pool2",
    (832, 256, 160, 320, 32, 128, 128),
    (832, 384, 192, 384, 48, 128, 128),
)
S3D_MIN_FRAMES = 5


class S3DEncoder(VideoEncoder):
    """S3D trunk: ``float[B, 3, T, H, W] -> float[B, 1024]`` (tiny: 128); needs T >= 5."""

    def __init__(self, features: nn.Sequential, feature_dim: int) -> None:
        super().__init__()
        self.features_ = features
        self.feature_dim = feature_dim

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Mixed_5c map ``float[B, C, t, h, w]`` (1024×2×3×3 at 16×112²)."""
        return self.features_(x)


def _tiny_s3d_features() -> nn.Sequential:
    norm = partial(nn.BatchNorm3d, eps=0.001, momentum=0.001)
    d = TINY_DIV
    layers: list[nn.Module] = [
        TemporalSeparableConv(3, 64 // d, 7, 2, 3, norm),
        nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
        Conv3dNormActivation(64 // d, 64 // d, kernel_size=1, stride=1, norm_layer=norm),
        TemporalSeparableConv(64 // d, 192 // d, 3, 1, 1, norm),
        nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
    ]
    for entry in S3D_INCEPTION:
        if entry == "pool3":
            layers.append(nn.MaxPool3d((3, 3, 3), stride=(2, 2, 2), padding=(1, 1, 1)))
        elif entry == "pool2":
            layers.append(nn.MaxPool3d((2, 2, 2), stride=(2, 2, 2)))
        else:
            layers.append(SepInceptionBlock3D(*[c // d for c in entry], norm))
    return nn.Sequential(*layers)


def build_s3d(width: str = "full") -> S3DEncoder:
    """torchvision S3D trunk with adaptive global pooling (7.91 M parameters full, D = 1024)."""
    if check_width("s3d", width) == "full":
        return S3DEncoder(tvv.s3d(weights=None).features, 1024)
    model = S3DEncoder(_tiny_s3d_features(), 1024 // TINY_DIV)
    init_conv_bn(model)
    return model
