"""The built-in ``pace`` plugin: plan step, head and loss (METHOD §2.1, §3)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from cstp_cli.api import PairPlan, resolve_options
from cstp_plugins.pretext import pace as pace_mod
from cstp_plugins.pretext.pace import PaceTask

torch.set_num_threads(1)


def independent_ce(logits, target):
    log_p = logits - logits.exp().sum(1, keepdim=True).log()
    return -log_p[torch.arange(len(target)), target].mean()


def test_registers_pace_with_weight_one_and_its_options():
    specs = []
    pace_mod.register_pretext_tasks(register=specs.append)
    (spec,) = specs
    assert spec.name == "pace" and spec.default_weight == 1.0
    assert {k: o.default for k, o in spec.options.items()} == {"rates": [1, 2, 4, 8], "clips": "both"}
    assert spec.build(**resolve_options(spec.options, {"rates": "1,3"}, "pace")).rates == [1, 3]


def test_bad_rates_are_refused():
    with pytest.raises(ValueError, match="rates"):
        PaceTask(rates=[2, 2])
    with pytest.raises(ValueError):
        PaceTask(clips="second")


def test_plan_step_chooses_a_feasible_pace_and_its_index():
    task = PaceTask(rates=[1, 3, 5])
    seen = set()
    for i in range(200):
        plan = PairPlan(video=0, num_frames=40, frame_wh=(8, 8), T=9)  # 8·s + 1 ≤ 40: s ∈ {1, 3}
        task.plan_step("rate", plan, np.random.default_rng(i))
        assert task.rates[int(plan.labels["pace.rate"])] == plan.pace
        seen.add(plan.pace)
    assert seen == {1, 3}


def test_head_is_d_to_d_to_number_of_paces():
    layers = list(PaceTask(rates=[1, 2, 4]).head(6))
    assert [type(m) for m in layers] == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert (layers[0].in_features, layers[0].out_features, layers[3].out_features) == (6, 6, 3)


@pytest.mark.parametrize("clips", ["both", "first"])
def test_loss_is_cross_entropy_of_both_clips_or_the_first(clips):
    torch.manual_seed(0)
    task = PaceTask(clips=clips)
    head = task.head(4).eval()
    y1, y2 = torch.randn(6, 4, requires_grad=True), torch.randn(6, 4, requires_grad=True)
    labels = {"pace.rate": torch.tensor([0, 1, 2, 3, 0, 1])}
    terms = task.loss(y1, y2, labels, head)
    assert set(terms) == {"pace"}
    expected = independent_ce(head(y1), labels["pace.rate"])
    if clips == "both":
        expected = expected + independent_ce(head(y2), labels["pace.rate"])
    assert torch.allclose(terms["pace"], expected, atol=1e-6)
    terms["pace"].backward()
    assert y1.grad.abs().sum() > 0
    assert (y2.grad is not None and y2.grad.abs().sum() > 0) == (clips == "both")
