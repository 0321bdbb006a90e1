"""The pair sampler's contract: per-sample RNG, phase order, ownership, defaults,
photometric block, App. A reference sampling and ``pairs.jsonl`` (issue 3 item 1)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cstp_cli.plans import geometry
from cstp_cli.api import PairPlan, PretextTask, collate_plans
from cstp_cli.errors import UsageError
from cstp_cli.plans.reference import ReferenceSampler
from cstp_cli.plans.sampling import (
    PairSampler,
    candidate_strings,
    make_sampler,
    draw_photometric,
    epoch_order,
    plan_rng,
    plan_to_json,
    same_fields,
)
from cstp_plugins.pretext import stor as stor_mod
from cstp_plugins.pretext.pace import PaceTask
from cstp_plugins.pretext.rot import RotTask
from cstp_plugins.pretext.stor import StorTask

PHOTOMETRIC_KEYS = {"angle", "jitter", "brightness", "contrast", "saturation", "hue", "order", "gray", "blur", "sigma"}


def default_tasks(**stor_options):
    return [StorTask(**stor_options), RotTask(), PaceTask()]


def plans_equal(a: PairPlan, b: PairPlan) -> bool:
    same = (a.video, a.num_frames, a.frame_wh, a.T, a.pace) == (b.video, b.num_frames, b.frame_wh, b.T, b.pace)
    for field in ("idx", "boxes", "rot90", "flip"):
        same &= np.array_equal(getattr(a, field), getattr(b, field))
    for field in ("photometric", "labels", "extras"):
        da, db = getattr(a, field), getattr(b, field)
        same &= da.keys() == db.keys() and all(np.array_equal(da[k], db[k]) for k in da)
    return bool(same and a.measured == b.measured)


# ---------------------------------------------------------------------------- randomness


def test_plan_rng_is_default_rng_of_seed_epoch_index():
    assert np.array_equal(plan_rng(3, 1, 7).random(5), np.random.default_rng([3, 1, 7]).random(5))


def test_epoch_order_is_a_seeded_permutation_per_epoch():
    a, b = epoch_order(0, 0, 50), epoch_order(0, 1, 50)
    assert a.dtype == np.int64 and sorted(a.tolist()) == list(range(50))
    assert np.array_equal(a, np.random.default_rng([0, 0]).permutation(50))
    assert np.array_equal(a, epoch_order(0, 0, 50)) and not np.array_equal(a, b)


@pytest.mark.parametrize("mode", ["clean", "reference"])
def test_same_seed_epoch_index_gives_the_same_plan_in_any_call_order(mode):
    s = make_sampler(default_tasks(), mode=mode)
    keys = [(1, e, i) for e in range(2) for i in range(12)]
    forward = {k: s.plan(k[2] % 5, 60 + k[2], (171, 128), plan_rng(*k)) for k in keys}
    fresh = make_sampler(default_tasks(), mode=mode)
    backward = {k: fresh.plan(k[2] % 5, 60 + k[2], (171, 128), plan_rng(*k)) for k in reversed(keys)}
    assert all(plans_equal(forward[k], backward[k]) for k in keys)
    assert not plans_equal(forward[keys[0]], forward[keys[1]])


# ---------------------------------------------------------------------------- phases


class Probe(PretextTask):
    """Records what it sees in each phase; owns nothing."""

    name = "probe"
    phases = frozenset({"rate", "temporal", "spatial", "per_clip"})

    def __init__(self, **options):
        super().__init__(**options)
        self.seen = []

    def plan_step(self, phase, plan, rng):
        self.seen.append((phase, plan.pace, plan.idx.shape[1], plan.boxes.copy(), plan.labels.copy()))


def test_phases_run_in_order_with_core_defaults_before_task_steps():
    probe = Probe()
    s = PairSampler([probe, PaceTask(), StorTask()], T=8)
    plan = s.plan(0, 200, (64, 48), plan_rng(0, 0, 0))
    phases = [seen[0] for seen in probe.seen]
    assert phases == ["rate", "temporal", "spatial", "per_clip"]
    rate, temporal, spatial, per_clip = probe.seen
    assert "pace.rate" not in rate[4]  # the probe is listed before pace: pace runs after it
    assert temporal[1] == plan.pace and "pace.rate" in temporal[4]  # rate phase done before temporal
    assert "stor.temporal" in spatial[4] and "stor.spatial" not in spatial[4]
    assert np.array_equal(per_clip[3], plan.boxes)


class BoxOwner(PretextTask):
    name = "boxer"
    phases = frozenset({"spatial"})
    writes = frozenset({"boxes"})

    def plan_step(self, phase, plan, rng):
        plan.boxes = np.array([[0, 0, 4, 4], [1, 1, 4, 4]], dtype=np.int64)


def test_two_owners_of_one_field_is_a_usage_error_naming_both():
    with pytest.raises(UsageError, match=r"boxes.*stor.*boxer"):
        PairSampler([StorTask(), BoxOwner()])


def test_owned_field_skips_its_core_default():
    plan = PairSampler([BoxOwner()]).plan(0, 40, (64, 48), plan_rng(0, 0, 0))
    assert plan.boxes.tolist() == [[0, 0, 4, 4], [1, 1, 4, 4]]


def test_augment_only_task_owns_its_augmentation_only_writes():
    class Narrow(BoxOwner):
        name = "narrow"
        writes = frozenset({"boxes", "idx"})
        augmentation_only_writes = frozenset({"boxes"})

    task = Narrow()
    task.augment_only = True
    plan = PairSampler([task, StorTask(parts=["temporal"], isolate=False)]).plan(0, 40, (64, 48), plan_rng(0, 0, 0))
    assert plan.boxes.tolist() == [[0, 0, 4, 4], [1, 1, 4, 4]]
    task.augment_only = False
    with pytest.raises(UsageError, match="narrow"):
        PairSampler([task, StorTask(parts=["temporal"], isolate=False)])


def test_stor_parts_choose_its_phases_and_fields():
    spatial_only = StorTask(parts=["spatial"])
    assert spatial_only.phases == {"spatial"} and spatial_only.writes == {"boxes"}
    plan = PairSampler([spatial_only], T=8).plan(0, 100, (64, 48), plan_rng(0, 0, 1))
    assert set(plan.labels) == {"stor.spatial"}


# ---------------------------------------------------------------------------- defaults


def test_inactive_tasks_fall_back_to_core_defaults():
    s = PairSampler([], T=8)
    plans = [s.plan(0, 100, (171, 128), plan_rng(0, 0, i)) for i in range(300)]
    assert all(p.pace == 1 and p.labels == {} for p in plans)
    assert all((np.diff(p.idx, axis=1) == 1).all() for p in plans)
    assert all(p.rot90.tolist() == [0, 0] for p in plans)
    starts = np.array([p.idx[:, 0] for p in plans])
    assert (starts[:, 0] != starts[:, 1]).mean() > 0.9  # independent starts
    sizes = np.array([p.boxes[:, 2:] for p in plans])
    assert (sizes[:, 0] != sizes[:, 1]).any(axis=1).mean() > 0.9  # box 2 an independent crop
    flips = np.array([p.flip for p in plans])
    assert 0.4 < flips.mean() < 0.6


def test_short_video_without_tasks_loops_both_clips():
    plan = PairSampler([], T=16).plan(0, 5, (64, 48), plan_rng(0, 0, 0))
    assert plan.pace == 1 and plan.idx.tolist() == [[i % 5 for i in range(16)]] * 2


def test_pace_too_short_for_every_rate_plays_at_one_with_the_slowest_label():
    plan = PairSampler([PaceTask(rates=[4, 2])], T=16).plan(0, 20, (64, 48), plan_rng(0, 0, 0))
    assert plan.pace == 1 and int(plan.labels["pace.rate"]) == 1


def test_stor_uses_the_core_geometry_through_the_api():
    from cstp_cli import api

    for name in ("rrc_box", "delta_steps", "draw_rrc_size", "corner_shift"):
        assert getattr(stor_mod, name) is getattr(geometry, name) is getattr(api, name)


def test_random_resized_crop_falls_back_to_the_largest_centred_square():
    class Huge:  # every size draw is far too large
        def random(self, n):
            return np.array([1.0, 0.5, 0.9])

    assert geometry.rrc_box(40, 200, Huge()) == (0, 80, 40, 40)


def test_decorrelate_box_sizes_fit_every_rate():
    task = StorTask(decorrelate=True, candidates=5)
    s = PairSampler([task], T=4)
    for i in range(300):
        p = s.plan(0, 30, (64, 48), plan_rng(0, 0, i))
        w, h = (int(v) for v in p.boxes[0, 2:])
        assert stor_mod.every_rate_fits(w, h, 5, 64, 48)


# ---------------------------------------------------------------------------- photometric


def test_photometric_block_has_the_documented_keys_and_shapes():
    ph = draw_photometric(plan_rng(0, 0, 0))
    assert set(ph) == PHOTOMETRIC_KEYS
    assert all(v.shape[0] == 2 for v in ph.values()) and ph["order"].shape == (2, 4)


def test_photometric_probabilities_and_ranges():
    draws = [draw_photometric(plan_rng(1, 0, i)) for i in range(2000)]
    cat = {k: np.concatenate([d[k] for d in draws]) for k in PHOTOMETRIC_KEYS}
    assert np.abs(cat["angle"]).max() <= 10 and np.abs(cat["angle"]).mean() > 4
    assert cat["jitter"].mean() == pytest.approx(0.8, abs=0.03)
    assert cat["gray"].mean() == pytest.approx(0.2, abs=0.03)
    assert cat["blur"].mean() == pytest.approx(0.5, abs=0.03)
    j = cat["jitter"]
    for key in ("brightness", "contrast", "saturation"):
        assert (cat[key][j] >= 0.6).all() and (cat[key][j] <= 1.4).all() and (cat[key][~j] == 1).all()
    assert (np.abs(cat["hue"]) <= 0.1).all()
    assert all(sorted(o) == [0, 1, 2, 3] for o in cat["order"].tolist())
    assert len({tuple(o) for o in cat["order"][j].tolist()}) == 24  # recorded random order
    b = cat["blur"]
    assert (cat["sigma"][b] >= 0.1).all() and (cat["sigma"][b] <= 2).all() and (cat["sigma"][~b] == 0).all()


def test_photometric_probability_zero_is_the_identity():
    ph = draw_photometric(plan_rng(0, 0, 3), p=0.0)
    assert not ph["jitter"].any() and not ph["gray"].any() and not ph["blur"].any()
    assert (ph["angle"] == 0).all() and (ph["brightness"] == 1).all() and (ph["hue"] == 0).all()


def test_photometric_p_sets_the_share_of_clips_with_the_block():
    s = PairSampler([], T=4, photometric_p=0.3)
    angles = np.concatenate([s.plan(0, 10, (32, 24), plan_rng(0, 0, i)).photometric["angle"] for i in range(1500)])
    assert (angles != 0).mean() == pytest.approx(0.3, abs=0.03)


def test_plans_collate_into_a_plan_batch():
    s = PairSampler(default_tasks(), T=8)
    batch = collate_plans([s.plan(i, 50 + i, (64, 48), plan_rng(0, 0, i)) for i in range(3)])
    assert tuple(batch.idx.shape) == (3, 2, 8) and tuple(batch.labels["rot.clips"].shape) == (3, 2)
    assert tuple(batch.photometric["order"].shape) == (3, 2, 4)


# ---------------------------------------------------------------------------- reference


def test_reference_spatial_marginals_match_the_authors_on_341x256():
    s = ReferenceSampler(default_tasks())
    labels = [int(s.plan(0, 300, (341, 256), plan_rng(2, 0, i)).labels["stor.spatial"]) for i in range(6000)]
    share = 100 * np.bincount(labels, minlength=5) / len(labels)
    assert np.all(np.abs(share - np.array([66, 21, 8.5, 3.3, 1.0])) <= 2), share


def test_reference_rotates_before_cropping_with_float_truncated_offsets():
    s = ReferenceSampler(default_tasks(), T=16)
    plans = [s.plan(0, 400, (171, 128), plan_rng(0, 0, i)) for i in range(600)]
    assert all(p.extras["sampling.rot_first"].tolist() == [True, True] for p in plans)
    assert all(np.array_equal(p.labels["rot.clips"], p.rot90) for p in plans)
    assert all(p.pace in (1, 2, 4, 8) and 2 ** int(p.labels["pace.rate"]) == p.pace for p in plans)
    at_pace_one = [p for p in plans if p.pace == 1 and int(p.labels["stor.temporal"]) == 1]
    assert at_pace_one
    assert all(abs(int(p.idx[1, 0] - p.idx[0, 0])) == 2 for p in at_pace_one)  # int(0.2·15) = 2: "0.8" is 13/15
    assert all(p.photometric["angle"].shape == (2,) for p in plans)
    assert (np.concatenate([p.photometric["angle"] for p in plans]) != 0).mean() == pytest.approx(0.3, abs=0.06)


def test_reference_keeps_labels_of_active_tasks_only():
    plan = ReferenceSampler([PaceTask()]).plan(0, 300, (171, 128), plan_rng(0, 0, 0))
    assert set(plan.labels) == {"pace.rate"}


def test_reference_pace_index_uses_only_windows_that_fit():
    assert geometry.reference_pace_index(16, 16) == 0
    assert geometry.reference_pace_index(31, 16) == 1 and geometry.reference_pace_index(30, 16) == 0
    assert geometry.reference_pace_index(10_000, 16) == 3


def test_unknown_mode_is_a_usage_error():
    with pytest.raises(UsageError, match="reference"):
        make_sampler([], mode="authors")


# ---------------------------------------------------------------------------- pairs.jsonl


def test_plan_to_json_writes_schema_one():
    s = PairSampler(default_tasks())
    plan = s.plan(1, 240, (171, 128), plan_rng(0, 0, 5))
    rec = json.loads(json.dumps(plan_to_json(plan, s.mode_label, ["a.avi", "b/c.avi"], s.candidates)))
    assert list(rec) == [
        "schema", "mode", "video", "num_frames", "frame_wh", "T", "pace", "candidates",
        "idx", "boxes", "rot90", "flip", "labels", "measured", "same",
    ]  # fmt: skip
    assert rec["schema"] == 1 and rec["mode"] == "clean" and rec["video"] == "b/c.avi"
    assert rec["candidates"] == ["1", "4/5", "3/5", "2/5", "1/5"]
    assert rec["idx"] == plan.idx.tolist() and rec["boxes"] == plan.boxes.tolist()
    assert set(rec["labels"]) == {"stor.spatial", "stor.temporal", "pace.rate", "rot.clips"}
    assert len(rec["labels"]["rot.clips"]) == 2 and isinstance(rec["labels"]["pace.rate"], int)
    assert set(rec["measured"]) == {"spatial", "temporal", "shared_frames"}
    assert set(rec["same"]) <= {"idx", "boxes", "flip", "rot90", "photometric"}


def test_mode_labels_and_candidates():
    assert PairSampler(default_tasks(decorrelate=True)).mode_label == "clean+decorrelate"
    assert ReferenceSampler(default_tasks()).mode_label == "reference"
    assert candidate_strings(4) == ["1", "3/4", "1/2", "1/4"]
    assert PairSampler([StorTask(candidates=3)]).candidates == ["1", "2/3", "1/3"]


# ---------------------------------------------------------------------------- task neutrality


class NoPeeking(dict):
    """A task's options that fail the test when the clean sampler reads them."""

    def __getitem__(self, key):
        raise AssertionError(f"the clean sampler read option {key!r}")

    def get(self, key, default=None):
        raise AssertionError(f"the clean sampler read option {key!r}")


