"""Evaluation protocols (METHOD §6 test, §7 retrieval): clip positions, datasets, aggregation, errors."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cstp_cli.evaluation import protocols as ev
from cstp_cli.errors import DataError

sys.path.insert(0, str(Path(__file__).parent))
from mem_reader import MemReader  # noqa: E402

torch.set_num_threads(1)


# --------------------------------------------------------------------------- clip positions


def test_clip_indices_first_and_last_windows_touch_the_ends():
    idx = ev.clip_indices(100, T=16, stride=1, num_clips=10)
    assert idx.shape == (10, 16)
    assert idx[0, 0] == 0 and idx[-1, -1] == 99


def test_clip_centres_are_evenly_spaced_like_linspace():
    N, T, s = 237, 16, 2
    idx = ev.clip_indices(N, T, s, 10)
    centres = (idx[:, 0] + idx[:, -1]) / 2
    half = (T - 1) * s / 2
    expected = np.linspace(half, N - 1 - half, 10)
    assert np.all(np.abs(centres - expected) <= 0.5)


def test_clip_indices_step_equals_stride():
    idx = ev.clip_indices(300, T=16, stride=4, num_clips=10)
    assert np.all(np.diff(idx, axis=1) == 4)
    assert idx.max() < 300


def test_short_video_loops_identically_in_every_clip():
    idx = ev.clip_indices(7, T=16, stride=1, num_clips=10)
    assert np.all(idx == idx[0])
    assert idx[0].tolist() == [j % 7 for j in range(16)]


def test_short_video_loops_at_stride():
    idx = ev.clip_indices(20, T=16, stride=2, num_clips=3)  # window 31 > 20 frames
    assert idx[0].tolist() == [(2 * j) % 20 for j in range(16)]


def test_video_of_exactly_one_window_gives_one_position():
    idx = ev.clip_indices(16, T=16, stride=1, num_clips=10)
    assert np.all(idx == np.arange(16))


def test_single_clip_is_centred():
    idx = ev.clip_indices(21, T=16, stride=1, num_clips=1)
    assert idx[0, 0] == 3  # room 5 → round half up of 2.5


# --------------------------------------------------------------------------- pixels and features


def test_preprocess_takes_the_centre_crop_and_normalises():
    frames = np.zeros((1, 2, 128, 171, 3), dtype=np.uint8)
    frames[:, :, 8:120, 29:141] = 255  # exactly the 112×112 centre
    x = ev.preprocess_clips(frames, out_size=112)
    assert x.shape == (1, 3, 2, 112, 112)
    assert torch.all(x == 1.0)


def test_crop_side_keeps_the_protocol_ratio():
    assert ev.center_crop_side((171, 128), 112) == 112
    assert ev.center_crop_side((341, 256), 112) == 224
    assert ev.center_crop_side((48, 48), 32) == 42


def test_dataset_reads_the_clip_frames_of_its_video():
    reader = MemReader([40], [0])
    ds = ev.VideoClipDataset(reader, [0], T=4, stride=3, num_clips=2)
    frames, i = ds[0]
    assert frames.shape == (2, 4, 16, 20, 3) and i == 0
    assert frames[:, :, 0, 0, 0].tolist() == ds.indices(0).tolist()


# --------------------------------------------------------------------------- aggregation


def test_video_level_is_the_mean_of_clip_softmax():
    logits = torch.tensor([[[10.0, 0.0], [0.0, 1.0], [0.0, 1.0]]])  # 1 confident clip for class 0, 2 weak for 1
    probs = ev.aggregate_softmax(logits)
    expected = torch.softmax(logits, -1).mean(1)
    assert torch.allclose(probs, expected)
    assert probs.argmax().item() == 0  # mean of softmax, not a majority vote
    assert torch.softmax(logits.mean(1), -1).argmax().item() == 0


def test_topk_accuracy_counts_hits():
    scores = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5]])
    acc = ev.topk_accuracy(scores, torch.tensor([1, 1, 0]), ks=(1, 2))
    assert acc["top1"] == pytest.approx(100 / 3)
    assert acc["top2"] == pytest.approx(200 / 3)


# --------------------------------------------------------------------------- errors


def test_empty_split_is_a_one_line_data_error():
    reader = MemReader([30], [0], splits={"train": [0], "test": []})
    with pytest.raises(DataError, match="empty") as info:
        ev.split_indices(reader, 1, "test")
    assert "\n" not in str(info.value)


def test_missing_fold_is_a_one_line_data_error():
    with pytest.raises(DataError, match="no split 3"):
        ev.split_indices(MemReader([30], [0], splits={"train": [0]}), 3, "train")


def test_unlabelled_videos_are_refused():
    with pytest.raises(DataError, match="no label"):
        ev.require_labels(MemReader([30, 30], [0, -1]), np.array([0, 1]), "gallery")
