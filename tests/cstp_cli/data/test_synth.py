"""The built-in synthetic action dataset (cstp_cli/data/synth.py; issue 2 item 6)."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest

from cstp_cli.data import synth
from cstp_cli.data.datasets import load_dataset
from cstp_cli.errors import DataError
from cstp_cli.data.video import decode

TINY = {"classes": 3, "train_per_class": 2, "test_per_class": 1, "frames": 6, "size": (24, 16)}


def decoded_set(root):
    return {p.relative_to(root).as_posix(): decode(p, size=None).frames for p in sorted(root.glob("*/*.mp4"))}


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    t0 = time.perf_counter()
    root = synth.generate(tmp_path_factory.mktemp("synth") / "set", seed=5, **TINY)
    return root, time.perf_counter() - t0


def test_tiny_set_generates_quickly(tiny_set):
    assert tiny_set[1] < 5.0


def test_same_seed_gives_identical_videos(tiny_set, tmp_path):
    again = synth.generate(tmp_path / "again", seed=5, **TINY)
    first, second = decoded_set(tiny_set[0]), decoded_set(again)
    assert first.keys() == second.keys() and len(first) == 9
    assert all(np.array_equal(first[k], second[k]) for k in first)


def test_other_seed_gives_other_videos(tiny_set, tmp_path):
    other = decoded_set(synth.generate(tmp_path / "other", seed=6, **TINY))
    first = decoded_set(tiny_set[0])
    assert not any(np.array_equal(first[k], other[k]) for k in first)


def test_rendering_does_not_depend_on_worker_count(tmp_path):
    params = {**TINY, "classes": 2, "frames": 3}
    one = decoded_set(synth.generate(tmp_path / "one", workers=1, **params))
    two = decoded_set(synth.generate(tmp_path / "two", workers=2, **params))
    assert all(np.array_equal(one[k], two[k]) for k in one)


def test_set_is_a_ucf101_layout_with_class_count_and_frames(tiny_set):
    index = load_dataset(tiny_set[0])
    assert index.kind == "ucf101" and index.folds == [1, 2, 3]
    assert index.classes == list(synth.CLASS_NAMES[:3])
    assert len(index) == 9
    frames = decode(index.videos[0].path, size=None).frames
    assert frames.shape == (6, 16, 24, 3)


def test_split_lists_have_requested_counts_and_keep_groups_together(tiny_set):
    index = load_dataset(tiny_set[0])
    for fold in index.folds:
        for which, per_class in (("train", 2), ("test", 1)):
            labels = [index.videos[i].label for i in index.split(fold, which)]
            assert sorted(labels) == sorted(list(range(3)) * per_class)
        test_groups = {(v.label, v.group) for v in index.videos if v.splits[fold] == "test"}
        train_groups = {(v.label, v.group) for v in index.videos if v.splits[fold] == "train"}
        assert not test_groups & train_groups


def test_default_plan_has_whole_groups_of_five_and_rotating_test_blocks():
    layout = synth.plan(10, 40, 15, 5)
    assert layout["clips"] == 5 and layout["groups"] == 11
    assert layout["test_groups"] == {1: [1, 2, 3], 2: [4, 5, 6], 3: [7, 8, 9]}


def test_synth_json_records_parameters(tiny_set):
    meta = json.loads((tiny_set[0] / "synth.json").read_text())
    assert meta["seed"] == 5 and meta["size"] == [24, 16] and meta["videos"] == 9


def test_default_is_long_enough_for_every_overlap_label_at_paces_1_to_4():
    T, n, s_max = 8, 5, 4  # METHOD §2: N >= s_max·(T − 1 + δ_{n−1}) + 1
    delta = ((T - 1) * (n - 1) * 2 + n) // (2 * n)
    assert synth.DEFAULT_SYNTH["frames"] >= s_max * (T - 1 + delta) + 1
    assert len(synth.CLASS_NAMES) >= 8 and synth.DEFAULT_SYNTH["classes"] >= 8


def test_existing_non_empty_output_is_refused(tiny_set):
    with pytest.raises(DataError, match="already exists"):
        synth.generate(tiny_set[0], **TINY)


def test_no_temporary_folder_is_left_behind(tiny_set):
    assert [p.name for p in tiny_set[0].parent.iterdir()] == ["set"]


def test_failed_generation_leaves_neither_dataset_nor_temporary_folder(tmp_path, monkeypatch):
    real, calls = synth._write_clip, []

    def failing(job):
        calls.append(job)
        if len(calls) == 4:
            raise KeyboardInterrupt  # as if killed part-way
        return real(job)

    monkeypatch.setattr(synth, "_write_clip", failing)
    with pytest.raises(KeyboardInterrupt):
        synth.generate(tmp_path / "set", **TINY)
    assert list(tmp_path.iterdir()) == []


def test_stale_temporary_folder_of_a_dead_generator_is_removed(tmp_path):
    stale = tmp_path / ".set.tmp-999999999-deadbeef"
    (stale / "Translate").mkdir(parents=True)
    synth.generate(tmp_path / "set", **{**TINY, "frames": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]


def test_default_dataset_root_generates_once_then_reuses(tmp_path, monkeypatch):
    calls = []
    real = synth.generate

    def small(out, **params):
        calls.append(out)
        return real(out, **{**params, **TINY, "workers": 1})

    monkeypatch.setenv("CSTP_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(synth, "generate", small)
    first = synth.default_dataset_root()
    second = synth.default_dataset_root()
    assert first == second and len(calls) == 1
    assert first.parent == tmp_path and first.name.startswith(f"synthetic-v{synth.SYNTH_VERSION}-")
    assert (first / "ucfTrainTestlist" / "classInd.txt").is_file()


# --- classes are closed under horizontal flip and 90° rotation (constructive) ---------

SIZE = (64, 48)


def mirrored(p: dict) -> dict:
    """The parameters of the horizontally flipped motion (θ → π − θ, α0 → π − α0, h → −h,
    x0 → −x0): all inside the sampler's support (uniform angles, h = ±1, symmetric x0)."""
    return {
        **p,
        "theta": (math.pi - p["theta"]) % (2 * math.pi),
        "alpha0": (math.pi - p["alpha0"]) % (2 * math.pi),
        "h": -p["h"],
        "x0": -p["x0"],
        "drift_phi": (math.pi - p["drift_phi"]) % (2 * math.pi),
    }


