"""A rank that dies or hangs: a clear error on rank 0, soon, and the checkpoint stays whole (issue 6).

Rank 0 writes a checkpoint (``save_on_main``, atomic), rank 1 tries to overwrite it (it must
write nothing), then rank 1 dies (``os._exit``) or hangs past ``CSTP_DIST_TIMEOUT`` before
the collectives of a DDP step that rank 0 runs inside ``guard``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from cstp_cli.core.checkpoint import atomic_save

HERE = Path(__file__).resolve().parent
TIMEOUT_S = 2


def _load_ranks():
    spec = importlib.util.spec_from_file_location("cstp_engine_dist_ranks", HERE / "_dist_ranks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


R = _load_ranks()


def run_failure(mode: str, folder: Path) -> tuple[list, dict]:
    torch.manual_seed(0)
    inputs = {"state": R.build_model("simclr").state_dict(), "data": R.make_data(), "weights": torch.arange(6.0)}
    atomic_save(inputs, folder / "inputs.pt")
    env = {R.D.TIMEOUT_ENV: str(TIMEOUT_S), "CSTP_TEST_FAILURE": mode}
    codes = R.launch(R.death_program, folder, env, timeout=30)
    return codes, torch.load(folder / "rank0.pt", weights_only=False)


@pytest.fixture(scope="module")
def died(tmp_path_factory):
    folder = tmp_path_factory.mktemp("died")
    codes, rank0 = run_failure("die", folder)
    return {"codes": codes, "rank0": rank0, "folder": folder}


@pytest.fixture(scope="module")
def hung(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hung")
    codes, rank0 = run_failure("hang", folder)
    return {"codes": codes, "rank0": rank0, "folder": folder}


def test_dead_rank_gives_rank_zero_a_clear_one_line_error(died):
    error = died["rank0"]["error"]
    assert error is not None and "\n" not in error
    assert error.startswith("rank 0/2: training step 2 failed because another rank died or hung")
    assert "CSTP_DIST_TIMEOUT=2s" in error and "--resume" in error


def test_dead_rank_is_noticed_within_the_timeout(died):
    assert died["codes"] == [0, 3]
    assert died["rank0"]["seconds"] < TIMEOUT_S + 1


def test_collective_helper_outside_a_guard_fails_with_a_clear_error(died):
    error = died["rank0"]["helper_error"]
    assert error is not None and "\n" not in error
    assert error.startswith("rank 0/2: agreeing with the other ranks on whether to stop failed because another rank died")
    assert "written by rank 0 only, atomically" in error


def test_hung_rank_times_out_rank_zero_with_a_clear_error(hung):
    error = hung["rank0"]["error"]
    assert error is not None and "another rank died or hung" in error
    assert TIMEOUT_S - 0.5 < hung["rank0"]["seconds"] < TIMEOUT_S + 3


@pytest.mark.parametrize("case", ["died", "hung"])
def test_checkpoint_written_before_the_failure_is_intact(case, request):
    folder = request.getfixturevalue(case)["folder"]
    ckpt = torch.load(folder / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 1 and torch.equal(ckpt["weights"], torch.arange(6.0))  # rank 1 wrote nothing
    assert str(folder / "checkpoint.pt") in request.getfixturevalue(case)["rank0"]["error"]
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]
