"""``cstp pretrain`` end to end on a tiny cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from cstp_cli.data.memcache import render_videos, write_cache


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return write_cache(render_videos(8, 16, (40, 32), seed=2), tmp_path_factory.mktemp("cmd") / "tiny.h5")


TINY = ["--width", "tiny", "--frames", "4", "--clip-size", "32", "--batch-size", "4", "--workers", "0",
        "--set", "byol.proj_hidden=16", "--set", "byol.pred_hidden=16", "--set", "pace.rates=1,2"]


def test_pretrain_writes_checkpoint_metrics_and_plot(cache, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "cstp_cli", "pretrain", str(cache), "--epochs", "2", "--out", str(out), *TINY],
        capture_output=True, text=True, env=env, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"checkpoint: {out / 'checkpoint.pt'}" in proc.stdout
    assert f"metrics:    {out / 'metrics.jsonl'}" in proc.stdout
    assert f"next:       cstp retrieve {cache} --checkpoint {out / 'checkpoint.pt'}" in proc.stdout
    assert "clips/s" in proc.stderr and "0.1·byol + 1·stor + 1·rot + 1·pace" in proc.stderr
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2, 3, 4]
    assert (out / "loss.png").read_bytes()[:4] == b"\x89PNG"
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 2 and ckpt["config"]["objective"]["pretext"] == "stor,rot,pace"


def _main(argv, capsys):
    from cstp_cli.cli import main

    with pytest.raises(SystemExit) as info:
        main(argv)
    return info.value.code, capsys.readouterr().err


def test_nothing_to_learn_from_exits_2(cache, tmp_path, capsys):
    code, err = _main(["pretrain", str(cache), "--contrastive", "none", "--pretext", "none", "--out", str(tmp_path / "r"), *TINY], capsys)
    assert code == 2 and "nothing to learn from" in err


def test_objective_errors_come_before_any_data_is_built(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CSTP_CACHE_DIR", str(tmp_path / "cachedir"))
    code, err = _main(["pretrain", "--contrastive", "none", "--pretext", "none", "--out", str(tmp_path / "r"), *TINY], capsys)
    assert code == 2 and "nothing to learn from" in err
    assert not (tmp_path / "cachedir").exists()  # the built-in dataset was neither generated nor cached


@pytest.mark.parametrize("flag, name, listed", [
    ("--contrastive", "vicreg", "unknown contrastive 'vicreg'; installed: byol, moco, simclr, simsiam"),
    ("--pretext", "stor,jigsaw", "unknown pretext 'jigsaw'; installed: pace, rot, stor"),
    ("--backbone", "vit", "unknown backbone 'vit'; installed: c3d, cnn4, cnn4t, r21d"),
])
def test_unknown_component_name_is_a_usage_error_listing_the_installed_ones(cache, tmp_path, capsys, flag, name, listed):
    code, err = _main(["pretrain", str(cache), flag, name, "--out", str(tmp_path / "r"), *TINY], capsys)
    assert code == 2 and listed in err
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())  # refused before anything was written


def test_a_finished_run_is_never_replaced_without_resume(cache, tmp_path, capsys):
    out = tmp_path / "run"
    code, _ = _main(["pretrain", str(cache), "--epochs", "1", "--out", str(out), "-q", *TINY], capsys)
    assert code in (None, 0)
    before = {name: (out / name).read_bytes() for name in ("checkpoint.pt", "metrics.jsonl")}
    code, err = _main(["pretrain", str(cache), "--epochs", "1", "--out", str(out), "-q", *TINY], capsys)
    assert code == 2
    assert f"{out} already holds a run (checkpoint.pt, metrics.jsonl)" in err
    assert f"--resume {out / 'checkpoint.pt'}" in err and "another -o" in err
    assert {name: (out / name).read_bytes() for name in before} == before


def test_a_started_run_without_a_checkpoint_is_kept_too(cache, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"step": 1, "loss": 3.0}\n')
    code, err = _main(["pretrain", str(cache), "--out", str(out), "-q", *TINY], capsys)
    assert code == 2 and "already holds a run (metrics.jsonl)" in err and "choose another -o" in err
    assert "--resume" not in err  # there is no checkpoint to continue
    assert (out / "metrics.jsonl").read_text() == '{"step": 1, "loss": 3.0}\n'


def test_resume_into_another_folder_holding_a_run_is_refused(cache, tmp_path, capsys):
    first, other = tmp_path / "first", tmp_path / "other"
    for out in (first, other):
        _main(["pretrain", str(cache), "--epochs", "1", "--max-steps", "1", "--out", str(out), "-q", *TINY], capsys)
    kept = (other / "checkpoint.pt").read_bytes()
    code, err = _main(["pretrain", "--resume", str(first / "checkpoint.pt"), "--out", str(other), "-q"], capsys)
    assert code == 2 and f"{other} already holds a run" in err
    assert (other / "checkpoint.pt").read_bytes() == kept


def test_an_unwritable_run_folder_is_refused_before_any_data_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CSTP_CACHE_DIR", str(tmp_path / "cachedir"))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, err = _main(["pretrain", "--out", str(blocker), "-q", *TINY], capsys)
    assert code == 2 and f"{blocker} is a file, not a folder; choose another -o" in err
    assert not (tmp_path / "cachedir").exists()  # the built-in dataset was neither generated nor cached


def test_resume_continues_to_the_end_from_the_command_line(cache, tmp_path, capsys):
    out = tmp_path / "run"
    code, _ = _main(["pretrain", str(cache), "--epochs", "2", "--max-steps", "1", "--out", str(out), "-q", *TINY], capsys)
    assert code is None or code == 0
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 1
    code, _ = _main(["pretrain", "--resume", str(out / "checkpoint.pt"), "-q"], capsys)
    assert code is None or code == 0
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 4


def test_resumed_run_points_next_at_the_original_data(cache, tmp_path, capsys):
    out = tmp_path / "run"
    _main(["pretrain", str(cache), "--epochs", "1", "--max-steps", "1", "--out", str(out), "-q", *TINY], capsys)
    from cstp_cli.cli import main

    with pytest.raises(SystemExit) as info:
        main(["pretrain", "--resume", str(out / "checkpoint.pt")])
    assert info.value.code in (None, 0)
    assert f"next:       cstp retrieve {cache} --checkpoint {out / 'checkpoint.pt'}" in capsys.readouterr().out


@pytest.fixture(scope="module")
def labelled_cache(tmp_path_factory):
    """8 videos of 40x32 (not the protocol's 171x128), two classes, 6 train and 2 test."""
    return write_cache(render_videos(8, 16, (40, 32), seed=4), tmp_path_factory.mktemp("lab") / "lab.h5",
                       labels=[0, 1] * 4, train=[True] * 6 + [False] * 2)


def test_the_printed_next_command_runs_on_a_cache_of_its_own_frame_size(labelled_cache, tmp_path, capsys, monkeypatch):
    import shlex

    monkeypatch.chdir(tmp_path)  # the printed command writes under ./runs
    from cstp_cli.cli import main

    with pytest.raises(SystemExit) as info:
        main(["pretrain", str(labelled_cache), "--epochs", "1", "--out", str(tmp_path / "run"), *TINY])
    assert info.value.code in (None, 0)
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("next:"))
    argv = shlex.split(line.split(":", 1)[1])
    assert argv[0] == "cstp" and "--size" not in argv  # an explicit cache is read at its own size
    with pytest.raises(SystemExit) as info:
        main(argv[1:])
    captured = capsys.readouterr()
    assert info.value.code in (None, 0), captured.err
    result = json.loads((tmp_path / "runs" / "retrieve-checkpoint" / "retrieval.json").read_text())
    assert result["switches"]["frame_wh"] == [40, 32] and set(result["recall"]) >= {"R@1", "R@5"}


