"""BYOL (METHOD §4): target copied at init, loss against explicit formula, gradients, momentum."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cstp_plugins.contrastive.byol import BYOL, regression_loss


def build(encoder, tiny_pred, **options):
    scheme = BYOL(16, **tiny_pred, **options)
    scheme.attach(encoder)
    return scheme


def naive_byol(p1, p2, t1, t2):
    """Mean over samples of (2 − 2cos(p1_i, t2_i)) + (2 − 2cos(p2_i, t1_i)), cos written out."""
    def cos(a, b):
        a, b = a.detach().double(), b.detach().double()
        return float(a @ b) / math.sqrt(float(a @ a) * float(b @ b))

    n = p1.shape[0]
    return sum((2 - 2 * cos(p1[i], t2[i])) + (2 - 2 * cos(p2[i], t1[i])) for i in range(n)) / n


def targets_of(scheme, x):
    with torch.no_grad():
        return F.normalize(scheme.target_projector(scheme.target_encoder(x)), dim=1)


def test_target_equals_online_after_attach(encoder, tiny_pred):
    scheme = build(encoder, tiny_pred)
    for t, o in zip(scheme.target_encoder.state_dict().values(), encoder.state_dict().values()):
        assert torch.equal(t, o)
    for t, o in zip(scheme.target_projector.parameters(), scheme.projector.parameters()):
        assert torch.equal(t, o)


def test_only_projector_and_predictor_are_trainable(encoder, tiny_pred):
    scheme = build(encoder, tiny_pred)
    trainable = {id(p) for p in scheme.parameters() if p.requires_grad}
    expected = {id(p) for p in list(scheme.projector.parameters()) + list(scheme.predictor.parameters())}
    assert trainable == expected


def test_loss_matches_explicit_formula(encoder, clips, tiny_pred, perturb):
    scheme = build(encoder, tiny_pred)
    perturb(scheme.target_encoder, 0.1)  # target ≠ online, so the target pass really is used
    y1, y2 = encoder(clips[0]), encoder(clips[1])
    out = scheme(y1, y2, *clips)
    p1 = scheme.predictor(scheme.projector(y1))  # the projector's raw output (BYOL paper, lightly)
    p2 = scheme.predictor(scheme.projector(y2))
    expected = naive_byol(p1, p2, targets_of(scheme, clips[0]), targets_of(scheme, clips[1]))
    assert out.terms["byol"].item() == pytest.approx(expected, rel=1e-5)
    assert set(out.terms) == {"byol"}


def predictor_inputs(scheme, y1, y2, clips):
    seen = []
    handle = scheme.predictor.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach()))
    scheme(y1, y2, *clips)
    handle.remove()
    return seen


def test_predictor_takes_the_projectors_raw_output(encoder, clips, tiny_pred):
    scheme = build(encoder, tiny_pred)
    y1, y2 = encoder(clips[0]), encoder(clips[1])
    seen = predictor_inputs(scheme, y1, y2, clips)
    torch.testing.assert_close(seen[0], scheme.projector(y1).detach())
    assert not torch.allclose(seen[0].norm(dim=1), torch.ones(len(y1)))


def test_pred_input_normalized_keeps_the_old_behaviour(encoder, clips, tiny_pred, perturb):
    scheme = build(encoder, tiny_pred, pred_input="normalized")
    perturb(scheme.target_encoder, 0.1)
    y1, y2 = encoder(clips[0]), encoder(clips[1])
    seen = predictor_inputs(scheme, y1, y2, clips)
    torch.testing.assert_close(seen[0].norm(dim=1), torch.ones(len(y1)))
    p1 = scheme.predictor(F.normalize(scheme.projector(y1), dim=1))
    p2 = scheme.predictor(F.normalize(scheme.projector(y2), dim=1))
    expected = naive_byol(p1, p2, targets_of(scheme, clips[0]), targets_of(scheme, clips[1]))
    assert scheme(y1, y2, *clips).terms["byol"].item() == pytest.approx(expected, rel=1e-5)


def test_loss_is_symmetric_in_the_views(encoder, clips, tiny_pred):
    scheme = build(encoder, tiny_pred)
    y1, y2 = encoder(clips[0]), encoder(clips[1])
    a = scheme(y1, y2, *clips).terms["byol"]
    b = scheme(y2, y1, clips[1], clips[0]).terms["byol"]
    torch.testing.assert_close(a, b)


def test_regression_loss_stops_gradient_into_target():
    p = torch.randn(4, 8, requires_grad=True)
    t = torch.randn(4, 8, requires_grad=True)
    regression_loss(p, t).sum().backward()
    assert p.grad is not None and t.grad is None


def test_gradients_reach_online_only(encoder, clips, tiny_pred, grads_ok):
    scheme = build(encoder, tiny_pred)
    scheme(encoder(clips[0]), encoder(clips[1]), *clips).terms["byol"].backward()
    assert grads_ok(encoder.parameters())
    assert grads_ok(scheme.projector.parameters()) and grads_ok(scheme.predictor.parameters())
    assert all(p.grad is None for p in scheme.target_encoder.parameters())
    assert all(p.grad is None for p in scheme.target_projector.parameters())


def test_momentum_update_formula_default_m(encoder, tiny_pred, perturb):
    scheme = build(encoder, tiny_pred)
    xi0 = [p.clone() for p in list(scheme.target_encoder.parameters()) + list(scheme.target_projector.parameters())]
    perturb(encoder)
    perturb(scheme.projector, -0.3)
    scheme.after_step(encoder, 1, 10)
    theta = list(encoder.parameters()) + list(scheme.projector.parameters())
    xi = list(scheme.target_encoder.parameters()) + list(scheme.target_projector.parameters())
    for a, a0, t in zip(xi, xi0, theta):
        torch.testing.assert_close(a, 0.998 * a0 + 0.002 * t.detach())


def test_cosine_momentum_reaches_one_at_the_end(encoder, tiny_pred, perturb):
    scheme = build(encoder, tiny_pred, momentum="cosine", base_momentum=0.9)
    assert scheme.momentum_for(0, 8) == pytest.approx(0.9)
    assert scheme.momentum_for(4, 8) == pytest.approx(0.95)
    before = [p.clone() for p in scheme.target_encoder.parameters()]
    perturb(encoder)
    scheme.after_step(encoder, 8, 8)  # m = 1: the target does not move
    for a, b in zip(scheme.target_encoder.parameters(), before):
        torch.testing.assert_close(a, b)


def test_state_dict_holds_target_and_reloads(encoder, clips, tiny_pred, perturb):
    scheme = build(encoder, tiny_pred)
    perturb(encoder)
    scheme.after_step(encoder, 1, 10)
    state = scheme.state_dict()
    assert any(k.startswith("target_encoder.") for k in state) and any(k.startswith("target_projector.") for k in state)
    fresh = build(encoder, tiny_pred)
    fresh.load_state_dict(state)
    for k, v in fresh.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_unknown_momentum_schedule_is_rejected():
    with pytest.raises(ValueError, match="momentum"):
        BYOL(16, momentum="linear", proj_hidden=4, proj_dim=2, pred_hidden=4)


def test_unknown_pred_input_is_rejected():
    with pytest.raises(ValueError, match="pred_input"):
        BYOL(16, pred_input="unit", proj_hidden=4, proj_dim=2, pred_hidden=4)