def test_clean_sampler_reads_no_task_option():
    tasks = default_tasks(decorrelate=True, candidates=3)
    for task in tasks:
        task.options = NoPeeking()
    s = PairSampler(tasks, T=8)
    plan = s.plan(0, 100, (64, 48), plan_rng(0, 0, 0))
    assert s.mode_label == "clean+decorrelate" and s.candidates == ["1", "2/3", "1/3"]
    assert int(plan.labels["stor.spatial"]) < 3


class Tagged(PretextTask):
    name = "tagged"

    @property
    def mode_tag(self):
        return "mine"

    def plan_info(self):
        return {"tagged.note": "hello"}

    def label_classes(self):
        return {"tagged.x": 7}


def test_mode_label_joins_the_tags_tasks_describe():
    s = PairSampler([Tagged(), StorTask(decorrelate=True)])
    assert s.mode_label == "clean+mine+decorrelate"
    assert s.label_classes() == {"tagged.x": 7, "stor.spatial": 5, "stor.temporal": 5}


def test_plan_info_of_tasks_goes_into_pairs_jsonl_with_default_candidates_without_stor():
    s = PairSampler([Tagged()], T=4)
    rec = plan_to_json(s.plan(0, 30, (64, 48), plan_rng(0, 0, 0)), s.mode_label, ["a.avi"], s.plan_info())
    assert rec["tagged.note"] == "hello" and rec["candidates"] == ["1", "4/5", "3/5", "2/5", "1/5"]


