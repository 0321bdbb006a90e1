"""One-clip plans of fine-tuning and the linear probe (METHOD §6 with §0, §2.3, §2.4)."""

from __future__ import annotations

import numpy as np
import pytest

from cstp_cli.errors import UsageError
from cstp_cli.plans import geometry
from cstp_cli.plans.clips import ClipSampler, stack_clip_plans


def draw(sampler, n=200, wh=(171, 128), seed=(0, 1, 2)):
    return sampler.plan(3, n, wh, np.random.default_rng(list(seed)))


def test_training_clips_are_at_the_clip_pace_and_deterministic():
    sampler = ClipSampler(16, pace=4)
    a, b = draw(sampler), draw(sampler)
    assert np.all(np.diff(a.idx) == 4) and a.idx.max() < 200 and a.idx.shape == (16,)
    assert np.array_equal(a.idx, b.idx) and np.array_equal(a.box, b.box) and a.rot90 == 0
    assert a.photometric.keys() == b.photometric.keys() and all(
        np.array_equal(a.photometric[k], b.photometric[k]) for k in a.photometric)


def test_pace_augmentation_draws_only_feasible_paces():
    sampler = ClipSampler(16, augment=["pace"])
    paces = {int(np.diff(draw(sampler, n=40, seed=(i,)).idx)[0]) for i in range(60)}
    assert paces == {1, 2}  # 4 and 8 need 61 and 121 frames


def test_rotation_augmentation_draws_all_quarter_turns():
    sampler = ClipSampler(4, augment=["rot"])
    assert {draw(sampler, n=40, seed=(i,)).rot90 for i in range(60)} == {0, 1, 2, 3}


def test_a_video_shorter_than_the_window_loops_at_the_pace():
    plan = draw(ClipSampler(8, pace=4), n=10)
    assert plan.idx.tolist() == [(4 * i) % 10 for i in range(8)]


def test_the_box_is_pretrainings_random_resized_crop():
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    plan = ClipSampler(4, pace=1).plan(0, 50, (171, 128), rng_a)
    rng_b.integers(0, 50 - 3)  # the start draw comes first
    assert tuple(plan.box) == geometry.rrc_box(171, 128, rng_b)
    for i in range(200):
        x, y, w, h = draw(ClipSampler(4), seed=(i,)).box
        assert 0 <= x and 0 <= y and x + w <= 171 and y + h <= 128 and w > 0 and h > 0


def test_colour_is_jitter_only_with_the_blocks_ranges():
    plans = [draw(ClipSampler(4), seed=(i,)) for i in range(300)]
    p = stack_clip_plans(plans)["photometric"]
    assert not p["gray"].any() and not p["blur"].any() and np.all(p["angle"] == 0)
    jitter = p["jitter"]
    assert 0.7 < jitter.mean() < 0.9  # p = 0.8 (METHOD §2.4)
    for key in ("brightness", "contrast", "saturation"):
        assert np.all((p[key][jitter] >= 0.6) & (p[key][jitter] <= 1.4)) and np.all(p[key][~jitter] == 1)
    assert np.all(np.abs(p["hue"]) <= 0.1) and np.all(np.sort(p["order"], axis=1) == np.arange(4))


def test_flip_is_drawn_with_probability_one_half():
    flips = stack_clip_plans([draw(ClipSampler(4), seed=(i,)) for i in range(400)])["flip"]
    assert 0.4 < flips.mean() < 0.6


def test_an_unknown_augment_is_a_usage_error():
    with pytest.raises(UsageError, match="--augment accepts pace, rot"):
        ClipSampler(4, augment=["zoom"])