def rotated(p: dict) -> dict:
    """The parameters of the motion rotated by 90° ((x, y) → (−y, x))."""
    return {
        **p,
        "theta": (p["theta"] + math.pi / 2) % (2 * math.pi),
        "x0": -p["y0"],
        "y0": p["x0"],
        "alpha0": p["alpha0"] + math.pi / 2,
        "drift_phi": p["drift_phi"] + math.pi / 2,
    }


@pytest.mark.parametrize("kind", synth.CLASS_NAMES)
def test_flipped_motion_is_a_motion_of_the_same_class(kind):
    for i in range(5):
        p = synth.sample_motion(kind, np.random.default_rng(i), 64, SIZE)
        a, b = synth.trajectory(kind, p, 64), synth.trajectory(kind, mirrored(p), 64)
        assert np.allclose(b.cx, -a.cx) and np.allclose(b.cy, a.cy) and np.allclose(b.scale, a.scale)
        assert np.allclose(b.bx, -a.bx) and np.allclose(b.by, a.by)  # background drift mirrors too
        assert np.allclose(np.exp(1j * b.angle), -np.exp(-1j * a.angle))  # orientation π − α


@pytest.mark.parametrize("kind", synth.CLASS_NAMES)
def test_rotated_motion_is_a_motion_of_the_same_class(kind):
    for i in range(5):
        p = synth.sample_motion(kind, np.random.default_rng(i), 64, SIZE)
        a, b = synth.trajectory(kind, p, 64), synth.trajectory(kind, rotated(p), 64)
        assert np.allclose(b.cx, -a.cy) and np.allclose(b.cy, a.cx) and np.allclose(b.scale, a.scale)
        assert np.allclose(b.bx, -a.by) and np.allclose(b.by, a.bx)
        assert np.allclose(np.exp(1j * b.angle), np.exp(1j * (a.angle + math.pi / 2)))


