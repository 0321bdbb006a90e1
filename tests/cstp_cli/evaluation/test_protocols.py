"""Evaluation protocols (METHOD §6 test, §7 retrieval): clip positions, aggregation, retrieval metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cstp_cli.evaluation import protocols as ev
from cstp_cli.errors import DataError

torch.set_num_threads(1)


class MemReader:
    """An in-memory stand-in of CacheReader: frame t of video v has value (v * 10 + t) % 256."""

    def __init__(self, num_frames, labels, wh=(20, 16), splits=None):
        self.num_frames = np.asarray(num_frames, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.frame_wh = wh
        self.folds = [1]
        self._splits = splits or {}

    def split(self, fold, which):
        return np.asarray(self._splits.get(which, []), dtype=np.int64)

    def read(self, video, idx):
        idx = np.asarray(idx)
        assert idx.min() >= 0 and idx.max() < self.num_frames[video]
        w, h = self.frame_wh
        vals = (video * 10 + idx) % 256
        return np.broadcast_to(vals[:, None, None, None], (idx.size, h, w, 3)).astype(np.uint8)


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


class _Fixed(torch.nn.Module):
    """Feature = mean intensity per clip, repeated in two dims scaled differently."""

    feature_dim = 2

    def forward(self, x):
        m = x.mean(dim=(1, 2, 3, 4))
        return torch.stack([m + 2, 3 * (m + 2)], dim=1)

    def features(self, x):
        return x[:, :2, :, :4, :4]


def _features(reader, videos, **kw):
    enc = ev.torch_encoder(_Fixed(), "cpu")
    return ev.video_features(enc, reader, np.asarray(videos), T=2, stride=1, num_clips=3, size=8, workers=0, **kw)


def test_clip_l2_normalises_before_the_mean():
    reader = MemReader([30, 30], [0, 1])
    on = _features(reader, [0, 1])
    off = _features(reader, [0, 1], clip_l2=False)
    assert np.allclose(np.linalg.norm(on, axis=1), 1.0, atol=1e-5)  # equal directions: norm stays 1
    assert not np.allclose(np.linalg.norm(off, axis=1), 1.0)


def test_conv5_layer_is_max_pooled_and_flattened():
    reader = MemReader([30], [0])
    f = _features(reader, [0], layer="conv5")
    assert f.shape == (1, 2 * 2 * 2 * 2)  # C=2, t=2, 4x4 pooled (1,2,2) to 2x2


def test_reestimate_bn_changes_statistics_not_weights():
    net = torch.nn.Sequential(torch.nn.Conv3d(3, 4, 1), torch.nn.BatchNorm3d(4), torch.nn.AdaptiveAvgPool3d(1), torch.nn.Flatten())
    before = {k: v.clone() for k, v in net.state_dict().items()}
    ev.reestimate_bn(net, MemReader([30, 30], [0, 1]), np.array([0, 1]), device="cpu", T=2, num_clips=2, size=8, workers=0)
    after = net.state_dict()
    assert torch.equal(before["0.weight"], after["0.weight"]) and torch.equal(before["1.weight"], after["1.weight"])
    assert not torch.equal(before["1.running_mean"], after["1.running_mean"])
    assert not net.training


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


# --------------------------------------------------------------------------- retrieval


def test_gallery_as_its_own_query_has_recall_at_1_of_100():
    rng = np.random.default_rng(0)
    g = rng.normal(size=(50, 16))
    labels = rng.integers(0, 5, 50)
    rec, _, top = ev.retrieval_report(g, g, labels, labels)
    assert rec["R@1"] == 100.0
    assert np.array_equal(top[:, 0], np.arange(50))


def test_recall_is_monotone_in_k():
    rng = np.random.default_rng(1)
    q, g = rng.normal(size=(40, 8)), rng.normal(size=(200, 8))
    rec, _, _ = ev.retrieval_report(q, g, rng.integers(0, 10, 40), rng.integers(0, 10, 200))
    values = [rec[f"R@{k}"] for k in ev.RECALL_KS]
    assert values == sorted(values)
    assert values[0] < 100.0


def test_ties_rank_the_lower_gallery_index_first():
    g = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [2.0, 0.0]])  # 0, 2, 3 tie (cosine 1)
    _, idx = ev.running_topk(np.array([[1.0, 0.0]]), g, 3, gallery_chunk=2)
    assert idx[0].tolist() == [0, 2, 3]


def test_chunked_topk_equals_full_topk():
    rng = np.random.default_rng(2)
    q = rng.integers(-3, 4, size=(37, 6)).astype(np.float64)  # small integers: many exact ties
    g = rng.integers(-3, 4, size=(211, 6)).astype(np.float64)
    s_full, i_full = ev.running_topk(q, g, 20, query_chunk=1000, gallery_chunk=10_000)
    s_chunk, i_chunk = ev.running_topk(q, g, 20, query_chunk=5, gallery_chunk=13)
    assert np.array_equal(i_full, i_chunk) and np.array_equal(s_full, s_chunk)
    qn, gn = q / np.linalg.norm(q, axis=1, keepdims=True), g / np.linalg.norm(g, axis=1, keepdims=True)
    ref = -np.sort(-(qn @ gn.T), axis=1)[:, :20]
    assert np.allclose(s_full, ref, rtol=1e-7, atol=1e-7)  # the 20 best scores, best first
    ties = s_full[:, 1:] == s_full[:, :-1]
    assert ties.any() and np.all(i_full[:, 1:][ties] > i_full[:, :-1][ties])  # equal scores: lower index first


def test_topk_is_cut_at_the_gallery_size():
    s, i = ev.running_topk(np.ones((2, 3)), np.eye(3), 50)
    assert i.shape == (2, 3)


def test_recall_hit_rule_uses_any_of_top_k():
    top = np.array([[3, 1, 2], [0, 1, 2]])
    rec = ev.recall_at_k(top, np.array([1, 9]), np.array([0, 1, 2, 3]), ks=(1, 2, 3))
    assert rec == {"R@1": 0.0, "R@2": 50.0, "R@3": 50.0}


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
