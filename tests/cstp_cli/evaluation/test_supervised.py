"""Fine-tuning and the linear probe (METHOD §6): validation carving, head, frozen backbone, resume.

The training clips are tested in tests/cstp_cli/plans/test_clips.py (plans) and
test_train_clips.py (pixels, against torchvision)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cstp_cli.evaluation import supervised as sv
from cstp_cli.core.checkpoint import build_backbone, load_checkpoint

torch.set_num_threads(1)


class ColourReader:
    """In-memory labelled videos: class c is a flat colour c (R, G or B) with noise."""

    def __init__(self, per_class=4, num_classes=2, wh=(24, 20), frames=12):
        rng = np.random.default_rng(0)
        self.labels = np.repeat(np.arange(num_classes), per_class).astype(np.int64)
        self.num_frames = np.full(self.labels.size, frames, dtype=np.int64)
        self.frame_wh = wh
        self.classes = [f"c{c}" for c in range(num_classes)]
        self.groups = [f"g{i // 2}" for i in range(self.labels.size)]
        self.folds = [1]
        test = np.arange(self.labels.size) % per_class == per_class - 1
        self._split = {"train": np.flatnonzero(~test), "test": np.flatnonzero(test)}
        w, h = wh
        self._frames = []
        for c in self.labels:
            base = np.full(3, 40.0)
            base[c % 3] = 220.0
            self._frames.append(np.clip(base + rng.normal(0, 10, (frames, h, w, 3)), 0, 255).astype(np.uint8))

    def split(self, fold, which):
        return self._split[which]

    def read(self, video, idx):
        return self._frames[video][np.asarray(idx)]


def _info(model, reader):
    return {"backbone": "r21d", "width": "tiny", "feature_dim": model.feature_dim, "frame_wh": reader.frame_wh, "init": "random"}


def _cfg(**kw):
    base = dict(frames=4, clip_size=16, clip_pace=2, epochs=1, batch_size=4, workers=0, test_clips=2, device="cpu")
    base.update(kw)
    return sv.SupervisedConfig(**base)


# --------------------------------------------------------------------------- validation split


def test_validation_is_stratified_and_disjoint_from_test():
    labels = np.repeat(np.arange(4), 25)
    groups = [f"g{(i % 25) // 3:02d}" for i in range(100)]
    test = np.arange(100)[np.arange(100) % 5 == 0]
    train = np.setdiff1d(np.arange(100), test)
    rest, val = sv.validation_split(labels, groups, train, 0.1, seed=3)
    assert np.intersect1d(val, test).size == 0 and np.intersect1d(rest, val).size == 0
    assert np.array_equal(np.union1d(rest, val), train)
    per_class = np.bincount(labels[val], minlength=4)
    assert np.all(per_class >= 1) and np.all(per_class <= 5)  # about 10 % of 20 per class, whole groups


def test_validation_keeps_groups_together():
    labels = np.repeat(np.arange(3), 30)
    groups = [f"g{(i % 30) // 4:02d}" for i in range(90)]
    rest, val = sv.validation_split(labels, groups, np.arange(90), 0.1, seed=0)
    keys = lambda vids: {(labels[v], groups[v]) for v in vids}  # noqa: E731
    assert keys(rest).isdisjoint(keys(val))


def test_validation_without_groups_still_stratifies():
    labels = np.repeat(np.arange(2), 20)
    rest, val = sv.validation_split(labels, None, np.arange(40), 0.1, seed=0)
    assert np.bincount(labels[val]).tolist() == [2, 2]


# --------------------------------------------------------------------------- head


def test_code_head_is_l2_then_bn_then_linear():
    head = sv.build_head(8, 3, "code")
    assert [type(m).__name__ for m in head] == ["L2Norm", "BatchNorm1d", "Linear"]
    x = torch.randn(5, 8)
    head.eval()
    assert torch.allclose(head(x), head(3.0 * x), atol=1e-5)  # scale-invariant through the L2 step


def test_fc_head_is_one_linear_layer():
    head = sv.build_head(8, 3, "fc")
    assert [type(m).__name__ for m in head] == ["Linear"]


# --------------------------------------------------------------------------- runs


def test_linear_probe_keeps_the_backbone_bit_identical(tmp_path):
    reader = ColourReader()
    model = build_backbone("r21d", "tiny")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = sv.run_supervised(_cfg(mode="linear", epochs=2), reader, 1, model, _info(model, reader), tmp_path)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not model.training
    ckpt = load_checkpoint(result.checkpoint)
    assert ckpt["kind"] == "linear" and "head" in ckpt and set(result.metrics) == {"video_top1", "video_top5", "clip_top1"}


def test_finetuning_changes_the_backbone(tmp_path):
    reader = ColourReader()
    model = build_backbone("r21d", "tiny")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sv.run_supervised(_cfg(), reader, 1, model, _info(model, reader), tmp_path)
    assert not all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_resume_continues_at_the_next_epoch(tmp_path):
    reader = ColourReader()
    m1 = build_backbone("r21d", "tiny")
    torch.manual_seed(0)
    init = {k: v.clone() for k, v in m1.state_dict().items()}
    full = sv.run_supervised(_cfg(epochs=2), reader, 1, m1, _info(m1, reader), tmp_path / "full")
    m2 = build_backbone("r21d", "tiny")
    m2.load_state_dict(init)
    sv.run_supervised(_cfg(epochs=1), reader, 1, m2, _info(m2, reader), tmp_path / "part")
    m3 = build_backbone("r21d", "tiny")
    resumed = sv.run_supervised(_cfg(epochs=2), reader, 1, m3, _info(m3, reader), tmp_path / "part", resume=True)
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    assert resumed.history[1]["train_loss"] == pytest.approx(full.history[1]["train_loss"], rel=1e-5)



def test_run_config_defaults_are_the_declared_settings():
    from cstp_cli.evaluation.settings import FinetuneSettings

    declared, cfg = FinetuneSettings(), sv.SupervisedConfig()
    shared = set(vars(cfg)) & set(FinetuneSettings.declared()) - {"frames", "clip_size", "augment"}
    assert len(shared) >= 10 and all(getattr(cfg, k) == getattr(declared, k) for k in shared)