def test_next_command_quotes_paths_and_keeps_a_chosen_frame_size():
    from pathlib import Path

    from cstp_cli.commands.pretrain_cmd import next_command

    assert next_command(None, Path("runs/a/checkpoint.pt"), None) == "cstp retrieve --checkpoint runs/a/checkpoint.pt"
    assert next_command("/data/my videos", Path("c.pt"), "86x64") == "cstp retrieve '/data/my videos' --checkpoint c.pt --size 86x64"


def test_help_shows_the_defaults_a_bare_run_really_uses():
    from typer.testing import CliRunner

    from cstp_cli.cli import build_app
    from cstp_cli.engine.config import PretrainSettings

    out = CliRunner().invoke(build_app(), ["pretrain", "--help"], terminal_width=400).output
    text = " ".join(out.replace("│", " ").split())  # the help column wraps inside its box
    bare = PretrainSettings.preset_values("cpu-synthetic")
    assert f"(default: 60; bare run, preset cpu-synthetic: {bare['batch_size']})" in text
    assert f"(default: r21d; bare run, preset cpu-synthetic: {bare['backbone']})" in text
    assert "--momentum" in text and "(default: 0.9)" in text  # every setting is a flag, with its declared default


def test_a_clip_larger_than_the_cache_frames_is_warned_about(cache, tmp_path, capsys):
    argv = [a if a != "32" else "48" for a in TINY]  # --clip-size 48 on 40x32 frames
    code, err = _main(["pretrain", str(cache), "--epochs", "1", "--out", str(tmp_path / "run"), *argv], capsys)
    assert code in (0, None) and err.count("warning: clip size 48 is larger than the 40x32 frames") == 1
