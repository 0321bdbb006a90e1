"""Training clips of fine-tuning: one-clip plans through pretraining's augmentation (issue 11 item 2).

Checked, like tests/cstp_cli/test_augment.py, against a per-clip reference built from
torchvision's functional transforms (resized_crop without antialias, horizontal_flip,
adjust_brightness/contrast/saturation/hue in the plan's order) and torch.rot90. Where the two
differ by design — augment samples the frame around the box (zeros outside it) while
crop-then-resize clamps at the box edge — only outputs whose bilinear taps lie inside the box
are compared exactly; on smooth frames the outer ring stays within 2/255.
"""

from __future__ import annotations

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF

from cstp_cli.evaluation.train_clips import TrainClipDataset, augment_training_clips, collate_train
from cstp_cli.plans.clips import ClipSampler

torch.set_num_threads(1)
BILINEAR = TF.InterpolationMode.BILINEAR
W, H, T, S = 48, 36, 2, 16


class SmoothReader:
    """Videos of low-frequency sinusoids (bilinear error ≪ 1 grey level), 12 frames of W×H."""

    def __init__(self, videos: int = 24, frames: int = 12):
        rng = np.random.default_rng(0)
        y, x = np.mgrid[0:H, 0:W].astype(np.float64)
        self.num_frames = np.full(videos, frames, dtype=np.int64)
        self.frame_wh = (W, H)
        self.frames = np.empty((videos, frames, H, W, 3), dtype=np.uint8)
        for v, t, c in np.ndindex(videos, frames, 3):
            fx, fy, ph = rng.uniform(0.01, 0.025), rng.uniform(0.01, 0.025), rng.uniform(0, 2 * np.pi)
            self.frames[v, t, :, :, c] = np.round(127.5 + 120 * np.sin(2 * np.pi * (fx * x + fy * y) + ph))

    def read(self, video, idx):
        return self.frames[video][np.asarray(idx)]


def reference(frames: torch.Tensor, plan) -> torch.Tensor:
    """torchvision, clip by clip: crop + resize, flip, colour jitter in order, quarter turns; [3, T, S, S] in [0, 1]."""
    img = frames.permute(0, 3, 1, 2).float() / 255.0  # T, 3, H, W
    x, y, w, h = (int(v) for v in plan.box)
    img = TF.resized_crop(img, y, x, h, w, [S, S], interpolation=BILINEAR, antialias=False)
    if plan.flip:
        img = TF.horizontal_flip(img)
    p = plan.photometric
    if p["jitter"][0]:
        for op in p["order"][0]:
            fn = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)[int(op)]
            key = ("brightness", "contrast", "saturation", "hue")[int(op)]
            img = fn(img, float(p[key][0]))
    img = torch.rot90(img, plan.rot90, dims=(-2, -1))
    return img.permute(1, 0, 2, 3)


def interior(side: int) -> torch.Tensor:
    """bool[S]: outputs whose two bilinear taps lie inside a box of ``side`` pixels."""
    src = (torch.arange(S, dtype=torch.float64) + 0.5) * side / S - 0.5
    return (src >= 0) & (src <= side - 1)


def test_training_clips_match_the_torchvision_reference():
    reader = SmoothReader()
    data = TrainClipDataset(reader, np.arange(24), np.zeros(24, np.int64), ClipSampler(T, pace=2, augment=["rot"]), seed=3)
    items = [data[i] for i in range(len(data))]
    frames, plans, _ = collate_train(items)
    out = (augment_training_clips(frames, plans, S, "cpu") + 1.0) / 2.0
    kinds = {"jitter": 0, "flip": 0, "turned": 0, "hue": 0}
    for b, (clip, plan, _label) in enumerate(items):
        ref = reference(torch.from_numpy(clip), plan)
        _, _, w, h = (int(v) for v in plan.box)
        inside = torch.rot90(interior(h)[:, None] & interior(w)[None, :], plan.rot90, dims=(0, 1))
        diff = (out[b] - ref).abs()
        assert diff[..., inside].max() < 1e-4, (b, plan)
        assert diff.max() < 2 / 255, (b, plan)
        jit = bool(plan.photometric["jitter"][0])
        kinds["jitter"] += jit
        kinds["hue"] += jit and abs(float(plan.photometric["hue"][0])) > 0.01
        kinds["flip"] += plan.flip
        kinds["turned"] += plan.rot90 != 0
    assert all(n > 0 for n in kinds.values()), kinds  # every operation was exercised


def test_full_box_without_jitter_is_a_plain_resize():
    frames = torch.randint(0, 256, (1, 2, 16, 16, 3), dtype=torch.uint8)
    plans = plain_plans(flip=False)
    x = augment_training_clips(frames, plans, 16, "cpu")
    expected = frames.permute(0, 4, 1, 2, 3).float() / 255 * 2 - 1
    assert torch.allclose(x, expected, atol=1e-5)


def test_flip_mirrors_the_clip():
    frames = torch.randint(0, 256, (1, 2, 16, 16, 3), dtype=torch.uint8)
    a = augment_training_clips(frames, plain_plans(flip=False), 16, "cpu")
    b = augment_training_clips(frames, plain_plans(flip=True), 16, "cpu")
    assert torch.allclose(a.flip(-1), b, atol=1e-5)


def test_a_quarter_turn_comes_after_crop_and_resize():
    frames = torch.randint(0, 256, (1, 2, 16, 16, 3), dtype=torch.uint8)
    a = augment_training_clips(frames, plain_plans(flip=False), 16, "cpu")
    b = augment_training_clips(frames, plain_plans(flip=False, rot90=1), 16, "cpu")
    assert torch.equal(torch.rot90(a, 1, dims=(3, 4)), b)


def plain_plans(flip: bool, rot90: int = 0) -> dict:
    """Plan tensors of one clip: the full 16×16 frame, no colour change."""
    photometric = {"angle": torch.zeros(1), "jitter": torch.zeros(1, dtype=torch.bool), "brightness": torch.ones(1),
                   "contrast": torch.ones(1), "saturation": torch.ones(1), "hue": torch.zeros(1),
                   "order": torch.arange(4)[None], "gray": torch.zeros(1, dtype=torch.bool),
                   "blur": torch.zeros(1, dtype=torch.bool), "sigma": torch.zeros(1)}
    return {"box": torch.tensor([[0, 0, 16, 16]]), "flip": torch.tensor([flip]), "rot90": torch.tensor([rot90]),
            "photometric": photometric, "frame_wh": (16, 16)}
