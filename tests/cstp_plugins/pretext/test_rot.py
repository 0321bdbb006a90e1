"""The built-in ``rot`` plugin: plan step, device transform, head and loss (METHOD §2.4, §3)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from cstp_cli.api import PairPlan, collate_plans
from cstp_plugins.pretext import rot as rot_mod
from cstp_plugins.pretext.rot import RotTask

torch.set_num_threads(1)


def independent_ce(logits, target):
    log_p = logits - logits.exp().sum(1, keepdim=True).log()
    return -log_p[torch.arange(len(target)), target].mean()


def plans(count: int, rot_first: bool | None = None, pair: str = "independent") -> list[PairPlan]:
    task, out = RotTask(pair=pair), []
    for i in range(count):
        plan = PairPlan(video=i, num_frames=8, frame_wh=(8, 8), T=2)
        plan.idx = np.zeros((2, 2), np.int64)
        task.plan_step("per_clip", plan, np.random.default_rng(i))
        if rot_first is not None:
            plan.extras["sampling.rot_first"] = np.array([rot_first, rot_first])
        out.append(plan)
    return out


def test_registers_rot_with_weight_one():
    specs = []
    rot_mod.register_pretext_tasks(register=specs.append)
    (spec,) = specs
    assert spec.name == "rot" and spec.default_weight == 1.0
    assert {k: o.default for k, o in spec.options.items()} == {"clips": "both", "pair": "independent"}


def test_plan_step_draws_a_quarter_turn_per_clip_as_label():
    ps = plans(400)
    r = np.stack([p.rot90 for p in ps])
    assert all(np.array_equal(p.labels["rot.clips"], p.rot90) for p in ps)
    assert set(r.ravel().tolist()) == {0, 1, 2, 3} and (r[:, 0] != r[:, 1]).any()


def test_pair_same_draws_one_uniform_quarter_turn_for_both_clips():
    r = np.stack([p.rot90 for p in plans(400, pair="same")])
    assert (r[:, 0] == r[:, 1]).all() and set(r[:, 0].tolist()) == {0, 1, 2, 3}
    assert np.bincount(r[:, 0], minlength=4).min() > 70  # uniform: 100 expected per class


def test_unknown_pair_mode_is_refused():
    with pytest.raises(ValueError, match="rot.pair"):
        RotTask(pair="mirror")


def test_device_transform_matches_np_rot90_per_sample_and_clip():
    ps = plans(12)
    batch = collate_plans(ps)
    clips = torch.randn(12, 2, 3, 2, 5, 5)
    out = RotTask().device_transform(clips, batch)
    assert out.shape == clips.shape
    for b, p in enumerate(ps):
        for c in range(2):
            expected = np.rot90(clips[b, c].numpy(), int(p.rot90[c]), axes=(-2, -1))
            assert np.array_equal(out[b, c].numpy(), expected)


def test_device_transform_skips_clips_rotated_before_cropping():
    ps = plans(6, rot_first=True)
    assert any(p.rot90.any() for p in ps)
    clips = torch.randn(6, 2, 3, 2, 4, 4)
    assert torch.equal(RotTask().device_transform(clips, collate_plans(ps)), clips)


def test_head_is_d_to_d_to_four():
    layers = list(RotTask().head(6))
    assert [type(m) for m in layers] == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert (layers[0].in_features, layers[0].out_features, layers[3].out_features) == (6, 6, 4)


@pytest.mark.parametrize("clips", ["both", "first"])
def test_loss_is_cross_entropy_of_each_clip_with_its_rotation(clips):
    torch.manual_seed(0)
    task = RotTask(clips=clips)
    head = task.head(4).eval()
    y1, y2 = torch.randn(5, 4, requires_grad=True), torch.randn(5, 4, requires_grad=True)
    labels = {"rot.clips": torch.tensor([[0, 1], [1, 2], [2, 3], [3, 0], [0, 0]])}
    terms = task.loss(y1, y2, labels, head)
    expected = independent_ce(head(y1), labels["rot.clips"][:, 0])
    if clips == "both":
        expected = expected + independent_ce(head(y2), labels["rot.clips"][:, 1])
    assert set(terms) == {"rot"} and torch.allclose(terms["rot"], expected, atol=1e-6)
    terms["rot"].backward()
    assert y1.grad.abs().sum() > 0
    assert (y2.grad is not None and y2.grad.abs().sum() > 0) == (clips == "both")
