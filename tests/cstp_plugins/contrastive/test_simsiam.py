"""SimSiam (METHOD §4): architecture, loss against explicit formula, stop-gradient, symmetry."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from cstp_plugins.contrastive.simsiam import SimSiam, negative_cosine


def naive_simsiam(p1, p2, z1, z2):
    """½·mean(−cos(p1, z2)) + ½·mean(−cos(p2, z1)), cos written out."""
    def cos(a, b):
        a, b = a.detach().double(), b.detach().double()
        return float(a @ b) / math.sqrt(float(a @ a) * float(b @ b))

    n = p1.shape[0]
    return sum(-0.5 * cos(p1[i], z2[i]) - 0.5 * cos(p2[i], z1[i]) for i in range(n)) / n


def test_default_architecture_follows_method():
    scheme = SimSiam(16)
    linears = [m for m in scheme.projector if isinstance(m, nn.Linear)]
    norms = [m for m in scheme.projector if isinstance(m, nn.BatchNorm1d)]
    assert [(l.in_features, l.out_features) for l in linears] == [(16, 2048), (2048, 2048), (2048, 2048)]
    assert len(norms) == 3 and norms[-1].affine is False and norms[0].affine
    assert isinstance(scheme.projector[-1], nn.BatchNorm1d)
    pred = [(l.in_features, l.out_features) for l in scheme.predictor if isinstance(l, nn.Linear)]
    assert pred == [(2048, 512), (512, 2048)]


def test_loss_matches_explicit_formula(encoder, clips, tiny_pred):
    scheme = SimSiam(16, **tiny_pred)
    y1, y2 = encoder(clips[0]), encoder(clips[1])
    out = scheme(y1, y2, *clips)
    z1, z2 = scheme.projector(y1), scheme.projector(y2)
    expected = naive_simsiam(scheme.predictor(z1), scheme.predictor(z2), z1, z2)
    assert out.terms["simsiam"].item() == pytest.approx(expected, rel=1e-5)
    assert set(out.terms) == {"simsiam"}


def test_loss_is_symmetric_in_the_views(encoder, clips, tiny_pred):
    scheme = SimSiam(16, **tiny_pred)
    y1, y2 = encoder(clips[0]), encoder(clips[1])
    torch.testing.assert_close(scheme(y1, y2).terms["simsiam"], scheme(y2, y1).terms["simsiam"])


def test_negative_cosine_stops_gradient_into_z():
    p = torch.randn(4, 8, requires_grad=True)
    z = torch.randn(4, 8, requires_grad=True)
    negative_cosine(p, z).backward()
    assert p.grad is not None and z.grad is None


def test_gradients_reach_encoder_projector_predictor(encoder, clips, tiny_pred, grads_ok):
    scheme = SimSiam(16, **tiny_pred)
    scheme(encoder(clips[0]), encoder(clips[1]), *clips).terms["simsiam"].backward()
    assert grads_ok(encoder.parameters()) and grads_ok(scheme.parameters())


def test_collapsed_projections_give_zero_std(tiny_pred):
    scheme = SimSiam(16, **tiny_pred).eval()
    y = torch.randn(1, 16).repeat(6, 1)
    assert scheme(y, y).stats["std"].item() < 1e-5


def test_predictor_takes_the_projectors_raw_output(encoder, clips, tiny_pred):
    scheme = SimSiam(16, **tiny_pred)
    seen = []
    scheme.predictor.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach()))
    y1, y2 = encoder(clips[0]), encoder(clips[1])
    scheme(y1, y2, *clips)
    torch.testing.assert_close(seen[0], scheme.projector(y1).detach())
    assert not torch.allclose(seen[0].norm(dim=1), torch.ones(len(y1)))
