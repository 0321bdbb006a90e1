"""Tests of cstp_cli.augment against an independent per-clip reference (METHOD §2.4, App. A).

The reference below is built clip by clip, in a Python loop, from torchvision's functional
transforms (resized_crop, horizontal_flip, rotate, adjust_*, rgb_to_grayscale,
gaussian_blur) and torch.rot90. Tolerances:

* geometry where both sides sample the same points (pure crops, scale 1 rotations, the
  interior of scaled crops): 1e-5 / 1e-4 — only float32 rounding of the sample positions
  (≈1e-5 px on these frames) separates them;
* photometric operations: 1e-5 (2e-5 for hue) — the same formulas, rounded differently;
* where the two pipelines differ by design (one bilinear sampling vs resize-then-rotate's
  two, frame pixels vs clamping at the box border) we use smooth frames, whose bilinear
  error is a fraction of a grey level, and bound the error by 2/255 (4/255 for two
  resamplings); a misplaced box, a wrong rotation sense or centre misses by far more.
  Scaled crops differ from crop-then-resize only on the outer ring of output pixels
  (mean error < 1/255 on smooth frames).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF

from cstp_cli.api import PairPlan, PretextTask, collate_plans
from cstp_cli.augment import augment_batch, center_clips, normalise

torch.set_num_threads(1)
BILINEAR = TF.InterpolationMode.BILINEAR
W, H, T = 48, 36, 2

# --------------------------------------------------------------------------- helpers


def noise_frames(b: int, t: int = T, h: int = H, w: int = W, seed: int = 0) -> torch.Tensor:
    """uint8[b, 2, t, h, w, 3] white noise (any misplaced sample shows)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, 2, t, h, w, 3), dtype=torch.uint8, generator=g)


