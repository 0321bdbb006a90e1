"""The plan contract's helpers (cstp_cli/api/plans.py) and the geometry the API serves plugins."""

from __future__ import annotations

import numpy as np
import pytest

from cstp_cli.api import PLAN_FIELDS, PairPlan, collate_plans, intersection_area, min_overlap_width, overlap_height, share_clip_one
from cstp_cli.plans.sampling import draw_photometric


def test_share_clip_one_copies_clip_one_into_clip_two_without_touching_clip_one():
    rng = np.random.default_rng(0)
    plan = PairPlan(video=0, num_frames=9, frame_wh=(20, 10), T=3)
    plan.boxes = np.array([[0, 0, 4, 4], [5, 5, 4, 4]], dtype=np.int64)
    plan.photometric = draw_photometric(rng)
    before = plan.photometric["brightness"].copy()
    share_clip_one(plan, "boxes")
    share_clip_one(plan, "photometric")
    assert plan.boxes.tolist() == [[0, 0, 4, 4], [0, 0, 4, 4]]
    assert all(np.array_equal(v[0], v[1]) for v in plan.photometric.values())
    assert plan.photometric["brightness"][0] == before[0]


def test_plan_fields_map_each_field_to_its_phase():
    assert PLAN_FIELDS == {"pace": "rate", "idx": "temporal", "boxes": "spatial", "rot90": "per_clip",
                           "flip": "per_clip", "photometric": "per_clip"}


@pytest.mark.parametrize("w, h, n", [(57, 43, 5), (112, 112, 5), (30, 71, 3), (9, 5, 7)])
def test_overlap_width_and_height_bound_the_overlap_area(w, h, n):
    for m in range(1, n + 1):
        lo = min_overlap_width(w, m, n)
        assert lo * n >= m * w and (lo - 1) * n < m * w  # ceil(m·w/n)
        for sw in range(lo, w + 1):
            sh = overlap_height(w, h, m, n, sw)
            box2 = (w - sw, h - sh, w, h)  # overlap at the bottom-right corner of box 1
            area = intersection_area((0, 0, w, h), box2)
            assert m * w * h / n - sw < area <= m * w * h / n  # METHOD §2 invariant


def test_to_keeps_the_cpu_photometric_parameters_as_the_host_copy():
    import torch

    plan = PairPlan(video=0, num_frames=4, frame_wh=(8, 8), T=2, photometric={"jitter": np.array([True, False])})
    batch = collate_plans([plan])
    moved = batch.to("cpu").to("cpu")
    assert moved.host_photometric is not None
    assert torch.equal(moved.host_photometric["jitter"], batch.photometric["jitter"])
