"""Every invariant of METHOD §2 over thousands of plans (issue 3 item 1).

Checked for n = 5 and n = 3, 4, 7; T = 16 and T = 4, 8, 9; frames 171×128, 341×256, 64×48
and 40×200; video lengths from 1 frame (shorter than a clip: looped) to 300 frames.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cstp_cli.plans.sampling import PairSampler, plan_rng
from cstp_plugins.pretext.pace import PaceTask
from cstp_plugins.pretext.rot import RotTask
from cstp_plugins.pretext.stor import StorTask

CONFIGS = [  # (n, T, (W, H), decorrelate)
    (5, 16, (171, 128), False),
    (5, 16, (341, 256), False),
    (3, 8, (64, 48), False),
    (4, 9, (40, 200), False),
    (7, 4, (171, 128), False),
    (5, 16, (171, 128), True),
    (7, 9, (64, 48), True),
    (4, 4, (40, 200), True),
]
PLANS_PER_CONFIG = 800


def delta(k: int, n: int, T: int) -> int:
    """round_half_up((T−1)·k/n), computed with exact fractions (independent of the code's form)."""
    from fractions import Fraction

    return int(Fraction((T - 1) * k, n) + Fraction(1, 2))


def sampler(n: int = 5, T: int = 16, decorrelate: bool = False, rates=(1, 2, 4, 8)) -> PairSampler:
    tasks = [StorTask(candidates=n, decorrelate=decorrelate), PaceTask(rates=list(rates)), RotTask()]
    return PairSampler(tasks, T=T)


def chi2_pvalue(counts: np.ndarray, expected: np.ndarray) -> float:
    """Upper tail of Pearson's chi-square statistic (df = bins − 1) via the regularised gamma."""
    stat = float(((counts - expected) ** 2 / expected).sum())
    df = len(counts) - 1
    return float(torch.special.gammaincc(torch.tensor(df / 2, dtype=torch.float64), torch.tensor(stat / 2, dtype=torch.float64)))


def make_plans(n, T, wh, decorrelate, count, seed=0):
    s = sampler(n, T, decorrelate)
    lengths = np.random.default_rng(seed).integers(1, 301, size=count)
    return [s.plan(i % 7, int(lengths[i]), wh, plan_rng(seed, 0, i)) for i in range(count)]


@pytest.fixture(scope="module", params=CONFIGS, ids=lambda c: f"n{c[0]}-T{c[1]}-{c[2][0]}x{c[2][1]}{'-dec' if c[3] else ''}")
def config_plans(request):
    n, T, wh, dec = request.param
    return n, T, wh, make_plans(n, T, wh, dec, PLANS_PER_CONFIG)


def test_boxes_are_inside_the_frame_and_of_equal_size(config_plans):
    n, T, (W, H), plans = config_plans
    boxes = np.stack([p.boxes for p in plans])  # [M, 2, 4]
    x, y, w, h = np.moveaxis(boxes, -1, 0)
    assert (x >= 0).all() and (y >= 0).all() and (x + w <= W).all() and (y + h <= H).all()
    assert (w >= 1).all() and (h >= 1).all()
    assert (boxes[:, 0, 2:] == boxes[:, 1, 2:]).all()


def test_rate_one_gives_equal_boxes(config_plans):
    n, T, wh, plans = config_plans
    ones = [p for p in plans if int(p.labels["stor.spatial"]) == 0]
    assert len(ones) > 50
    assert all(np.array_equal(p.boxes[0], p.boxes[1]) for p in ones)


def test_overlap_area_is_within_one_column_below_the_rate(config_plans):
    """``m·w·h/n − sw < |B1∩B2| ≤ m·w·h/n`` (integers: n·o ≤ m·w·h < n·(o + sw)), so |o/A − r| < 1/h."""
    n, T, wh, plans = config_plans
    for p in plans:
        (x1, y1, w, h), (x2, y2, _, _) = p.boxes.tolist()
        sw = min(x1, x2) + w - max(x1, x2)
        sh = min(y1, y2) + h - max(y1, y2)
        assert sw >= 1 and sh >= 0
        o = sw * sh
        m = n - int(p.labels["stor.spatial"])
        assert n * o <= m * w * h < n * (o + sw)
        assert abs(o / (w * h) - m / n) < 1 / h
        assert p.measured["spatial"] == o / (w * h)


def test_clips_step_by_the_shared_pace_inside_the_video(config_plans):
    n, T, wh, plans = config_plans
    for p in plans:
        assert p.idx.shape == (2, T) and p.idx.dtype == np.int64
        assert (p.idx >= 0).all() and (p.idx < p.num_frames).all()
        if p.num_frames >= T:
            assert (np.diff(p.idx, axis=1) == p.pace).all()
            assert (p.idx[1, 0] - p.idx[0, 0]) % p.pace == 0


def test_temporal_offset_shared_frames_and_realised_rate(config_plans):
    n, T, wh, plans = config_plans
    for p in plans:
        k = int(p.labels["stor.temporal"])
        d_k = delta(k, n, T)
        assert abs(int(p.idx[1, 0] - p.idx[0, 0])) == p.pace * d_k
        shared = int(np.isin(p.idx[0], p.idx[1]).sum())
        assert shared == T - d_k == p.measured["shared_frames"]
        realised = (T - 1 - d_k) / (T - 1)
        assert p.measured["temporal"] == pytest.approx(realised, abs=1e-12)
        assert abs(realised - (1 - k / n)) <= 1 / (2 * (T - 1)) + 1e-12
        if (T - 1) % n == 0:
            assert realised == pytest.approx(1 - k / n, abs=1e-12)


def test_videos_shorter_than_a_clip_loop_identical_clips(config_plans):
    n, T, wh, plans = config_plans
    short = [p for p in plans if p.num_frames < T]
    assert short
    for p in short:
        assert p.pace == 1
        assert int(p.labels["stor.temporal"]) == 0
        assert np.array_equal(p.idx[0], p.idx[1])
        assert np.array_equal(p.idx[0], np.arange(T) % p.num_frames)
        assert p.measured["temporal"] == 1.0


# ---------------------------------------------------------------------------- labels


def test_spatial_label_and_rotations_are_uniform():
    s = sampler()
    plans = [s.plan(0, 120, (171, 128), plan_rng(3, 0, i)) for i in range(2000)]
    k_s = np.array([int(p.labels["stor.spatial"]) for p in plans])
    assert chi2_pvalue(np.bincount(k_s, minlength=5), np.full(5, len(plans) / 5)) > 1e-3
    rot = np.stack([p.labels["rot.clips"] for p in plans])
    for c in range(2):
        assert chi2_pvalue(np.bincount(rot[:, c], minlength=4), np.full(4, len(plans) / 4)) > 1e-3
    joint = np.bincount(rot[:, 0] * 4 + rot[:, 1], minlength=16)
    assert chi2_pvalue(joint, np.full(16, len(plans) / 16)) > 1e-3  # r1, r2 independent


def test_temporal_label_is_uniform_given_length_and_pace_when_all_fit():
    """N ≥ s_max·(T−1+δ_{n−1}) + 1 = 217 (T = 16, n = 5, s_max = 8): every label fits every pace."""
    s = sampler()
    plans = [s.plan(0, 217, (64, 48), plan_rng(4, 0, i)) for i in range(2000)]
    pace = np.array([p.pace for p in plans])
    k_t = np.array([int(p.labels["stor.temporal"]) for p in plans])
    assert set(pace.tolist()) == {1, 2, 4, 8}
    for value in (1, 2, 4, 8):
        counts = np.bincount(k_t[pace == value], minlength=5)
        assert chi2_pvalue(counts, np.full(5, counts.sum() / 5)) > 1e-3


@pytest.mark.parametrize("N, T, n", [(100, 16, 5), (60, 8, 7)])
def test_temporal_label_is_uniform_over_its_feasible_set(N, T, n):
    s = sampler(n, T)
    plans = [s.plan(0, N, (64, 48), plan_rng(5, 0, i)) for i in range(2000)]
    pace = np.array([p.pace for p in plans])
    k_t = np.array([int(p.labels["stor.temporal"]) for p in plans])
    assert len(np.unique(pace)) >= 3
    for value in np.unique(pace):
        feasible = [k for k in range(n) if (T - 1) * value + value * delta(k, n, T) <= N - 1]
        counts = np.bincount(k_t[pace == value], minlength=n)
        assert set(np.flatnonzero(counts)) == set(feasible)
        if len(feasible) > 1:
            assert chi2_pvalue(counts[feasible], np.full(len(feasible), counts.sum() / len(feasible))) > 1e-3


def test_pace_is_uniform_over_the_feasible_paces():
    s = sampler()
    plans = [s.plan(0, 100, (64, 48), plan_rng(6, 0, i)) for i in range(1800)]  # 15·s + 1 ≤ 100: s ∈ {1, 2, 4}
    labels = np.array([int(p.labels["pace.rate"]) for p in plans])
    assert set(p.pace for p in plans) == {1, 2, 4}
    assert np.array_equal(np.array([1, 2, 4, 8])[labels], np.array([p.pace for p in plans]))
    assert chi2_pvalue(np.bincount(labels, minlength=3), np.full(3, len(plans) / 3)) > 1e-3


def test_iou_at_rate_one_fifth_is_about_one_ninth():
    s = sampler()
    ious = []
    for i in range(2500):
        p = s.plan(0, 64, (171, 128), plan_rng(7, 0, i))
        if int(p.labels["stor.spatial"]) == 4:
            o = p.measured["spatial"]
            ious.append(o / (2 - o))
    assert len(ious) > 350
    assert np.mean(ious) == pytest.approx(1 / 9, abs=0.01)
    assert abs(np.mean(ious) - 0.2) > 0.05
