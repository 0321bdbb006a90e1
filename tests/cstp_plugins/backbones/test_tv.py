"""torchvision backbones (METHOD §5): r3d18, r2plus1d18, s3d without classifiers."""

from torchvision.models import video as tvv

from cstp_plugins.backbones import tv
from cstp_plugins.backbones.common import count_parameters


def _without_classifier(net, head):
    return count_parameters(net) - count_parameters(head)


def test_r3d18_has_torchvision_parameters_minus_fc():
    ref = tvv.r3d_18(weights=None)
    assert count_parameters(tv.build_r3d18("full")) == _without_classifier(ref, ref.fc)


def test_r2plus1d18_has_torchvision_parameters_minus_fc():
    ref = tvv.r2plus1d_18(weights=None)
    assert count_parameters(tv.build_r2plus1d18("full")) == _without_classifier(ref, ref.fc)


def test_s3d_has_torchvision_parameters_minus_classifier():
    ref = tvv.s3d(weights=None)
    assert count_parameters(tv.build_s3d("full")) == _without_classifier(ref, ref.classifier)


def test_full_state_dicts_load_torchvision_trunk_weights():
    ref = tvv.r3d_18(weights=None)
    model = tv.build_r3d18("full")
    trunk = {k: v for k, v in ref.state_dict().items() if not k.startswith("fc.")}
    assert model.load_state_dict(trunk, strict=True)


def test_s3d_tiny_keeps_the_inception_layout():
    model = tv.build_s3d("tiny")
    blocks = [m for m in model.modules() if type(m).__name__ == "SepInceptionBlock3D"]
    assert len(blocks) == 9
    assert model.feature_dim == 128
