"""Every built-in backbone: registration, output shapes, widths, dynamic T (METHOD §5)."""

import time

import pytest
import torch

from cstp_cli.api import BackboneSpec
from cstp_plugins.backbones import SPECS, register_backbones

NAMES = ["r21d", "c3d", "r3d18", "r2plus1d18", "s3d", "cnn4", "cnn4t"]
BY_NAME = {spec.name: spec for spec in SPECS}


def test_hook_registers_the_seven_backbones():
    seen = []
    register_backbones(register=seen.append)
    assert [s.name for s in seen] == NAMES and all(isinstance(s, BackboneSpec) for s in seen)


@pytest.mark.parametrize("name", NAMES)
def test_registry_builds_each_backbone_by_name(name):
    from cstp_cli.plugins import get_registry

    spec = get_registry().backbone(name)
    model = spec.build(width="tiny")
    assert hasattr(model, "features") and model.feature_dim > 0


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("frames,size", [(8, 32), (16, 64), (8, 112)])
def test_tiny_output_is_batch_by_feature_dim(name, frames, size):
    model = BY_NAME[name].build(width="tiny").eval()
    with torch.no_grad():
        y = model(torch.randn(2, 3, frames, size, size))
    assert y.shape == (2, model.feature_dim) and torch.isfinite(y).all()


@pytest.mark.parametrize("name", NAMES)
def test_forward_is_the_global_mean_of_features(name):
    model = BY_NAME[name].build(width="tiny").eval()
    x = torch.randn(2, 3, 8, 48, 40)
    with torch.no_grad():
        assert torch.allclose(model(x), model.features(x).mean(dim=(2, 3, 4)), atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_min_frames_is_the_shortest_clip_accepted(name):
    spec = BY_NAME[name]
    model = spec.build(width="tiny").eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, spec.min_frames, 32, 32)).shape[0] == 1
        if spec.min_frames > 1:
            with pytest.raises(RuntimeError):
                model(torch.randn(1, 3, spec.min_frames - 1, 32, 32))


@pytest.mark.parametrize("name", NAMES)
def test_tiny_forward_is_fast_on_cpu(name):
    model = BY_NAME[name].build(width="tiny").eval()
    x = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        model(x)
        start = time.perf_counter()
        model(x)
    assert time.perf_counter() - start < 0.1


@pytest.mark.parametrize("name", NAMES)
def test_tiny_backward_reaches_every_parameter(name):
    model = BY_NAME[name].build(width="tiny").train()
    model(torch.randn(2, 3, 8, 32, 32)).square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("name", NAMES)
def test_full_width_forward_at_16x112(name):
    spec = BY_NAME[name]
    model = spec.build(width="full").eval()
    with torch.no_grad():
        y = model(torch.randn(1, 3, 16, 112, 112))
    assert y.shape == (1, spec.feature_dim) and model.feature_dim == spec.feature_dim


def test_unknown_width_is_refused_with_the_backbone_name():
    with pytest.raises(ValueError, match="r21d"):
        BY_NAME["r21d"].build(width="huge")


@pytest.mark.parametrize("name", NAMES)
def test_channels_last_3d_gives_the_same_output(name):
    model = BY_NAME[name].build(width="tiny").eval()
    x = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        ref = model(x)
        out = model.to(memory_format=torch.channels_last_3d)(x.to(memory_format=torch.channels_last_3d))
    assert torch.allclose(ref, out, atol=1e-5)


def test_backbone_without_features_cannot_be_built():
    from cstp_plugins.backbones.common import VideoEncoder

    class NoFeatures(VideoEncoder):
        feature_dim = 4

    with pytest.raises(TypeError, match="features"):
        NoFeatures()
