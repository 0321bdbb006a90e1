"""``cstp finetune`` / ``cstp linear`` run folders: a run in ``--out`` is never replaced without ``--resume``."""

from __future__ import annotations

import pytest
import torch

from cstp_cli.cli import main

torch.set_num_threads(1)

TOY = ["--size", "40x32", "--workers", "0", "-q", "--epochs", "1", "--batch-size", "6", "--test-clips", "2"]
RANDOM = ["--init", "random", "--backbone", "r21d", "--width", "tiny", "--frames", "8", "--clip-size", "32"]


def run(argv, capsys):
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    return code, capsys.readouterr().err


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("command", ["finetune", "linear"])
def test_a_finished_run_in_out_is_refused_and_kept(command, toy_eval_cache, tmp_path, capsys):
    out = tmp_path / "run"
    assert run([command, str(toy_eval_cache), *RANDOM, *TOY, "--out", str(out)], capsys)[0] == 0
    before = snapshot(out)
    assert {"results.json", "split1/checkpoint.pt"} <= {str(p) for p in before}
    code, err = run([command, str(toy_eval_cache), *RANDOM, *TOY, "--out", str(out)], capsys)
    assert code == 2
    assert f"{out} already holds a run (results.json, split1/checkpoint.pt)" in err
    assert "continue it with --resume or choose another --out" in err
    assert snapshot(out) == before


def test_resume_continues_the_run_in_out(toy_eval_cache, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(["linear", str(toy_eval_cache), *RANDOM, *TOY, "--out", str(out)], capsys)[0] == 0
    code, err = run(["linear", str(toy_eval_cache), *RANDOM, *TOY, "--out", str(out), "--resume"], capsys)
    assert code == 0, err


def test_a_killed_run_with_only_a_split_checkpoint_is_kept(toy_eval_cache, tmp_path, capsys):
    out = tmp_path / "run"
    (out / "split2").mkdir(parents=True)
    (out / "split2" / "checkpoint.pt").write_bytes(b"a run's only copy")
    code, err = run(["finetune", str(toy_eval_cache), *RANDOM, *TOY, "--out", str(out)], capsys)
    assert code == 2 and "already holds a run (split2/checkpoint.pt)" in err
    assert (out / "split2" / "checkpoint.pt").read_bytes() == b"a run's only copy"


def test_an_out_that_is_a_file_is_refused_before_any_data_work(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, err = run(["finetune", str(tmp_path / "no-such-dataset"), *RANDOM, "--out", str(blocker), "-q"], capsys)
    assert code == 2 and f"{blocker} is a file, not a folder; choose another --out" in err  # not the missing DATA
