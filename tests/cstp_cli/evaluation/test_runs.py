"""The evaluation runs called from Python, as bench/ does (issue 11 item 1): typed results, files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cstp_cli.core.checkpoint import atomic_save, build_backbone, encoder_checkpoint
from cstp_cli.data.memcache import render_videos, write_cache
from cstp_cli.errors import UsageError
from cstp_cli.evaluation.embedding import run_embedding
from cstp_cli.evaluation.linear import run_linear
from cstp_cli.evaluation.retrieval import RetrievalResult, run_retrieval
from cstp_cli.evaluation.settings import EmbedSettings, LinearSettings, RetrievalSettings
from cstp_cli.evaluation.sources import EncoderSource

torch.set_num_threads(1)
TINY = dict(backbone="cnn4", width="tiny", frames=4, clip_size=16, workers=0, device="cpu", size="32x24")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs")
    labels = np.repeat(np.arange(2), 6)
    train = np.tile([True, True, True, True, False, False], 2)
    return write_cache(render_videos(12, 10, (32, 24), seed=1), folder / "c.h5", labels=labels, train=train)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = build_backbone("cnn4", "tiny")
    ckpt = encoder_checkpoint(kind="pretrain", backbone="cnn4", width="tiny", feature_dim=model.feature_dim,
                              encoder_state=model.state_dict(), frames=4, size=16, frame_wh=(32, 24))
    return atomic_save(ckpt, tmp_path_factory.mktemp("ckpt") / "cnn4.pt")


def test_run_retrieval_returns_the_recalls_it_writes(cache, tmp_path):
    settings = RetrievalSettings(**TINY, clips=2, montage=0, out=str(tmp_path))
    result = run_retrieval(settings, EncoderSource(init="random"), str(cache), progress=False)
    assert isinstance(result, RetrievalResult) and result.is_main and result.montage is None
    assert (result.gallery, result.queries) == (8, 4) and result.switches["bn_reestimate"] is True
    assert json.loads(result.report.read_text())["recall"] == result.recall
    assert "R@1" in result.table()


def test_run_embedding_writes_one_feature_per_video(cache, checkpoint, tmp_path):
    settings = EmbedSettings(**{k: v for k, v in TINY.items() if k not in ("backbone", "width")}, clips=2, which="test")
    result = run_embedding(settings, EncoderSource(checkpoint=str(checkpoint)), tmp_path / "f.npz", str(cache), progress=False)
    data = np.load(result.path)
    assert data["features"].shape == (result.num_videos, result.feature_dim) == (4, result.feature_dim)
    assert data["videos"].tolist() == [4, 5, 10, 11]


def test_run_linear_reports_each_fold_and_writes_results(cache, checkpoint, tmp_path):
    settings = LinearSettings(**TINY, epochs=1, batch_size=4, test_clips=2, out=str(tmp_path))
    result = run_linear(settings, EncoderSource(checkpoint=str(checkpoint)), str(cache), progress=False)
    assert [r["split"] for r in result.rows] == ["1"] and set(result.rows[0]) == {"split", "video_top1", "video_top5", "clip_top1"}
    saved = json.loads(result.results.read_text())
    assert saved["command"] == "linear" and saved["results"] == result.rows
    assert (tmp_path / "split1" / "checkpoint.pt").is_file()


def test_settings_built_in_python_are_validated(cache):
    with pytest.raises(UsageError, match="--layer"):
        run_retrieval(RetrievalSettings(**TINY, layer="conv4"), EncoderSource(init="random"), str(cache))


def test_an_encoder_source_needs_exactly_one_of_its_fields():
    with pytest.raises(UsageError, match="exactly one"):
        EncoderSource(checkpoint="a.pt", onnx="a.onnx").check()
    with pytest.raises(UsageError, match="only 'random'"):
        EncoderSource(init="zeros").check()
    with pytest.raises(UsageError, match="--onnx is not accepted"):
        EncoderSource(onnx="a.onnx").check(allow_onnx=False)
