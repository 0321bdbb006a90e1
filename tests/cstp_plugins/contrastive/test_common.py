"""Shared pieces of the contrastive schemes: MLPs, targets, momentum, collapse monitor, one-process gathers."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from cstp_plugins.contrastive.common import (
    batch_shuffle,
    batch_unshuffle,
    collapse_std,
    dist_info,
    fp32,
    gather_no_grad,
    gather_with_grad,
    make_target,
    mlp,
    momentum_at,
    momentum_update,
    projector,
    rank_offset,
    unwrap,
)


def test_projector_is_linear_bn_relu_linear():
    g = projector(16, 32, 8)
    assert [type(m) for m in g] == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert (g[0].in_features, g[0].out_features, g[3].out_features) == (16, 32, 8)


def test_mlp_last_bn_without_affine():
    net = mlp([4, 6, 6, 5], last_bn=True, last_affine=False)
    assert isinstance(net[-1], nn.BatchNorm1d) and not net[-1].affine
    assert sum(isinstance(m, nn.BatchNorm1d) for m in net) == 3


def test_make_target_copies_weights_frozen(encoder):
    target = make_target(encoder)
    for t, o in zip(target.state_dict().values(), encoder.state_dict().values()):
        assert torch.equal(t, o)
    assert all(not p.requires_grad for p in target.parameters())
    assert all(p.requires_grad for p in encoder.parameters())
    assert all(t.data_ptr() != o.data_ptr() for t, o in zip(target.parameters(), encoder.parameters()))


def test_make_target_unwraps_data_parallel(encoder):
    target = make_target(nn.DataParallel(encoder))
    assert type(target) is type(encoder) and unwrap(nn.DataParallel(encoder)) is encoder


def test_momentum_update_formula(encoder, perturb):
    target = make_target(encoder)
    xi0 = [p.clone() for p in target.parameters()]
    perturb(encoder, 0.7)
    momentum_update(target, encoder, 0.9)
    for xi, x0, theta in zip(target.parameters(), xi0, encoder.parameters()):
        torch.testing.assert_close(xi, 0.9 * x0 + 0.1 * theta.detach())


def test_momentum_update_rejects_mismatched_networks(encoder):
    with pytest.raises(ValueError):
        momentum_update(make_target(encoder), nn.Linear(2, 2), 0.9)


def test_momentum_cosine_schedule_endpoints():
    assert momentum_at(0.99, 0, 100, "cosine") == pytest.approx(0.99)
    assert momentum_at(0.99, 50, 100, "cosine") == pytest.approx(1 - 0.01 * 0.5)
    assert momentum_at(0.99, 100, 100, "cosine") == pytest.approx(1.0)
    assert momentum_at(0.99, 37, 100, "constant") == 0.99


def test_collapse_std_zero_on_identical_embeddings():
    z = torch.randn(1, 32).repeat(64, 1)
    assert float(collapse_std(z)) < 1e-6


def test_collapse_std_near_inverse_sqrt_dim_on_random_embeddings():
    d = 64
    z = torch.randn(4000, d, generator=torch.Generator().manual_seed(0))
    assert float(collapse_std(z)) == pytest.approx(1 / math.sqrt(d), rel=0.03)


def test_fp32_turns_autocast_off():
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert (a @ b).dtype == torch.bfloat16
        with fp32("cpu"):
            assert (a @ b).dtype == torch.float32


def test_gathers_are_identity_in_one_process():
    x = torch.randn(3, 4, requires_grad=True)
    assert dist_info() == (0, 1) and rank_offset(3) == 0
    assert gather_with_grad(x) is x
    g = gather_no_grad(x)
    assert torch.equal(g, x) and not g.requires_grad


def test_batch_shuffle_is_identity_in_one_process():
    x = torch.randn(3, 4)
    shuffled, handle = batch_shuffle(x, seed=3)
    assert shuffled is x and handle is None
    assert batch_unshuffle(x * 2, handle).equal(x * 2)