@pytest.mark.parametrize("kind", synth.CLASS_NAMES)
def test_direction_and_handedness_are_symmetric_within_each_class(kind):
    draws = [synth.sample_motion(kind, np.random.default_rng([9, i]), 64, SIZE) for i in range(400)]
    theta = np.array([d["theta"] for d in draws])
    assert abs(np.mean(np.exp(1j * theta))) < 0.15  # no preferred direction (Rayleigh-type check)
    assert 0.4 < np.mean([d["h"] > 0 for d in draws]) < 0.6
    assert abs(np.mean([d["x0"] for d in draws])) < 0.1 * SIZE[0]


@pytest.mark.parametrize(("shape", "texture", "background"), list(zip(synth.SHAPES, synth.TEXTURES * 2, synth.BACKGROUNDS * 2)))
def test_rendered_flip_equals_rendering_of_flipped_parameters(shape, texture, background):
    rng = np.random.default_rng(3)
    scene = synth.sample_scene(rng)
    scene["object"].update(shape=shape, texture=texture)
    bg = {**scene["background"], "kind": background}
    flipped_bg = {**bg, "angle": math.pi - bg["angle"], "grid": bg["grid"][:, ::-1], "grain": bg["grain"][:, ::-1]}
    p = synth.sample_motion("ZigZag", rng, 12, SIZE)
    a = synth.render({**scene, "background": bg}, synth.trajectory("ZigZag", p, 12), 9.0, SIZE)
    b = synth.render({**scene, "background": flipped_bg}, synth.trajectory("ZigZag", mirrored(p), 12), 9.0, SIZE)
    differs = np.abs(a[:, :, ::-1].astype(int) - b).max(axis=-1) > 2
    assert differs.mean() < 0.001  # equal up to float rounding at a few edge pixels


def test_appearance_distribution_is_the_same_for_every_class():
    # scenes are drawn by sample_scene(rng) from a stream seeded (seed, 1, class, group):
    # the class only changes the seed, never the distribution
    def freqs(c, key, names):
        draws = [synth.sample_scene(np.random.default_rng([0, 1, c, g]))["object"][key] for g in range(300)]
        return np.array([draws.count(n) for n in names]) / len(draws)

    for key, names in (("shape", synth.SHAPES), ("texture", synth.TEXTURES)):
        assert np.abs(freqs(0, key, names) - freqs(7, key, names)).max() < 0.1


# --- pace and rotation are learnable from the frames (issue 4 item 7) ------------------


def mean_speed(kind: str, p: dict, frames: int = 64) -> float:
    """Mean per-frame change of the object state: centre (px) + base radius 8 px × (angle
    change + scale change) — the apparent speed the pace task must read."""
    m = synth.trajectory(kind, p, frames)
    return float(np.mean(np.hypot(np.diff(m.cx), np.diff(m.cy)) + 8 * np.abs(np.diff(m.angle)) + 8 * np.abs(np.diff(m.scale))))


@pytest.mark.parametrize("kind", synth.CLASS_NAMES)
def test_speeds_within_a_class_span_less_than_one_pace_doubling(kind):
    # at paces s and 2s the apparent speed ranges of a class must not overlap
    speeds = [mean_speed(kind, synth.sample_motion(kind, np.random.default_rng([4, i]), 64, SIZE)) for i in range(200)]
    assert min(speeds) > 0 and max(speeds) / min(speeds) < 1.9


@pytest.mark.parametrize("kind", synth.CLASS_NAMES)
def test_periodic_motions_do_not_alias_at_pace_4(kind):
    for i in range(50):
        p = synth.sample_motion(kind, np.random.default_rng([5, i]), 64, SIZE)
        assert p.get("period", math.inf) > 2 * 4  # at least two samples per period at pace 4


def test_light_from_the_top_gives_every_class_a_canonical_up():
    # class-independent cue: the top of each frame is brighter than its bottom, in every class
    for c, _ in enumerate(synth.CLASS_NAMES):
        frames = np.stack([synth.render_clip(0, c, g, 1, 2, (32, 24)) for g in range(1, 7)]).astype(float)
        top, bottom = frames[:, :, :6].mean(axis=(2, 3, 4)), frames[:, :, -6:].mean(axis=(2, 3, 4))
        assert (top > bottom).mean() >= 0.9


