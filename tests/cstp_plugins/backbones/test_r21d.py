"""R(2+1)D-10 (METHOD §5): structure, parameter count, conv5 shape."""

import torch

from cstp_plugins.backbones import r21d
from cstp_plugins.backbones.common import count_parameters


def test_mid_channels_follow_the_formula():
    # floor(t·k²·Cin·Cout / (k²·Cin + t·Cout)): stem 3→64 (3,7,7) and a 64→64 3×3×3 conv
    assert r21d.mid_channels(3, 7, 3, 64) == 83
    assert r21d.mid_channels(3, 3, 64, 64) == 144
    assert r21d.mid_channels(1, 1, 256, 512) == 170


def test_full_width_has_14_37_million_parameters():
    model = r21d.build("full")
    assert abs(count_parameters(model) - 14.37e6) <= 0.005e6
    assert count_parameters(model) == 14_365_303


def test_conv_biases_are_off():
    model = r21d.build("tiny")
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv3d)]
    assert convs and all(m.bias is None for m in convs)


def test_stem_has_no_max_pool_and_downsamples_space_only():
    model = r21d.build("tiny")
    assert not any(isinstance(m, torch.nn.MaxPool3d) for m in model.modules())
    out = model.stem(torch.randn(1, 3, 16, 112, 112))
    assert out.shape == (1, 8, 16, 56, 56)


def test_conv3_to_conv5_shortcuts_are_factorised_1x1x1_with_bn():
    model = r21d.build("tiny")
    assert isinstance(model.conv2.shortcut, torch.nn.Identity)
    for block in (model.conv3, model.conv4, model.conv5):
        conv, bn = block.shortcut
        assert isinstance(conv, r21d.Conv2Plus1d) and isinstance(bn, torch.nn.BatchNorm3d)
        assert conv[0].kernel_size == (1, 1, 1) and conv[0].stride == (1, 2, 2)
        assert conv[3].kernel_size == (1, 1, 1) and conv[3].stride == (2, 1, 1)


def test_tiny_conv5_map_has_the_full_shape_pattern():
    model = r21d.build("tiny").eval()
    with torch.no_grad():
        fmap = model.features(torch.randn(2, 3, 16, 112, 112))
    assert fmap.shape == (2, 64, 2, 7, 7)


def test_full_width_conv5_is_512x2x7x7_at_16x112():
    model = r21d.build("full").eval()
    with torch.no_grad():
        fmap = model.features(torch.randn(1, 3, 16, 112, 112))
    assert fmap.shape == (1, 512, 2, 7, 7)
