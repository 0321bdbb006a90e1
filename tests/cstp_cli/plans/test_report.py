"""The shortcut report of ``cstp data pairs`` (METHOD §2 "Shortcut report")."""

from __future__ import annotations

import numpy as np
import pytest

from cstp_cli.plans.report import (
    area_predictability,
    format_report,
    label_histograms,
    mutual_information_bits,
    shortcut_report,
)
from cstp_cli.plans.sampling import PairSampler, plan_rng, plan_to_json
from cstp_plugins.pretext.pace import PaceTask
from cstp_plugins.pretext.rot import RotTask
from cstp_plugins.pretext.stor import StorTask


def records(count: int, decorrelate: bool = False, lengths=(20, 400), seed: int = 0):
    s = PairSampler([StorTask(decorrelate=decorrelate), PaceTask(), RotTask()])
    Ns = np.random.default_rng(seed).integers(*lengths, size=count)
    return [
        plan_to_json(s.plan(0, int(Ns[i]), (171, 128), plan_rng(seed, 0, i)), s.mode_label, ["v.avi"], s.candidates)
        for i in range(count)
    ]


def test_mutual_information_of_independent_and_identical_variables():
    x = np.repeat(np.arange(4), 250)
    assert mutual_information_bits(x, x) == pytest.approx(2.0)
    assert mutual_information_bits(x, np.tile(np.arange(2), 500)) == pytest.approx(0.0, abs=1e-12)
    y = x // 2  # a deterministic function keeps its own entropy: 1 bit
    assert mutual_information_bits(x, y) == pytest.approx(1.0)


def test_area_predictability_finds_a_perfect_and_a_useless_feature():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, size=4000)
    acc, chance = area_predictability(labels * 100 + rng.integers(0, 50, size=4000), labels)
    assert acc > 0.95 and chance == pytest.approx(0.2, abs=0.03)
    acc, chance = area_predictability(rng.integers(0, 10_000, size=4000), labels)
    assert acc == pytest.approx(chance, abs=0.04)


def test_label_histograms_pool_per_clip_labels_and_count_unseen_classes():
    recs = [{"labels": {"rot.clips": [0, 3], "stor.spatial": 1}}, {"labels": {"rot.clips": [3, 3], "stor.spatial": 1}}]
    hist = label_histograms(recs, {"stor.spatial": 5})
    assert hist["rot.clips"].tolist() == [1, 0, 0, 3]
    assert hist["stor.spatial"].tolist() == [0, 2, 0, 0, 0]


def test_default_sampling_box_area_predicts_the_spatial_label():
    report = shortcut_report(records(2500))
    assert report["area_chance"] == pytest.approx(0.2, abs=0.03)
    assert 0.33 < report["area_accuracy"] < 0.45  # ≈ 39 % (METHOD §2)


def test_decorrelate_leaves_box_area_at_chance():
    report = shortcut_report(records(2500, decorrelate=True))
    assert abs(report["area_accuracy"] - report["area_chance"]) < 0.04


def test_pace_and_temporal_label_are_dependent_only_on_short_videos():
    long_ = shortcut_report(records(1000, lengths=(217, 400)))
    short = shortcut_report(records(1000, lengths=(16, 80)))
    assert long_["mi_pace_temporal_bits"] < 0.02
    assert short["mi_pace_temporal_bits"] > 0.05


def test_format_report_names_every_part():
    recs = records(200)
    text = format_report(shortcut_report(recs), recs[0]["candidates"])
    for needle in ("200 plans", "stor.spatial: 1:", "1/5:", "rot.clips", "pace.rate", "mutual information", "box area alone"):
        assert needle in text


def test_report_shows_how_often_the_clips_are_equal_per_field():
    s = PairSampler([StorTask(parts=["temporal"]), PaceTask()], T=8)
    recs = [plan_to_json(s.plan(0, 200, (64, 48), plan_rng(0, 0, i)), s.mode_label, ["v.avi"], s.plan_info()) for i in range(50)]
    report = shortcut_report(recs, s.label_classes())
    assert report["same"]["boxes"] == report["same"]["flip"] == report["same"]["photometric"] == 1.0
    assert report["same"]["idx"] < 0.5
    assert "clips equal in: frames" in format_report(report) and "crop 100.0%" in format_report(report)
    free = shortcut_report(records(50))
    assert free["same"]["boxes"] < 0.5 and free["same"]["photometric"] < 0.5


def test_label_classes_from_the_sampler_count_unseen_classes():
    s = PairSampler([PaceTask(rates=[1, 2, 4, 8, 16])], T=4)
    recs = [plan_to_json(s.plan(0, 30, (64, 48), plan_rng(0, 0, i)), s.mode_label, ["v.avi"], s.plan_info()) for i in range(20)]
    assert len(shortcut_report(recs, s.label_classes())["histograms"]["pace.rate"]) == 5  # 16 never fits 30 frames
