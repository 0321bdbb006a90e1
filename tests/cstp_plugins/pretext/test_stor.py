"""The built-in ``stor`` plugin: registration, options, heads and loss (METHOD §1, §3)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from cstp_cli.api import PairPlan, PretextSpec, resolve_options
from cstp_plugins.pretext import stor as stor_mod
from cstp_plugins.pretext.stor import StorTask

torch.set_num_threads(1)


def registered() -> PretextSpec:
    specs = []
    stor_mod.register_pretext_tasks(register=specs.append)
    (spec,) = specs
    return spec


def independent_ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean of −log softmax at the target, written out."""
    log_p = logits - logits.exp().sum(1, keepdim=True).log()
    return -log_p[torch.arange(len(target)), target].mean()


def test_registers_stor_with_weight_one_and_its_options():
    spec = registered()
    assert spec.name == "stor" and spec.default_weight == 1.0
    assert {k: o.default for k, o in spec.options.items()} == {
        "candidates": 5,
        "parts": ["spatial", "temporal"],
        "decorrelate": False,
        "isolate": True,
        "fusion": "pooled",
        "share": [],
    }
    task = spec.build(**resolve_options(spec.options, {"candidates": "4", "parts": "spatial", "decorrelate": "true"}, "stor"))
    assert task.n == 4 and task.parts == ("spatial",) and task.decorrelate


def test_bad_options_are_refused():
    with pytest.raises(TypeError, match="bogus"):
        StorTask(bogus=1)
    with pytest.raises(ValueError, match="candidates"):
        StorTask(candidates=1)
    with pytest.raises(ValueError):
        StorTask(parts=["colour"])


def test_heads_are_linear_bn_relu_linear_from_2d_to_n():
    head = StorTask(candidates=7).head(6)
    assert set(head.keys()) == {"spatial", "temporal"}
    for part in ("spatial", "temporal"):
        layers = list(head[part])
        assert [type(m) for m in layers] == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
        assert (layers[0].in_features, layers[0].out_features, layers[3].out_features) == (12, 12, 7)


def test_loss_is_cross_entropy_on_cat_y1_y2_in_that_order():
    torch.manual_seed(0)
    task = StorTask()
    head = task.head(4).eval()
    y1, y2 = torch.randn(6, 4), torch.randn(6, 4)
    labels = {"stor.spatial": torch.tensor([0, 1, 2, 3, 4, 0]), "stor.temporal": torch.tensor([4, 3, 2, 1, 0, 0])}
    terms = task.loss(y1, y2, labels, head)
    assert set(terms) == {"stor.spatial", "stor.temporal"}
    z = torch.cat([y1, y2], 1)
    for part in ("spatial", "temporal"):
        assert torch.allclose(terms[f"stor.{part}"], independent_ce(head[part](z), labels[f"stor.{part}"]), atol=1e-6)
    swapped = task.loss(y2, y1, labels, head)
    assert not torch.allclose(swapped["stor.spatial"], terms["stor.spatial"])


def test_gradients_reach_both_clips():
    task = StorTask()
    head = task.head(4)
    y1, y2 = torch.randn(5, 4, requires_grad=True), torch.randn(5, 4, requires_grad=True)
    labels = {"stor.spatial": torch.randint(0, 5, (5,)), "stor.temporal": torch.randint(0, 5, (5,))}
    sum(task.loss(y1, y2, labels, head).values()).backward()
    assert y1.grad.abs().sum() > 0 and y2.grad.abs().sum() > 0


def test_parts_select_the_heads_and_terms():
    task = StorTask(parts=["temporal"])
    head = task.head(4)
    assert set(head.keys()) == {"temporal"}
    terms = task.loss(torch.randn(3, 4), torch.randn(3, 4), {"stor.temporal": torch.tensor([0, 1, 2])}, head)
    assert set(terms) == {"stor.temporal"}


def test_plan_steps_write_labels_and_fields():
    task = StorTask()
    plan = PairPlan(video=0, num_frames=100, frame_wh=(64, 48), T=8, pace=2)
    rng = np.random.default_rng(0)
    task.plan_step("temporal", plan, rng)
    task.plan_step("spatial", plan, rng)
    assert plan.idx.shape == (2, 8) and plan.boxes.shape == (2, 4)
    assert {"stor.temporal", "stor.spatial"} <= set(plan.labels)
    assert (np.diff(plan.idx, axis=1) == 2).all()


def test_one_part_asks_the_sampler_to_share_the_other_parts_fields():
    assert StorTask(parts=["temporal"]).shared == {"boxes", "flip", "photometric"}
    assert StorTask(parts=["spatial"]).shared == {"idx"}
    assert StorTask().shared == frozenset()
    assert StorTask(parts=["temporal"], isolate=False).shared == frozenset()


def test_share_asks_the_sampler_to_keep_flip_and_colour_equal_with_both_parts():
    assert StorTask(share=["flip", "photometric"]).shared == {"flip", "photometric"}
    assert StorTask(parts=["spatial"], share=["flip"]).shared == {"idx", "flip"}
    with pytest.raises(ValueError, match="stor.share"):
        StorTask(share=["boxes"])


def test_shared_flip_and_colour_reach_the_plans():
    from cstp_cli.plans.sampling import PairSampler

    sampler = PairSampler([StorTask(share=["flip", "photometric"])], T=4, photometric_p=1.0)
    for i in range(40):
        plan = sampler.plan(i, 64, (48, 36), np.random.default_rng(i))
        assert plan.flip[0] == plan.flip[1]
        assert all(np.array_equal(v[0], v[1]) for v in plan.photometric.values())
        assert plan.labels["stor.spatial"].shape == ()  # STOR's own draws are untouched


def test_describes_its_mode_tag_rates_and_label_classes():
    task = StorTask(candidates=4, parts=["spatial"], decorrelate=True)
    assert task.mode_tag == "decorrelate" and StorTask().mode_tag is None
    assert task.plan_info() == {"candidates": ["1", "3/4", "1/2", "1/4"]}
    assert task.label_classes() == {"stor.spatial": 4}
