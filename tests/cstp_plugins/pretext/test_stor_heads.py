"""STOR fusion heads (``stor.fusion``, beyond the paper): cost volume, map passing, learning."""

from __future__ import annotations

import math

import pytest
import torch

from cstp_cli.core.dist import TrainModule
from cstp_cli.engine.objective import build_objective, parse_selection
from cstp_cli.errors import UsageError
from cstp_plugins.backbones.cnn4 import CNN4, CNN4T
from cstp_plugins.pretext.stor import StorTask
from cstp_plugins.pretext.stor_heads import ConcatHead, CorrHead, ProfileHead, cost_volume

torch.set_num_threads(1)


def test_cost_volume_peaks_at_the_displacement_of_the_second_map():
    torch.manual_seed(0)
    base = torch.randn(2, 8, 2, 7, 8)
    m1, m2 = base[..., :5, :5], base[..., 1:6, 2:7]  # m2 at q shows m1 at q + (1, 2)
    vol = cost_volume(m1, m2)
    assert vol.shape == (2, 3, 9, 9)
    dt, dy, dx = [int(v) for v in torch.unravel_index(vol[0].argmax(), vol[0].shape)]
    assert (dt - 1, dy - 4, dx - 4) == (0, -1, -2)
    assert torch.allclose(vol[0, 1, 3, 2], torch.tensor(1.0))


def test_fusion_heads_map_two_conv_maps_to_n_logits():
    m = torch.randn(4, 16, 2, 4, 4)
    assert CorrHead(16, 5)(m, m).shape == (4, 5)
    assert ConcatHead(16, 3)(m, m).shape == (4, 3)


def test_unknown_fusion_is_a_usage_error_listing_the_choices():
    with pytest.raises(UsageError, match="pooled, concat, corr"):
        build_objective(parse_selection("none", "stor", "none"), 16, sets={"stor": {"fusion": "max"}})


def test_pooled_fusion_keeps_the_paper_head_and_needs_no_maps():
    task = StorTask(fusion="pooled")
    assert not task.uses_feature_maps
    head = task.head(16)
    assert [type(m).__name__ for m in head["spatial"]] == ["Linear", "BatchNorm1d", "ReLU", "Linear"]


def test_train_module_passes_conv_maps_to_a_map_fusion_and_gradients_reach_the_encoder():
    torch.manual_seed(0)
    enc = CNN4("tiny")
    obj = build_objective(parse_selection("none", "stor", "none"), enc.feature_dim, sets={"stor": {"fusion": "corr"}})
    assert obj.wants_feature_maps
    x1, x2 = torch.randn(4, 3, 8, 32, 32), torch.randn(4, 3, 8, 32, 32)
    labels = {"stor.spatial": torch.tensor([0, 1, 2, 3]), "stor.temporal": torch.tensor([4, 3, 2, 1])}
    loss, logs = TrainModule(enc, obj)(x1, x2, labels)
    loss.backward()
    assert set(logs) >= {"terms/stor.spatial", "terms/stor.temporal"}
    assert enc.body[0][0].weight.grad.abs().sum() > 0


def shifted_pairs(batch: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Clip 2 = clip 1's 32×32 window moved right so the overlap is rate 1 − k/5 (fresh texture each call)."""
    k = torch.randint(0, 5, (batch,), generator=gen)
    tex = torch.rand(batch, 3, 8, 8, 16, generator=gen)
    tex = torch.nn.functional.interpolate(tex, size=(8, 32, 64), mode="nearest") * 2 - 1
    x1 = tex[..., :32]
    shift = torch.round(32 * k.float() / 5).long()
    x2 = torch.stack([tex[i, ..., int(s): int(s) + 32] for i, s in enumerate(shift)])
    return x1, x2, k


def adam_losses(model: TrainModule, pairs, key: str, steps: int) -> list[float]:
    """Train ``model`` with Adam (lr 3e-3) on ``steps`` fresh batches ``pairs() -> (x1, x2, labels)``
    of the label ``key``; the loss of every step."""
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(steps):
        x1, x2, k = pairs()
        loss, _ = model(x1, x2, {key: k})
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


@pytest.mark.parametrize("fusion", ["corr"])
def test_fusion_head_drives_spatial_stor_below_chance_on_fresh_small_batches(fusion):
    """The check behind the cpu-synthetic preset's choice: a map-comparing head learns overlap
    from scratch in a few dozen steps (the paper's pooled head does not at this scale)."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    enc = CNN4("tiny")
    obj = build_objective(parse_selection("none", "stor", "none"), enc.feature_dim,
                          sets={"stor": {"fusion": fusion, "parts": "spatial"}})
    losses = adam_losses(TrainModule(enc, obj), lambda: shifted_pairs(16, gen), "stor.spatial", 60)
    assert sum(losses[-10:]) / 10 < 0.9 * math.log(5)


def test_profile_fusion_reads_spatial_with_corr_and_temporal_with_a_time_shift_profile():
    head = StorTask(fusion="profile").head(16)
    assert isinstance(head["spatial"], CorrHead) and isinstance(head["temporal"], ProfileHead)


def test_time_shift_profile_peaks_at_the_time_offset_wherever_the_boxes_are():
    torch.manual_seed(0)
    base = torch.randn(2, 8, 12, 7, 8)
    m1, m2 = base[:, :, :8, :5, :5], base[:, :, 3:11, 1:6, 2:7]  # 3 frames later, box moved by (1, 2)
    profile = ProfileHead.profile(m1, m2)
    assert profile.shape == (2, 8)
    assert (profile.argmax(1) == 3).all() and torch.allclose(profile[:, 3], torch.ones(2))


def test_profile_head_bins_maps_longer_than_its_shifts():
    m = torch.randn(3, 16, 8, 4, 4)
    assert ProfileHead(16, 5, t_max=4)(m, m).shape == (3, 5)


def time_shifted_pairs(batch: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Clip 2 = clip 1 δ_k frames later (δ = 0, 1, 3, 4, 6 of 8, METHOD §2.2) with its 32×32 box
    moved by up to 8 px: a fresh texture every frame, so only a matching time tells the offset."""
    k = torch.randint(0, 5, (batch,), generator=gen)
    delta = torch.tensor([0, 1, 3, 4, 6])[k]
    tex = torch.rand(batch, 3, 14, 10, 10, generator=gen)
    tex = torch.nn.functional.interpolate(tex, size=(14, 40, 40), mode="nearest") * 2 - 1
    dy, dx = (torch.randint(0, 9, (batch,), generator=gen) for _ in range(2))
    x1 = tex[:, :, :8, :32, :32]
    x2 = torch.stack([tex[i, :, int(d): int(d) + 8, int(y): int(y) + 32, int(x): int(x) + 32]
                      for i, (d, y, x) in enumerate(zip(delta, dy, dx))])
    return x1, x2, k


def test_profile_head_on_time_kept_maps_learns_the_time_offset_across_a_box_shift():
    """The check behind the cpu-synthetic preset's cnn4t + profile: temporal STOR learns from
    scratch in a few dozen steps although the two boxes differ."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    enc = CNN4T("tiny")
    obj = build_objective(parse_selection("none", "stor", "none"), enc.feature_dim,
                          sets={"stor": {"fusion": "profile", "parts": "temporal"}})
    losses = adam_losses(TrainModule(enc, obj), lambda: time_shifted_pairs(16, gen), "stor.temporal", 40)
    assert sum(losses[-10:]) / 10 < 0.9 * math.log(5)