class Sharer(PretextTask):
    name = "sharer"
    shared = frozenset({"boxes", "flip", "photometric"})


def test_shared_fields_are_copied_from_clip_one_to_clip_two():
    plans = [PairSampler([Sharer()], T=4).plan(0, 50, (64, 48), plan_rng(0, 0, i)) for i in range(40)]
    assert all(np.array_equal(p.boxes[0], p.boxes[1]) and p.flip[0] == p.flip[1] for p in plans)
    assert all(np.array_equal(v[0], v[1]) for p in plans for v in p.photometric.values())
    free = [PairSampler([], T=4).plan(0, 50, (64, 48), plan_rng(0, 0, i)) for i in range(40)]
    assert np.mean([np.array_equal(p.boxes[0], p.boxes[1]) for p in free]) < 0.2


def test_a_shared_field_owned_by_another_task_is_a_usage_error_naming_both():
    with pytest.raises(UsageError, match=r"sharer.*boxes.*boxer"):
        PairSampler([Sharer(), BoxOwner()])


def test_temporal_only_stor_keeps_crop_flip_and_colour_the_same_so_only_time_differs():
    s = PairSampler([StorTask(parts=["temporal"]), PaceTask(rates=[1, 2])], T=8)
    plans = [s.plan(0, 100, (64, 48), plan_rng(0, 0, i)) for i in range(60)]
    assert all({"boxes", "flip", "photometric"} <= set(same_fields(p)) for p in plans)
    moved = [p for p in plans if int(p.labels["stor.temporal"]) > 0]
    assert moved and all("idx" not in same_fields(p) for p in moved)


