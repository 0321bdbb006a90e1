"""STOR fusion heads (``stor.fusion``, beyond the paper): cost volume, map passing, learning."""

from __future__ import annotations

import math

import pytest
import torch

from cstp_cli.core.dist import TrainModule
from cstp_cli.engine.objective import build_objective, parse_selection
from cstp_cli.errors import UsageError
from cstp_plugins.backbones.cnn4 import CNN4
from cstp_plugins.pretext.stor import StorTask
from cstp_plugins.pretext.stor_heads import ConcatHead, CorrHead, cost_volume

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


@pytest.mark.parametrize("fusion", ["corr"])
def test_fusion_head_drives_spatial_stor_below_chance_on_fresh_small_batches(fusion):
    """The check behind the cpu-synthetic preset's choice: a map-comparing head learns overlap
    from scratch in a few dozen steps (the paper's pooled head does not at this scale)."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    enc = CNN4("tiny")
    obj = build_objective(parse_selection("none", "stor", "none"), enc.feature_dim,
                          sets={"stor": {"fusion": fusion, "parts": "spatial"}})
    model = TrainModule(enc, obj)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        x1, x2, k = shifted_pairs(16, gen)
        loss, _ = model(x1, x2, {"stor.spatial": k})
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert sum(losses[-10:]) / 10 < 0.9 * math.log(5)
