"""SimCLR (METHOD §4): NT-Xent against a naive loop, options, symmetry, gradients."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cstp_plugins.contrastive.simclr import SimCLR, nt_xent


def naive_nt_xent(z1, z2, tau, drop_positive=False):
    """Loop over the 2B views: −log(exp(s_pos/τ) / Σ_{k ≠ i [, k ≠ pos]} exp(s_ik/τ)), averaged."""
    views = [v.double() for v in torch.cat([z1, z2]).detach()]
    n = len(views)
    b = n // 2
    total = 0.0
    for i in range(n):
        pos = (i + b) % n
        denom = 0.0
        for k in range(n):
            if k == i or (drop_positive and k == pos):
                continue
            denom += math.exp(float(views[i] @ views[k]) / tau)
        total += -(float(views[i] @ views[pos]) / tau - math.log(denom))
    return total / n


def random_unit(b=5, d=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(b, d, generator=gen), dim=1), F.normalize(torch.randn(b, d, generator=gen), dim=1)


def test_nt_xent_matches_naive_loop():
    z1, z2 = random_unit()
    assert float(nt_xent(z1, z2, 0.1)) == pytest.approx(naive_nt_xent(z1, z2, 0.1), rel=1e-5)


def test_cstp_eq1_denominator_drops_exactly_the_positive():
    z1, z2 = random_unit(seed=1)
    paper = float(nt_xent(z1, z2, 0.5, "cstp-eq1"))
    assert paper == pytest.approx(naive_nt_xent(z1, z2, 0.5, drop_positive=True), rel=1e-5)
    assert paper != pytest.approx(float(nt_xent(z1, z2, 0.5)), rel=1e-3)


def test_scheme_loss_matches_naive_on_its_projections(encoder, clips, tiny):
    scheme = SimCLR(16, **tiny)
    y1, y2 = encoder(clips[0]), encoder(clips[1])
    out = scheme(y1, y2, *clips)
    z1 = F.normalize(scheme.projector(y1), dim=1)
    z2 = F.normalize(scheme.projector(y2), dim=1)
    assert out.terms["simclr"].item() == pytest.approx(naive_nt_xent(z1, z2, 0.1), rel=1e-5)
    assert set(out.terms) == {"simclr"}


def test_loss_is_symmetric_in_the_views(encoder, clips, tiny):
    scheme = SimCLR(16, **tiny)
    y1, y2 = encoder(clips[0]), encoder(clips[1])
    a = scheme(y1, y2, *clips).terms["simclr"]
    b = scheme(y2, y1, clips[1], clips[0]).terms["simclr"]
    torch.testing.assert_close(a, b)


def test_gradients_reach_encoder_and_projector(encoder, clips, tiny, grads_ok):
    scheme = SimCLR(16, **tiny)
    scheme(encoder(clips[0]), encoder(clips[1]), *clips).terms["simclr"].backward()
    assert grads_ok(encoder.parameters()) and grads_ok(scheme.parameters())


def test_std_stat_is_collapse_monitor_of_projections(encoder, clips, tiny):
    scheme = SimCLR(16, **tiny)
    y1, y2 = encoder(clips[0]), encoder(clips[1])
    out = scheme(y1, y2, *clips)
    z = F.normalize(torch.cat([scheme.projector(y1), scheme.projector(y2)]), dim=1)
    torch.testing.assert_close(out.stats["std"], z.std(dim=0).mean().detach())


def test_loss_is_float32_under_bf16_autocast(encoder, clips, tiny):
    scheme = SimCLR(16, **tiny)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = scheme(encoder(clips[0]), encoder(clips[1]), *clips)
    assert out.terms["simclr"].dtype == torch.float32


def test_unknown_denominator_is_rejected():
    with pytest.raises(ValueError, match="denominator"):
        SimCLR(16, denominator="nope", proj_hidden=4, proj_dim=2)


def test_old_denominator_spelling_paper_is_cstp_eq1_with_a_deprecation_note():
    from cstp_cli.api import resolve_options
    from cstp_plugins.contrastive.simclr import OPTIONS

    with pytest.warns(FutureWarning, match="cstp-eq1"):
        assert resolve_options(OPTIONS, {"denominator": "paper"}, "simclr")["denominator"] == "cstp-eq1"
    with pytest.warns(FutureWarning):
        assert SimCLR(16, denominator="paper", proj_hidden=4, proj_dim=2).denominator == "cstp-eq1"
    assert "paper" not in OPTIONS["denominator"].choices