def smooth_frames(b: int, t: int = T, h: int = H, w: int = W, seed: int = 0) -> torch.Tensor:
    """uint8[b, 2, t, h, w, 3] low-frequency sinusoids (bilinear error ≪ 1 grey level)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    out = np.empty((b, 2, t, h, w, 3))
    for idx in np.ndindex(b, 2, t, 3):
        fx, fy, ph = rng.uniform(0.01, 0.025), rng.uniform(0.01, 0.025), rng.uniform(0, 2 * np.pi)
        out[idx[0], idx[1], idx[2], :, :, idx[3]] = 127.5 + 120 * np.sin(2 * np.pi * (fx * x + fy * y) + ph)
    return torch.as_tensor(np.round(out).clip(0, 255).astype(np.uint8))


def identity_photometric() -> dict[str, np.ndarray]:
    """Every photometric key present, every operation off (per clip, leading axis 2)."""
    return {
        "angle": np.zeros(2),
        "jitter": np.zeros(2, bool),
        "brightness": np.ones(2),
        "contrast": np.ones(2),
        "saturation": np.ones(2),
        "hue": np.zeros(2),
        "order": np.tile(np.arange(4), (2, 1)),
        "gray": np.zeros(2, bool),
        "blur": np.zeros(2, bool),
        "sigma": np.ones(2),
    }


def make_batch(boxes, flip=None, rot90=None, photometric=None, extras=None, wh=(W, H), t=T):
    """PlanBatch from per-pair lists (boxes[b] = [[x, y, w, h]] * 2, photometric[b] = dict)."""
    plans = []
    for b, pair in enumerate(boxes):
        plans.append(
            PairPlan(
                video=b,
                num_frames=t,
                frame_wh=wh,
                T=t,
                idx=np.zeros((2, t), np.int64),
                boxes=np.asarray(pair, np.int64),
                rot90=np.asarray(rot90[b] if rot90 else [0, 0], np.int64),
                flip=np.asarray(flip[b] if flip else [False, False], bool),
                photometric=photometric[b] if photometric else {},
                extras=extras[b] if extras else {},
            )
        )
    return collate_plans(plans)


def clip_float(frames: torch.Tensor, b: int, c: int) -> torch.Tensor:
    """float[T, 3, H, W] in [0, 1] of one clip (torchvision's video layout)."""
    return frames[b, c].permute(0, 3, 1, 2).float() / 255.0


def as_output(ref: torch.Tensor) -> torch.Tensor:
    """Reference clip float[T, 3, S, S] → augment's layout [3, T, S, S]."""
    return ref.permute(1, 0, 2, 3)


def ref_geometry(img, box, flip, angle, size):
    """torchvision: crop + resize (bilinear, no antialias), horizontal flip, rotate (zero fill)."""
    x, y, w, h = box
    out = TF.resized_crop(img, y, x, h, w, [size, size], interpolation=BILINEAR, antialias=False)
    if flip:
        out = TF.horizontal_flip(out)
    if angle:
        out = TF.rotate(out, float(angle), interpolation=BILINEAR)
    return out


def ref_photometric(img, p, c):
    """torchvision's functional colour jitter (in p["order"]), grayscale, blur for clip c."""
    if p["jitter"][c]:
        for op in p["order"][c]:
            if op == 0:
                img = TF.adjust_brightness(img, float(p["brightness"][c]))
            elif op == 1:
                img = TF.adjust_contrast(img, float(p["contrast"][c]))
            elif op == 2:
                img = TF.adjust_saturation(img, float(p["saturation"][c]))
            else:
                img = TF.adjust_hue(img, float(p["hue"][c]))
    if p["gray"][c]:
        img = TF.rgb_to_grayscale(img, num_output_channels=3)
    if p["blur"][c]:
        sigma = float(p["sigma"][c])
        k = 2 * min(math.ceil(3 * sigma), img.shape[-1] - 1) + 1
        img = TF.gaussian_blur(img, [k, k], [sigma, sigma])
    return img


def run(frames, batch, size, tasks=()):
    """augment_batch mapped back to [0, 1] for comparisons."""
    return (augment_batch(frames, batch, tasks=tasks, out_size=size) + 1.0) / 2.0


def photometric_case(frames, phots, size=16, tol=1e-5):
    """Pure crops (exact geometry) + given photometric dicts, compared with the reference."""
    b = frames.shape[0]
    boxes = [[[3 + i, 2, size, size], [10, 5 + i, size, size]] for i in range(b)]
    out = run(frames, make_batch(boxes, photometric=phots), size)
    for i in range(b):
        for c in range(2):
            img = ref_geometry(clip_float(frames, i, c), boxes[i][c], False, 0, size)
            ref = ref_photometric(img, phots[i], c)
            torch.testing.assert_close(out[i, c], as_output(ref), atol=tol, rtol=0)


# --------------------------------------------------------------------------- geometry


def test_pure_crop_equals_slicing_for_every_clip():
    size = 16
    frames = noise_frames(2)
    boxes = [[[0, 0, size, size], [W - size, H - size, size, size]], [[7, 3, size, size], [20, 11, size, size]]]
    out = run(frames, make_batch(boxes), size)
    for b in range(2):
        for c in range(2):
            x, y = boxes[b][c][:2]
            ref = clip_float(frames, b, c)[:, :, y : y + size, x : x + size]
            torch.testing.assert_close(out[b, c], as_output(ref), atol=1e-5, rtol=0)


def test_flip_matches_torchvision_horizontal_flip():
    size = 16
    frames = noise_frames(1, seed=1)
    boxes = [[[5, 4, size, size], [12, 9, size, size]]]
    out = run(frames, make_batch(boxes, flip=[[True, False]]), size)
    for c, flip in enumerate([True, False]):
        ref = ref_geometry(clip_float(frames, 0, c), boxes[0][c], flip, 0, size)
        torch.testing.assert_close(out[0, c], as_output(ref), atol=1e-5, rtol=0)


def _interior(box_side: int, size: int) -> torch.Tensor:
    """bool[size]: outputs whose two bilinear taps lie inside the box (no border clamping)."""
    src = (torch.arange(size, dtype=torch.float64) + 0.5) * box_side / size - 0.5
    return (src >= 0) & (src <= box_side - 1)


def test_scaled_crop_equals_resized_crop_inside_the_box():
    size = 16
    frames = noise_frames(2, seed=2)
    boxes = [[[2, 3, 30, 20], [10, 1, 9, 13]], [[0, 0, W, H], [17, 8, 16, 27]]]
    flips = [[False, True], [True, False]]
    out = run(frames, make_batch(boxes, flip=flips), size)
    for b in range(2):
        for c in range(2):
            _, _, w, h = boxes[b][c]
            ref = as_output(ref_geometry(clip_float(frames, b, c), boxes[b][c], flips[b][c], 0, size))
            rows, cols = _interior(h, size), _interior(w, size)
            got = out[b, c][:, :, rows][:, :, :, cols]
            torch.testing.assert_close(got, ref[:, :, rows][:, :, :, cols], atol=1e-5, rtol=0)


def test_scaled_crop_differs_from_resized_crop_only_on_the_outer_ring():
    # The reference clamps at the box edge; augment reads the frame pixels around the box.
    size = 16
    frames = smooth_frames(1, seed=3)
    boxes = [[[4, 6, 12, 9], [1, 2, 44, 30]]]
    out = run(frames, make_batch(boxes), size)
    for c in range(2):
        ref = as_output(ref_geometry(clip_float(frames, 0, c), boxes[0][c], False, 0, size))
        diff = (out[0, c] - ref).abs()
        assert diff[..., 1:-1, 1:-1].max() < 1e-5 and diff.mean() < 1 / 255


def test_rotation_matches_rotating_the_frame_about_the_box_centre():
    size = 20
    frames = noise_frames(2, seed=4)
    boxes = [[[6, 5, size, size], [20, 10, size, size]], [[14, 2, size, size], [3, 12, size, size]]]
    flips = [[False, True], [True, False]]
    angles = [[9.5, -7.0], [3.25, -10.0]]
    phots = [{"angle": np.asarray(a)} for a in angles]
    out = run(frames, make_batch(boxes, flip=flips, photometric=phots), size)
    for b in range(2):
        for c in range(2):
            x, y, w, h = boxes[b][c]
            img = clip_float(frames, b, c)
            if flips[b][c]:  # flipping the crop = cropping the mirrored box of the flipped frame
                img, x = TF.horizontal_flip(img), W - x - w
            img = TF.rotate(img, angles[b][c], interpolation=BILINEAR, center=[x + w / 2, y + h / 2])
            ref = img[:, :, y : y + h, x : x + w]
            torch.testing.assert_close(out[b, c], as_output(ref), atol=1e-4, rtol=0)


def test_rotation_turns_the_resized_crop_inside_its_inscribed_disc():
    size = 24
    frames = smooth_frames(1, seed=5)
    boxes = [[[3, 2, 40, 18], [10, 4, 14, 30]]]
    flips, angles = [[True, False]], [[10.0, -8.0]]
    batch = make_batch(boxes, flip=flips, photometric=[{"angle": np.asarray(angles[0])}])
    out = run(frames, batch, size)
    yy, xx = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    disc = (xx - size / 2) ** 2 + (yy - size / 2) ** 2 < (size / 2 - 2) ** 2
    for c in range(2):
        ref = as_output(ref_geometry(clip_float(frames, 0, c), boxes[0][c], flips[0][c], angles[0][c], size))
        assert (out[0, c] - ref)[..., disc].abs().max() < 4 / 255


@pytest.mark.parametrize("flip", [False, True])
def test_rot_first_turns_the_full_frame_before_a_zero_padded_crop(flip):
    size = 16
    frames = noise_frames(2, seed=6)
    # boxes in the turned frame's coordinates, some reaching outside it
    boxes = [[[4, 3, size, size], [30, -5, size, size]], [[-6, 20, size, size], [10, 40, size, size]]]
    turns = [[0, 1], [2, 3]]
    extras = [{"sampling.rot_first": np.ones(2, bool)}] * 2
    out = run(frames, make_batch(boxes, flip=[[flip, flip]] * 2, rot90=turns, extras=extras), size)
    for b in range(2):
        for c in range(2):
            x, y, w, h = boxes[b][c]
            img = torch.rot90(clip_float(frames, b, c), turns[b][c], dims=(-2, -1))
            pad = 2 * size
            img = torch.nn.functional.pad(img, (pad, pad, pad, pad))
            ref = img[:, :, y + pad : y + pad + h, x + pad : x + pad + w]
            if flip:
                ref = TF.horizontal_flip(ref)
            torch.testing.assert_close(out[b, c], as_output(ref), atol=1e-5, rtol=0)


def test_rot90_is_left_to_tasks_unless_rot_first():
    size = 16
    frames = noise_frames(1, seed=7)
    boxes = [[[4, 3, size, size], [10, 8, size, size]]]
    plain = run(frames, make_batch(boxes), size)
    no_key = run(frames, make_batch(boxes, rot90=[[1, 3]]), size)
    off = run(frames, make_batch(boxes, rot90=[[1, 3]], extras=[{"sampling.rot_first": np.zeros(2, bool)}]), size)
    assert torch.equal(no_key, plain) and torch.equal(off, plain)


# --------------------------------------------------------------------------- photometric


def _jitter_only(key: str, values) -> list[dict]:
    phots = []
    for v in values:
        p = identity_photometric()
        p["jitter"][:] = True
        p[key] = np.asarray(v, np.float64)
        phots.append(p)
    return phots


def test_brightness_matches_torchvision():
    photometric_case(noise_frames(2, seed=8), _jitter_only("brightness", [[0.6, 1.4], [1.0, 0.85]]))


def test_contrast_uses_each_frames_own_mean_like_torchvision():
    frames = noise_frames(2, t=3, seed=9)
    frames[:, :, 0] //= 4  # frames of very different brightness: a clip-wide mean would differ
    photometric_case(frames, _jitter_only("contrast", [[0.6, 1.4], [1.2, 0.7]]))


def test_saturation_matches_torchvision():
    photometric_case(noise_frames(2, seed=10), _jitter_only("saturation", [[0.6, 1.4], [0.0, 1.3]]))


def test_hue_matches_torchvision():
    photometric_case(noise_frames(2, seed=11), _jitter_only("hue", [[0.1, -0.1], [0.5, -0.5]]), tol=2e-5)


def _random_jitter(rng, b):
    phots = []
    for _ in range(b):
        p = identity_photometric()
        p["jitter"][:] = True
        for k in ("brightness", "contrast", "saturation"):
            p[k] = rng.uniform(0.6, 1.4, 2)
        p["hue"] = rng.uniform(-0.1, 0.1, 2)
        p["order"] = np.stack([rng.permutation(4) for _ in range(2)])
        phots.append(p)
    return phots


def test_jitter_follows_each_clips_recorded_order():
    phots = _random_jitter(np.random.default_rng(12), 3)
    photometric_case(noise_frames(3, seed=12), phots, tol=2e-5)


def test_jitter_order_changes_the_result():
    frames = noise_frames(1, seed=13)
    phots = _random_jitter(np.random.default_rng(13), 1)
    boxes = [[[0, 0, 16, 16]] * 2]
    phots[0]["order"] = np.asarray([[0, 1, 2, 3], [3, 2, 1, 0]])
    out = run(frames, make_batch(boxes, photometric=phots), 16)
    swapped = {k: v.copy() for k, v in phots[0].items()}
    swapped["order"] = swapped["order"][::-1].copy()
    again = run(frames, make_batch(boxes, photometric=[swapped]), 16)
    assert (out - again).abs().max() > 1e-2


def test_jitter_flag_off_keeps_colours():
    frames = noise_frames(1, seed=14)
    phots = _random_jitter(np.random.default_rng(14), 1)
    phots[0]["jitter"][:] = False
    boxes = [[[2, 2, 16, 16]] * 2]
    assert torch.equal(run(frames, make_batch(boxes, photometric=phots), 16), run(frames, make_batch(boxes), 16))


def test_grayscale_matches_torchvision():
    phots = [identity_photometric()]
    phots[0]["gray"] = np.asarray([True, False])
    photometric_case(noise_frames(1, seed=15), phots)


def test_blur_matches_torchvision_per_clip_sigma():
    phots = [identity_photometric(), identity_photometric()]
    for p, sig in zip(phots, ([0.1, 2.0], [0.7, 1.3])):
        p["blur"][:] = True
        p["sigma"] = np.asarray(sig)
    phots[1]["blur"][1] = False
    photometric_case(noise_frames(2, seed=16), phots)


def test_whole_block_matches_reference():
    rng = np.random.default_rng(17)
    phots = _random_jitter(rng, 4)
    for p in phots:
        p["jitter"] = rng.random(2) < 0.8
        p["gray"] = rng.random(2) < 0.3
        p["blur"] = rng.random(2) < 0.5
        p["sigma"] = rng.uniform(0.1, 2.0, 2)
    photometric_case(noise_frames(4, seed=17), phots, tol=2e-5)


# --------------------------------------------------------------------------- tasks


class QuarterTurns(PretextTask):
    """A rot-like task: turns each clip by batch.rot90 quarter turns (batched, after crop)."""

    name = "quarter"

    def device_transform(self, clips, batch):
        out = clips
        for k in (1, 2, 3):
            sel = (batch.rot90 == k).view(*batch.rot90.shape, 1, 1, 1, 1)
            out = torch.where(sel, torch.rot90(clips, k, dims=(-2, -1)), out)
        return out


class Affine(PretextTask):
    """x ↦ a·x + b (to see the order in which task transforms run)."""

    name = "affine"

    def __init__(self, a: float, b: float):
        super().__init__()
        self.a, self.b = a, b

    def device_transform(self, clips, batch):
        assert clips.min() >= 0 and clips.max() <= 1  # tasks see [0, 1], not normalised clips
        return clips * self.a + self.b


def test_task_transform_gets_plan_and_cropped_clips():
    frames = noise_frames(2, seed=18)
    boxes = [[[1, 2, 16, 16], [5, 6, 16, 16]], [[9, 3, 16, 16], [0, 0, 16, 16]]]
    turns = [[1, 2], [3, 0]]
    plain = run(frames, make_batch(boxes, rot90=turns), 16)
    turned = run(frames, make_batch(boxes, rot90=turns), 16, tasks=[QuarterTurns()])
    for b in range(2):
        for c in range(2):
            assert torch.equal(turned[b, c], torch.rot90(plain[b, c], turns[b][c], dims=(-2, -1)))


def test_task_transforms_run_in_the_given_order_before_normalisation():
    frames = noise_frames(1, seed=19)
    batch = make_batch([[[3, 3, 16, 16]] * 2])
    plain = run(frames, batch, 16)
    out = augment_batch(frames, batch, tasks=[Affine(0.5, 0.0), Affine(1.0, 0.25)], out_size=16)
    torch.testing.assert_close(out, (plain * 0.5 + 0.25) * 2 - 1, atol=1e-6, rtol=0)


# --------------------------------------------------------------------------- contract


def _random_plans(rng, b, size, t=T):
    boxes, flips, turns, phots, extras = [], [], [], _random_jitter(rng, b), []
    for p in phots:
        w, h = rng.integers(8, 30, 2)
        boxes.append([[rng.integers(0, W - w), rng.integers(0, H - h), w, h] for _ in range(2)])
        flips.append(list(rng.random(2) < 0.5))
        turns.append(list(rng.integers(0, 4, 2)))
        extras.append({"sampling.rot_first": rng.random(2) < 0.5})
        p["angle"] = rng.uniform(-10, 10, 2)
        p["gray"], p["blur"], p["sigma"] = rng.random(2) < 0.3, rng.random(2) < 0.5, rng.uniform(0.1, 2, 2)
    return make_batch(boxes, flips, turns, phots, extras, t=t)


def test_same_inputs_give_bitwise_equal_outputs_on_cpu():
    frames = noise_frames(3, seed=20)
    first = augment_batch(frames, _random_plans(np.random.default_rng(20), 3, 16), out_size=16)
    second = augment_batch(frames.clone(), _random_plans(np.random.default_rng(20), 3, 16), out_size=16)
    assert torch.equal(first, second)


@pytest.mark.parametrize("b,t", [(1, 1), (2, 3)])
def test_output_shape_dtype_range_and_layout(b, t):
    frames = noise_frames(b, t=t, seed=21)
    out = augment_batch(frames, _random_plans(np.random.default_rng(21), b, 12, t=t), out_size=12)
    assert out.shape == (b, 2, 3, t, 12, 12) and out.dtype == torch.float32 and out.is_contiguous()
    assert out.min() >= -1 and out.max() <= 1


def test_bfloat16_work_stays_close_to_float32():
    frames = noise_frames(2, seed=22)
    batch = _random_plans(np.random.default_rng(22), 2, 16)
    full = augment_batch(frames, batch, out_size=16)
    half = augment_batch(frames, batch, out_size=16, dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16
    assert (half.float() - full).abs().mean() < 0.01


def test_normalise_maps_uint8_and_unit_floats_to_minus_one_one():
    u8 = torch.tensor([0, 51, 255], dtype=torch.uint8)
    torch.testing.assert_close(normalise(u8), torch.tensor([-1.0, -0.6, 1.0]))
    torch.testing.assert_close(normalise(torch.tensor([0.0, 0.2, 1.0])), torch.tensor([-1.0, -0.6, 1.0]))


def test_center_clips_match_torchvision_center_crop():
    frames = noise_frames(2, seed=23)[:, 0]  # [B, T, H, W, 3]
    out = (center_clips(frames, out_size=17, crop=17) + 1) / 2
    for b in range(2):
        ref = TF.center_crop(frames[b].permute(0, 3, 1, 2).float() / 255, [17, 17])
        torch.testing.assert_close(out[b], as_output(ref), atol=1e-5, rtol=0)


def test_center_clips_resize_then_crop_close_to_torchvision_on_smooth_frames():
    frames = smooth_frames(1, seed=24)[:, 0]
    out = (center_clips(frames, out_size=12, crop=16, resize_to=(32, 24)) + 1) / 2
    img = TF.resize(frames[0].permute(0, 3, 1, 2).float() / 255, [24, 32], interpolation=BILINEAR, antialias=False)
    ref = TF.resize(TF.center_crop(img, [16, 16]), [12, 12], interpolation=BILINEAR, antialias=False)
    assert (out[0] - as_output(ref)).abs().max() < 4 / 255


# --------------------------------------------------------------------------- host syncs


def test_host_copy_of_the_parameters_gives_the_same_clips():
    frames = noise_frames(4, seed=23)
    batch = _random_plans(np.random.default_rng(23), 4, 16)
    assert batch.host_photometric is None
    moved = batch.to("cpu")  # keeps the CPU parameters as the host copy
    assert moved.host_photometric is not None
    assert torch.equal(augment_batch(frames, moved, out_size=16), augment_batch(frames, batch, out_size=16))


def test_host_copy_decides_which_operations_run():
    """The flags are read from the host copy when there is one (so CUDA needs no sync)."""
    frames = noise_frames(1, seed=24)
    phot = identity_photometric()
    phot["blur"], phot["sigma"] = np.array([True, True]), np.array([1.5, 1.5])
    batch = make_batch([[[3, 2, 16, 16], [10, 5, 16, 16]]], photometric=[phot])
    no_blur = make_batch([[[3, 2, 16, 16], [10, 5, 16, 16]]], photometric=[identity_photometric()])
    told_off = dataclasses.replace(batch, host_photometric=no_blur.photometric)
    assert torch.equal(augment_batch(frames, told_off, out_size=16), augment_batch(frames, no_blur, out_size=16))
    assert not torch.equal(augment_batch(frames, batch, out_size=16), augment_batch(frames, no_blur, out_size=16))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_augment_batch_makes_no_host_sync_on_cuda():
    from cstp_cli.plugins import get_registry

    rot = get_registry().pretext("rot").build()
    frames = noise_frames(4, seed=25).pin_memory().to("cuda", non_blocking=True)
    batch = _random_plans(np.random.default_rng(25), 4, 16)
    batch = dataclasses.replace(batch, extras={}).pin_memory().to("cuda", non_blocking=True)
    augment_batch(frames, batch, tasks=[rot], out_size=16)  # warm-up: kernels and allocator
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        augment_batch(frames, batch, tasks=[rot], out_size=16)
    finally:
        torch.cuda.set_sync_debug_mode(0)
