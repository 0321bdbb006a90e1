"""`cstp retrieve --onnx` equals the PyTorch path on the built-in synthetic dataset (issue 5 item 3).

A small set from the real generator (`cstp_cli.data.synth`), cached through PyAV, an encoder
exported with `cstp export`, then retrieval and `cstp embed -o features.h5` through both paths.
"""

from __future__ import annotations

import json

import numpy as np
import torch
from typer.testing import CliRunner

from cstp_cli.cli import build_app


def invoke(args: list[str]) -> str:
    result = CliRunner().invoke(build_app(), args)
    assert result.exit_code == 0, result.output
    return result.output


def test_onnx_retrieval_and_embedding_match_pytorch_on_the_synthetic_set(tmp_path, monkeypatch):
    from cstp_cli.data.cache import read_features
    from cstp_cli.core.checkpoint import atomic_save, build_backbone, encoder_checkpoint
    from cstp_cli.data.synth import generate

    monkeypatch.setenv("CSTP_CACHE_DIR", str(tmp_path / "cachedir"))
    root = generate(tmp_path / "synth", classes=8, train_per_class=2, test_per_class=1, frames=20, size=(40, 32),
                    seed=3, clips_per_group=1)
    torch.manual_seed(0)
    model = build_backbone("r21d", "tiny")
    ckpt = atomic_save(encoder_checkpoint(kind="pretrain", backbone="r21d", width="tiny", feature_dim=model.feature_dim,
                                          encoder_state=model.state_dict(), frames=8, size=32, frame_wh=(40, 32)),
                       tmp_path / "enc.pt")
    invoke(["export", str(ckpt), "-o", str(tmp_path / "enc.onnx"), "--exporter", "legacy"])
    common = [str(root), "--size", "40x32", "--workers", "0", "--device", "cpu", "-q"]
    invoke(["retrieve", *common, "--checkpoint", str(ckpt), "--clips", "3", "--montage", "0", "--out", str(tmp_path / "pt")])
    invoke(["retrieve", *common, "--onnx", str(tmp_path / "enc.onnx"), "--clips", "3", "--montage", "0", "--out", str(tmp_path / "ort")])
    pt, ort = (json.loads((tmp_path / n / "retrieval.json").read_text()) for n in ("pt", "ort"))
    assert ort["recall"] == pt["recall"] and ort["provider"] == "CPUExecutionProvider"
    invoke(["embed", *common, "--checkpoint", str(ckpt), "-o", str(tmp_path / "pt.h5")])
    invoke(["embed", *common, "--onnx", str(tmp_path / "enc.onnx"), "-o", str(tmp_path / "ort.h5")])
    a, b = read_features(tmp_path / "pt.h5"), read_features(tmp_path / "ort.h5")
    assert a["paths"] == b["paths"] and len(a["paths"]) > 0
    assert np.allclose(a["features"], b["features"], atol=1e-4)
