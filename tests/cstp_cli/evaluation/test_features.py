"""Clip and video features (METHOD §5, §7): per-clip L2, conv5 pooling, BatchNorm re-estimation."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from cstp_cli.evaluation import features as ft

sys.path.insert(0, str(Path(__file__).parent))
from mem_reader import MemReader  # noqa: E402

torch.set_num_threads(1)


class _Fixed(torch.nn.Module):
    """Feature = mean intensity per clip, repeated in two dims scaled differently."""

    feature_dim = 2

    def forward(self, x):
        m = x.mean(dim=(1, 2, 3, 4))
        return torch.stack([m + 2, 3 * (m + 2)], dim=1)

    def features(self, x):
        return x[:, :2, :, :4, :4]


def _features(reader, videos, **kw):
    enc = ft.torch_encoder(_Fixed(), "cpu")
    return ft.video_features(enc, reader, np.asarray(videos), T=2, stride=1, num_clips=3, size=8, workers=0, **kw)


def test_clip_l2_normalises_before_the_mean():
    reader = MemReader([30, 30], [0, 1])
    on = _features(reader, [0, 1])
    off = _features(reader, [0, 1], clip_l2=False)
    assert np.allclose(np.linalg.norm(on, axis=1), 1.0, atol=1e-5)  # equal directions: norm stays 1
    assert not np.allclose(np.linalg.norm(off, axis=1), 1.0)


def test_conv5_layer_is_max_pooled_and_flattened():
    reader = MemReader([30], [0])
    f = _features(reader, [0], layer="conv5")
    assert f.shape == (1, 2 * 2 * 2 * 2)  # C=2, t=2, 4x4 pooled (1,2,2) to 2x2


def test_reestimate_bn_changes_statistics_not_weights():
    net = torch.nn.Sequential(torch.nn.Conv3d(3, 4, 1), torch.nn.BatchNorm3d(4), torch.nn.AdaptiveAvgPool3d(1), torch.nn.Flatten())
    before = {k: v.clone() for k, v in net.state_dict().items()}
    ft.reestimate_bn(net, MemReader([30, 30], [0, 1]), np.array([0, 1]), device="cpu", T=2, num_clips=2, size=8, workers=0)
    after = net.state_dict()
    assert torch.equal(before["0.weight"], after["0.weight"]) and torch.equal(before["1.weight"], after["1.weight"])
    assert not torch.equal(before["1.running_mean"], after["1.running_mean"])
    assert not net.training
