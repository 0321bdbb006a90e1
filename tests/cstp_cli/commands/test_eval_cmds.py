"""``cstp finetune``, ``linear``, ``retrieve`` and ``embed`` end to end on a tiny cache."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cstp_cli.cli import main

torch.set_num_threads(1)

TOY = ["--size", "40x32", "--workers", "0", "-q"]
RANDOM = ["--init", "random", "--backbone", "r21d", "--width", "tiny", "--frames", "8", "--clip-size", "32"]


def run(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def run_ok(argv, capsys):
    try:
        main(argv)
    except SystemExit as exc:  # Typer exits 0 at the end of a command
        assert exc.code in (0, None), capsys.readouterr().err
    return capsys.readouterr().out


def test_finetune_beats_chance_on_a_tiny_set(toy_eval_cache, tmp_path, capsys):
    out = run_ok(["finetune", str(toy_eval_cache), *RANDOM, *TOY, "--epochs", "15", "--batch-size", "6",
                  "--lr", "0.01", "--head", "fc", "--test-clips", "4", "--out", str(tmp_path)], capsys)
    results = json.loads((tmp_path / "results.json").read_text())["results"]
    assert "video_top1" in out
    assert results[0]["video_top1"] > 60.0  # 3 classes: chance is 33 %
    assert (tmp_path / "split1" / "checkpoint.pt").is_file()


def test_linear_runs_every_split_and_prints_the_mean(toy_eval_cache, tiny_checkpoint, tmp_path, capsys):
    out = run_ok(["linear", str(toy_eval_cache), "--checkpoint", str(tiny_checkpoint), *TOY, "--epochs", "1",
                  "--batch-size", "6", "--split", "1,2", "--test-clips", "2", "--out", str(tmp_path)], capsys)
    rows = json.loads((tmp_path / "results.json").read_text())["results"]
    assert [r["split"] for r in rows] == ["1", "2", "mean"]
    assert rows[2]["video_top1"] == pytest.approx((rows[0]["video_top1"] + rows[1]["video_top1"]) / 2)
    assert "mean" in out


def test_retrieve_writes_recalls_switches_and_a_montage(toy_eval_cache, tmp_path, capsys):
    out = run_ok(["retrieve", str(toy_eval_cache), *RANDOM, *TOY, "--clips", "3", "--stride", "2", "--montage", "2",
                  "--out", str(tmp_path)], capsys)
    report = json.loads((tmp_path / "retrieval.json").read_text())
    recalls = [report["recall"][f"R@{k}"] for k in (1, 5, 10, 20, 50)]
    assert recalls == sorted(recalls) and "R@1" in out
    assert report["switches"]["stride"] == 2 and report["switches"]["bn_reestimate"] is True
    assert report["gallery"] == 18 and report["queries"] == 9
    assert (tmp_path / "retrieval.png").read_bytes()[:4] == b"\x89PNG"


def test_retrieve_conv5_layer_is_the_max_pooled_map(toy_eval_cache, tiny_checkpoint, tmp_path, capsys):
    from cstp_cli.core.checkpoint import build_backbone

    run_ok(["retrieve", str(toy_eval_cache), "--checkpoint", str(tiny_checkpoint), *TOY, "--clips", "2",
            "--clip-size", "64", "--layer", "conv5", "--no-clip-l2", "--montage", "0", "--out", str(tmp_path)], capsys)
    report = json.loads((tmp_path / "retrieval.json").read_text())
    c, t, h, w = build_backbone("r21d", "tiny").features(torch.zeros(1, 3, 8, 64, 64)).shape[1:]
    assert report["feature_dim"] == c * t * (h // 2) * (w // 2) and report["switches"]["clip_l2"] is False


def test_embed_writes_one_feature_per_video(toy_eval_cache, tiny_checkpoint, tmp_path, capsys):
    dest = tmp_path / "f.npz"
    run_ok(["embed", str(toy_eval_cache), "--checkpoint", str(tiny_checkpoint), *TOY, "--clips", "2", "-o", str(dest)], capsys)
    data = np.load(dest)
    assert data["features"].shape == (27, 64) and data["labels"].tolist() == sorted(data["labels"].tolist())
    assert np.allclose(np.linalg.norm(data["features"], axis=1), 1.0, atol=0.2)


def test_encoder_source_is_required_in_one_line(toy_eval_cache, capsys):
    code, _, err = run(["retrieve", str(toy_eval_cache), *TOY], capsys)
    assert code == 2 and err.count("\n") == 1 and "--checkpoint" in err


def test_a_file_that_is_not_a_cstp_checkpoint_is_refused(toy_eval_cache, tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    torch.save({"weights": torch.zeros(2)}, bad)
    code, _, err = run(["linear", str(toy_eval_cache), "--checkpoint", str(bad), *TOY], capsys)
    assert code == 1 and err.count("\n") == 1 and "not a cstp checkpoint" in err


def test_a_missing_split_is_refused_in_one_line(toy_eval_cache, capsys):
    code, _, err = run(["retrieve", str(toy_eval_cache), *RANDOM, *TOY, "--split", "3"], capsys)
    assert code == 1 and err.count("\n") == 1 and "3" in err


def test_unlabelled_data_is_refused_in_one_line(toy_unlabelled_cache, capsys):
    code, _, err = run(["finetune", str(toy_unlabelled_cache), *RANDOM, *TOY, "--epochs", "1"], capsys)
    assert code == 1 and err.count("\n") == 1 and "label" in err


def test_retrieve_with_onnx_gives_the_pytorch_recalls(toy_eval_cache, tiny_checkpoint, tmp_path, capsys):
    from cstp_cli.deploy.export import export_onnx

    model = tmp_path / "tiny.onnx"
    export_onnx(tiny_checkpoint, model, exporter="legacy", verify=False)
    common = [str(toy_eval_cache), *TOY, "--clips", "2", "--montage", "0"]
    run_ok(["retrieve", *common, "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "pt")], capsys)
    run_ok(["retrieve", *common, "--onnx", str(model), "--out", str(tmp_path / "ort")], capsys)
    pt = json.loads((tmp_path / "pt" / "retrieval.json").read_text())
    ort = json.loads((tmp_path / "ort" / "retrieval.json").read_text())
    assert ort["recall"] == pt["recall"] and ort["provider"]
    dest = tmp_path / "f.npz"
    run_ok(["embed", *common[:-2], "--onnx", str(model), "-o", str(dest)], capsys)
    run_ok(["embed", *common[:-2], "--checkpoint", str(tiny_checkpoint), "-o", str(tmp_path / "g.npz")], capsys)
    assert np.allclose(np.load(dest)["features"], np.load(tmp_path / "g.npz")["features"], atol=1e-4)


def test_an_unknown_setting_in_a_config_is_refused(tmp_path, toy_eval_cache, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[retrieve]\nstrid = 2\n")
    code, _, err = run(["retrieve", str(toy_eval_cache), *RANDOM, *TOY, "--config", str(cfg)], capsys)
    assert code == 2 and "strid" in err and err.count("\n") == 1


def test_retrieve_out_that_is_a_file_is_one_usage_line_before_any_work(tmp_path, capsys, monkeypatch):
    from cstp_cli.evaluation import sources as retrieve_cmd  # the library builds the encoder

    monkeypatch.setattr(retrieve_cmd, "feature_encoder", lambda *a, **k: pytest.fail("built the encoder before checking --out"))
    blocker = tmp_path / "report"
    blocker.write_text("")
    code, _, err = run(["retrieve", "no-such-data", *RANDOM, "--out", str(blocker)], capsys)
    assert code == 2 and err.count("\n") == 1 and "is a file, not a folder; choose another --out" in err


def test_embed_output_that_is_a_folder_is_one_usage_line_before_any_work(tmp_path, capsys, monkeypatch):
    from cstp_cli.evaluation import sources as embed_cmd  # the library builds the encoder

    monkeypatch.setattr(embed_cmd, "feature_encoder", lambda *a, **k: pytest.fail("built the encoder before checking -o"))
    (tmp_path / "f.h5").mkdir()
    code, _, err = run(["embed", "no-such-data", "--checkpoint", "x.pt", "-o", str(tmp_path / "f.h5")], capsys)
    assert code == 2 and err.count("\n") == 1 and "is a folder; -o expects a file name" in err


@pytest.mark.parametrize("name", ["f.npz", "f.h5"])
def test_embeddings_on_a_full_disk_are_one_line_and_keep_the_old_file(tmp_path, monkeypatch, name):
    import errno

    from cstp_cli.evaluation.embedding import write_embeddings
    from cstp_cli.core import safewrite
    from cstp_cli.errors import CstpError

    path = tmp_path / name
    args = (np.ones((2, 3), np.float32), np.zeros(2, np.int64), ["a", "b"], np.arange(2), {})
    write_embeddings(path, *args)
    old = path.read_bytes()

    class FullDisk:
        def __init__(self, p):
            self._f = open(p, "w+b")

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, attr):
            return getattr(self._f, attr)

    monkeypatch.setattr(safewrite.GuardedFile, "_open", staticmethod(FullDisk))
    monkeypatch.setattr("os.fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(CstpError, match="cannot write features .*no space left on the device"):
        write_embeddings(path, *args)
    assert path.read_bytes() == old and [p.name for p in tmp_path.iterdir()] == [name]
