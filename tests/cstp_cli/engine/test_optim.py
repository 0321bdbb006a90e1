"""Learning-rate schedule and gradient clipping (METHOD §6)."""

from __future__ import annotations

import pytest
import torch

from cstp_cli.engine.optim import CosineSchedule, clip_gradients, cosine_lr, make_sgd, trainable


def test_cosine_runs_from_base_to_floor():
    assert cosine_lr(0, 100, 0.03, 1e-5) == pytest.approx(0.03)
    assert cosine_lr(50, 100, 0.03, 1e-5) == pytest.approx((0.03 + 1e-5) / 2)
    assert cosine_lr(100, 100, 0.03, 1e-5) == pytest.approx(1e-5)


def test_warmup_rises_linearly_then_cosine():
    assert [cosine_lr(s, 20, 1.0, 0.0, warmup=4) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert cosine_lr(4, 20, 1.0, 0.0, warmup=4) == pytest.approx(1.0)
    assert cosine_lr(12, 20, 1.0, 0.0, warmup=4) == pytest.approx(0.5)


def test_schedule_state_restores_the_lr():
    p = torch.nn.Parameter(torch.zeros(1))
    a = CosineSchedule(make_sgd([p], 0.03, 0.9, 5e-4), 0.03, 1e-5, total=10)
    for _ in range(4):
        a.step()
    opt_b = make_sgd([p], 0.03, 0.9, 5e-4)
    b = CosineSchedule(opt_b, 0.03, 1e-5, total=10)
    b.load_state_dict(a.state_dict())
    assert opt_b.param_groups[0]["lr"] == a.optimizer.param_groups[0]["lr"] == cosine_lr(4, 10, 0.03, 1e-5)


def test_clip_caps_the_global_norm_and_returns_the_norm_before():
    params = [torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(4))]
    params[0].grad, params[1].grad = torch.full((3,), 30.0), torch.full((4,), 40.0)
    before = clip_gradients(params, 18.0)
    after = torch.cat([p.grad for p in params]).norm()
    assert before.item() == pytest.approx((3 * 900 + 4 * 1600) ** 0.5)
    assert after.item() == pytest.approx(18.0, rel=1e-4)


def test_trainable_skips_frozen_parameters_and_duplicates():
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    b.requires_grad_(False)
    outer = torch.nn.ModuleDict({"a": a, "b": b})
    assert trainable(a, outer) == [a.weight, a.bias]
