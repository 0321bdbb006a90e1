"""C3D-BN (METHOD §5): parameter count, pools, conv5 shape."""

import torch

from cstp_plugins.backbones import c3d
from cstp_plugins.backbones.common import count_parameters


def test_full_width_has_27_66_million_parameters():
    assert abs(count_parameters(c3d.build("full")) - 27.66e6) <= 0.005e6


def test_eight_convolutions_with_the_method_channels():
    model = c3d.build("full")
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv3d)]
    assert [m.out_channels for m in convs] == [64, 128, 256, 256, 512, 512, 512, 512]
    assert all(m.kernel_size == (3, 3, 3) for m in convs)


def test_pools_are_1x2x2_then_three_2x2x2():
    pools = [m.kernel_size for m in c3d.build("tiny").modules() if isinstance(m, torch.nn.MaxPool3d)]
    assert pools == [(1, 2, 2), (2, 2, 2), (2, 2, 2), (2, 2, 2)]


def test_tiny_conv5_map_shape_at_16x112():
    model = c3d.build("tiny").eval()
    with torch.no_grad():
        assert model.features(torch.randn(1, 3, 16, 112, 112)).shape == (1, 64, 2, 7, 7)


def test_state_dict_keys_keep_the_layout_of_saved_checkpoints():
    keys = list(c3d.build("tiny").state_dict())
    assert keys[:2] == ["body.0.0.weight", "body.0.0.bias"] and "body.2.0.weight" in keys and len(keys) == 56