def test_spatial_only_stor_keeps_the_frames_the_same():
    s = PairSampler([StorTask(parts=["spatial"]), PaceTask(rates=[1, 2])], T=8)
    plans = [s.plan(0, 100, (64, 48), plan_rng(0, 0, i)) for i in range(60)]
    assert all(np.array_equal(p.idx[0], p.idx[1]) for p in plans)
    assert np.mean(["boxes" in same_fields(p) for p in plans]) < 0.5  # boxes still differ by the label


def test_stor_isolate_false_restores_independent_crops_for_temporal_only():
    s = PairSampler([StorTask(parts=["temporal"], isolate=False)], T=8)
    plans = [s.plan(0, 100, (64, 48), plan_rng(0, 0, i)) for i in range(40)]
    assert np.mean(["boxes" in same_fields(p) for p in plans]) < 0.2


def test_temporal_only_stor_augmented_clips_are_equal_where_their_frames_coincide():
    import torch

    from cstp_cli.api import delta_steps
    from cstp_cli.augment import augment_batch
    from cstp_cli.data.memcache import render_videos

    video = render_videos(1, 40, (32, 24), seed=0)[0]
    s = PairSampler([StorTask(parts=["temporal"])], T=6)
    plans = [s.plan(0, 40, (32, 24), plan_rng(0, 0, i)) for i in range(8)]
    frames = torch.as_tensor(np.stack([np.stack([video[p.idx[0]], video[p.idx[1]]]) for p in plans]))
    x = augment_batch(frames, collate_plans(plans), out_size=16)  # [B, 2, 3, T, S, S]
    for b, p in enumerate(plans):
        d = delta_steps(int(p.labels["stor.temporal"]), 5, 6)
        first, second = (0, 1) if p.idx[1, 0] >= p.idx[0, 0] else (1, 0)  # the clip that starts later is "second"
        torch.testing.assert_close(x[b, first][:, d:], x[b, second][:, : 6 - d], rtol=0, atol=0)