def test_light_ramp_is_the_same_for_every_scene_and_flip_invariant():
    y = np.linspace(-12, 12, 25)
    ramp = synth.light_ramp(y, 24)
    assert ramp[0] == pytest.approx(1 + synth.LIGHT) and ramp[-1] == pytest.approx(1 - synth.LIGHT)
    assert np.all(np.diff(ramp) < 0)


def test_texture_scroll_speed_is_class_independent_and_unaliased_at_pace_4():
    finest_period = 2 / 3.5  # stripe/checker period (object radii) at the largest texture freq
    for kind in synth.CLASS_NAMES:
        v = np.abs([synth.sample_motion(kind, np.random.default_rng([6, i]), 64, SIZE)["scroll_v"] for i in range(100)])
        assert np.all(v >= (1 - synth.SPEED_SPREAD) * synth.TEXTURE_SCROLL - 1e-12)
        assert np.all(v <= (1 + synth.SPEED_SPREAD) * synth.TEXTURE_SCROLL + 1e-12)
        assert 4 * v.max() < finest_period / 2


def test_scrolling_texture_moves_the_object_pattern_between_frames():
    scene = synth.sample_scene(np.random.default_rng(2))
    scene["object"].update(texture="stripes", freq=2.0)
    still = synth.Motion(np.zeros(4), np.zeros(4), np.zeros(4), np.ones(4))
    scrolling = synth.Motion(still.cx, still.cy, still.angle, still.scale, 0.1 * np.arange(4))
    a, b = synth.render(scene, still, 12.0, SIZE), synth.render(scene, scrolling, 12.0, SIZE)
    assert np.array_equal(a[0], a[3]) and np.array_equal(a[0], b[0]) and not np.array_equal(b[0], b[3])


def test_background_drift_is_class_independent_and_moves_patterned_backgrounds():
    for kind in synth.CLASS_NAMES:
        v = [synth.sample_motion(kind, np.random.default_rng([7, i]), 64, SIZE)["drift_v"] for i in range(100)]
        lo, hi = (1 - synth.SPEED_SPREAD) * synth.BACKGROUND_DRIFT * 48, (1 + synth.SPEED_SPREAD) * synth.BACKGROUND_DRIFT * 48
        assert lo - 1e-9 <= min(v) and max(v) <= hi + 1e-9
    scene = synth.sample_scene(np.random.default_rng(1))
    scene["background"]["kind"] = "blotches"
    a = synth.render_background(scene["background"], SIZE)
    b = synth.render_background(scene["background"], SIZE, (3.0, 0.0))  # 3 px = 6 samples right
    assert not np.allclose(a, b) and np.allclose(a[:, 20:-20], b[:, 26:-14], atol=1e-4)


def test_mottle_keeps_a_uniform_nodes_spread_and_decorrelates_over_its_change_period():
    k = synth.MOTTLE_CHANGE
    grids = np.stack([synth.mottle(np.random.default_rng([5, i]), 5 * k) for i in range(200)])  # [200, 5k, 6, 8]
    assert np.allclose(grids.std(axis=(0, 2, 3)), 1 / math.sqrt(12), rtol=0.1)  # every frame, as U[0, 1]

    def corr(d: int) -> float:
        return float(np.corrcoef(grids[:, : 3 * k].ravel(), grids[:, d: d + 3 * k].ravel())[0, 1])

    assert corr(1) > 0.98 and corr(k // 4) > 0.85 and corr(2 * k) < 0.1


def test_changing_mottle_changes_the_background_where_the_camera_stands_still():
    scene = synth.sample_scene(np.random.default_rng(3))
    n = synth.MOTTLE_CHANGE
    still = synth.Motion(np.full(n, 1e3), np.zeros(n), np.zeros(n), np.ones(n))  # object far outside
    changing = synth.Motion(still.cx, still.cy, still.angle, still.scale, mottle=synth.mottle(np.random.default_rng(4), n))
    a, b = synth.render(scene, still, 6.0, SIZE), synth.render(scene, changing, 6.0, SIZE)
    assert np.array_equal(a[0], a[-1])
    assert np.abs(b[0].astype(int) - b[-1]).mean() > 4 * np.abs(b[0].astype(int) - b[1]).mean() > 0
