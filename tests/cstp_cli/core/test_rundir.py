"""Run folders are checked up front and a run in them is never replaced (issue 13 item 1)."""

from __future__ import annotations

import pytest

from cstp_cli.core.rundir import check_run_folder, existing_run_files
from cstp_cli.errors import UsageError

FILES = ("checkpoint.pt", "metrics.jsonl")


def test_a_new_or_empty_folder_is_accepted_and_created(tmp_path):
    assert check_run_folder(tmp_path / "a" / "b", FILES, flag="-o") == tmp_path / "a" / "b"
    assert (tmp_path / "a" / "b").is_dir() and not any((tmp_path / "a" / "b").iterdir())


def test_a_folder_holding_a_run_is_refused_with_what_to_do(tmp_path):
    (tmp_path / "metrics.jsonl").write_text("{}\n")
    with pytest.raises(UsageError, match=r"holds a run \(metrics.jsonl\); it is kept: continue it with --resume X or choose another -o"):
        check_run_folder(tmp_path, FILES, flag="-o", continue_hint="--resume X")


def test_resume_accepts_the_folder_of_the_run_it_continues(tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"x")
    assert check_run_folder(tmp_path, FILES, flag="-o", resume=True) == tmp_path


def test_patterns_reach_into_sub_folders(tmp_path):
    (tmp_path / "split3").mkdir()
    (tmp_path / "split3" / "checkpoint.pt").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("unrelated")
    assert [p.name for p in existing_run_files(tmp_path, ("results.json", "split*/checkpoint.pt"))] == ["checkpoint.pt"]


def test_an_unwritable_folder_is_refused_even_when_resuming(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UsageError, match="is a file, not a folder; choose another --out"):
        check_run_folder(blocker, FILES, flag="--out", resume=True)
