"""CNN-4, the plain four-layer 3D CNN of issue 4's reference study, and cnn4t (time kept): size, layers, map shape."""

import torch

from cstp_plugins.backbones import cnn4
from cstp_plugins.backbones.common import count_parameters


def test_tiny_width_has_0_29_million_parameters():
    assert count_parameters(cnn4.build("tiny")) == 292_320


def test_four_3x3x3_convolutions_with_quarter_channels_when_tiny():
    convs = [m for m in cnn4.build("tiny").modules() if isinstance(m, torch.nn.Conv3d)]
    assert [m.out_channels for m in convs] == [16, 32, 64, 128]
    assert all(m.kernel_size == (3, 3, 3) for m in convs)


def test_pools_are_1x2x2_then_two_2x2x2():
    pools = [m.kernel_size for m in cnn4.build("tiny").modules() if isinstance(m, torch.nn.MaxPool3d)]
    assert pools == [(1, 2, 2), (2, 2, 2), (2, 2, 2)]


def test_tiny_conv4_map_shape_for_an_8x32_clip():
    model = cnn4.build("tiny").eval()
    with torch.no_grad():
        assert model.features(torch.randn(1, 3, 8, 32, 32)).shape == (1, 128, 2, 4, 4)


def test_cnn4t_has_cnn4s_parameters_and_only_spatial_pools():
    model = cnn4.build_time_kept("tiny")
    assert count_parameters(model) == 292_320
    assert [m.kernel_size for m in model.modules() if isinstance(m, torch.nn.MaxPool3d)] == [(1, 2, 2)] * 3


def test_cnn4t_conv4_map_keeps_every_frame_of_an_8x32_clip():
    model = cnn4.build_time_kept("tiny").eval()
    with torch.no_grad():
        assert model.features(torch.randn(1, 3, 8, 32, 32)).shape == (1, 128, 8, 4, 4)
