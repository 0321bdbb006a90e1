"""Exit codes and one-line messages of the CLI (DESIGN "Errors")."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cstp_cli import cli
from cstp_cli.errors import CacheError, UsageError


def run_main(monkeypatch, argv, exc):
    def boom(*args, **kwargs):
        raise exc

    monkeypatch.setattr(cli, "build_app", lambda: boom)
    with pytest.raises(SystemExit) as caught:
        cli.main(argv)
    return caught.value.code


def test_expected_failure_prints_one_line_and_exits_1(monkeypatch, capsys):
    monkeypatch.delenv("CSTP_DEBUG", raising=False)
    code = run_main(monkeypatch, [], CacheError("cache x.h5 has format 9; rebuild it"))
    err = capsys.readouterr().err
    assert code == 1 and err == "error: cache x.h5 has format 9; rebuild it\n"


def test_usage_error_exits_2(monkeypatch, capsys):
    monkeypatch.delenv("CSTP_DEBUG", raising=False)
    assert run_main(monkeypatch, [], UsageError("nothing to learn from")) == 2


def test_bug_exits_3_with_debug_hint(monkeypatch, capsys):
    monkeypatch.delenv("CSTP_DEBUG", raising=False)
    code = run_main(monkeypatch, [], ZeroDivisionError("oops"))
    err = capsys.readouterr().err
    assert code == 3 and "CSTP_DEBUG=1" in err and len(err.strip().splitlines()) == 1


def test_version_flag():
    out = subprocess.run([sys.executable, "-m", "cstp_cli", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("cstp 0.")


def test_error_lines_name_the_rank_under_torchrun(monkeypatch, capsys):
    monkeypatch.delenv("CSTP_DEBUG", raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    run_main(monkeypatch, [], CacheError("bad cache"))
    assert capsys.readouterr().err == "rank 1: error: bad cache\n"
