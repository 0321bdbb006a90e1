"""MoCo v2 (METHOD §4): key encoder copy, loss against a naive loop, queue ring buffer, momentum."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from cstp_plugins.contrastive.moco import MoCo


def build(encoder, tiny, **options):
    scheme = MoCo(16, **tiny, **options)
    scheme.attach(encoder)
    return scheme


def naive_moco(q, k, queue, tau):
    """Loop: mean over queries of −log(exp(q·k/τ) / (exp(q·k/τ) + Σ_j exp(q·queue_j/τ)))."""
    q, k, queue = q.detach().double(), k.detach().double(), queue.double()
    total = 0.0
    for i in range(q.shape[0]):
        pos = float(q[i] @ k[i]) / tau
        negs = [float(q[i] @ queue[j]) / tau for j in range(queue.shape[0])]
        total += -(pos - math.log(math.exp(pos) + sum(math.exp(n) for n in negs)))
    return total / q.shape[0]


def keys_of(scheme, x):
    with torch.no_grad():
        return F.normalize(scheme.key_projector(scheme.key_encoder(x)), dim=1)


def test_key_network_equals_online_after_attach(encoder, tiny):
    scheme = build(encoder, tiny)
    for k, o in zip(scheme.key_encoder.state_dict().values(), encoder.state_dict().values()):
        assert torch.equal(k, o)
    for k, o in zip(scheme.key_projector.parameters(), scheme.projector.parameters()):
        assert torch.equal(k, o)


def test_key_network_has_no_trainable_parameters(encoder, tiny):
    scheme = build(encoder, tiny)
    trainable = {id(p) for p in scheme.parameters() if p.requires_grad}
    assert trainable == {id(p) for p in scheme.projector.parameters()}


def test_loss_matches_naive_symmetric_mean(encoder, clips, tiny):
    scheme = build(encoder, tiny, queue_size=7)
    queue0 = scheme.queue.clone()
    y1, y2 = encoder(clips[0]), encoder(clips[1])
    out = scheme(y1, y2, *clips)
    q1 = F.normalize(scheme.projector(y1), dim=1)
    q2 = F.normalize(scheme.projector(y2), dim=1)
    k1, k2 = keys_of(scheme, clips[0]), keys_of(scheme, clips[1])
    expected = 0.5 * (naive_moco(q1, k2, queue0, 0.2) + naive_moco(q2, k1, queue0, 0.2))  # τ = 0.2, MoCo v2
    assert out.terms["moco"].item() == pytest.approx(expected, rel=1e-5)


def test_accuracy_stat_counts_positive_as_top_logit(encoder, clips, tiny):
    scheme = build(encoder, tiny, queue_size=7)
    queue0 = scheme.queue.clone()
    y1, y2 = encoder(clips[0]), encoder(clips[1])
    out = scheme(y1, y2, *clips)
    hits = 0
    for q, k in ((F.normalize(scheme.projector(y1), dim=1), keys_of(scheme, clips[1])),
                 (F.normalize(scheme.projector(y2), dim=1), keys_of(scheme, clips[0]))):
        for i in range(q.shape[0]):
            hits += int((q[i] @ k[i]).item() > (queue0 @ q[i]).max().item())
    assert out.stats["acc"].item() == pytest.approx(hits / 10)


def test_loss_is_symmetric_in_the_views(encoder, clips, tiny):
    scheme = build(encoder, tiny)
    twin = copy.deepcopy(scheme)
    y1, y2 = encoder(clips[0]), encoder(clips[1])
    a = scheme(y1, y2, *clips).terms["moco"]
    b = twin(y2, y1, clips[1], clips[0]).terms["moco"]
    torch.testing.assert_close(a, b)


def test_gradients_reach_online_only(encoder, clips, tiny, grads_ok):
    scheme = build(encoder, tiny)
    scheme(encoder(clips[0]), encoder(clips[1]), *clips).terms["moco"].backward()
    assert grads_ok(encoder.parameters()) and grads_ok(scheme.projector.parameters())
    assert all(p.grad is None for p in scheme.key_encoder.parameters())
    assert all(p.grad is None for p in scheme.key_projector.parameters())
    assert not scheme.queue.requires_grad and scheme.queue.grad is None


def test_enqueued_keys_are_key_network_outputs_detached(encoder, clips, tiny):
    scheme = build(encoder, tiny, queue_size=16)
    scheme(encoder(clips[0]), encoder(clips[1]), *clips)
    expected = torch.cat([keys_of(scheme, clips[0]), keys_of(scheme, clips[1])])
    torch.testing.assert_close(scheme.queue[:10], expected)
    assert not scheme.queue.requires_grad and scheme.queue_ptr.item() == 10


def test_ring_buffer_wraps_when_batch_does_not_divide_queue(encoder, clips, tiny):
    scheme = build(encoder, tiny, queue_size=7)  # 10 keys per step, K = 7
    pointers, rows = [], {}
    for step in range(3):
        before = scheme.queue_ptr.item()
        scheme(encoder(clips[0]), encoder(clips[1]), *clips)
        keys = torch.cat([keys_of(scheme, clips[0]), keys_of(scheme, clips[1])])
        for j, key in enumerate(keys):  # the last K keys written at (pointer + j) mod K
            rows[(before + j) % 7] = key
        pointers.append(scheme.queue_ptr.item())
    assert pointers == [10 % 7, 20 % 7, 30 % 7]
    torch.testing.assert_close(scheme.queue, torch.stack([rows[i] for i in range(7)]))


def test_enqueue_wraps_around_the_end(tiny):
    scheme = MoCo(16, queue_size=5, **tiny)
    first, second = torch.randn(3, 8), torch.randn(4, 8)
    scheme.enqueue(first)
    scheme.enqueue(second)
    assert scheme.queue_ptr.item() == 2
    torch.testing.assert_close(scheme.queue[[3, 4, 0, 1]], second)
    torch.testing.assert_close(scheme.queue[2], first[2])


def test_momentum_update_of_key_network(encoder, tiny, perturb):
    scheme = build(encoder, tiny, momentum=0.9)
    xi0 = [p.clone() for p in list(scheme.key_encoder.parameters()) + list(scheme.key_projector.parameters())]
    perturb(encoder)
    perturb(scheme.projector, -0.3)
    scheme.after_step(encoder, 1, 10)
    theta = list(encoder.parameters()) + list(scheme.projector.parameters())
    xi = list(scheme.key_encoder.parameters()) + list(scheme.key_projector.parameters())
    for a, a0, t in zip(xi, xi0, theta):
        torch.testing.assert_close(a, 0.9 * a0 + 0.1 * t.detach())


def test_state_dict_holds_key_network_and_queue_and_reloads(encoder, clips, tiny):
    scheme = build(encoder, tiny, queue_size=7)
    scheme(encoder(clips[0]), encoder(clips[1]), *clips)
    state = scheme.state_dict()
    assert {"queue", "queue_ptr"} <= set(state)
    assert any(k.startswith("key_encoder.") for k in state) and any(k.startswith("key_projector.") for k in state)
    fresh = build(encoder, tiny, queue_size=7)
    fresh.load_state_dict(state)
    for k, v in fresh.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_forward_before_attach_is_an_error(encoder, clips, tiny):
    scheme = MoCo(16, **tiny)
    with pytest.raises(RuntimeError, match="attach"):
        scheme(encoder(clips[0]), encoder(clips[1]), *clips)


def test_temperature_defaults_to_moco_v2s_and_v1s_stays_an_option_value():
    from cstp_cli.api import resolve_options
    from cstp_plugins.contrastive.moco import OPTIONS

    assert MoCo(16, proj_hidden=4, proj_dim=2, queue_size=4).temperature == 0.2
    assert OPTIONS["temperature"].default == 0.2
    assert MoCo(16, **resolve_options(OPTIONS, {"temperature": "0.07", "proj_hidden": "4", "proj_dim": "2"}, "moco")).temperature == 0.07
