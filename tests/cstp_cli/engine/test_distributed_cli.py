"""`torchrun -m cstp_cli ...` end to end on CPU with gloo (issue 6 items 1–2).

Two ranks must give the same numbers as one process: pretraining resumed at the same world
size is bit-exact, a one-process checkpoint resumes on two ranks, and retrieval / embedding
shard their videos and gather results equal to the single-process ones.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cstp_cli.data.memcache import render_videos, write_cache

TINY = ["--width", "tiny", "--frames", "4", "--clip-size", "32", "--workers", "0", "--device", "cpu", "-q"]


def run(args: list[str], ranks: int, cwd: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CSTP_CACHE_DIR": str(cwd / "cachedir")}
    if ranks == 1:
        cmd = [sys.executable, "-m", "cstp_cli", *args]
    else:
        # --standalone: torchrun binds its own free rendezvous port (no race with a port picked here)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}", "-m", "cstp_cli", *args]
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=240, check=False)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ddp")
    labels = np.repeat(np.arange(3), 6)
    train = np.tile([True, True, True, True, False, False], 3)
    return write_cache(render_videos(18, 16, (40, 32), seed=3), folder / "tiny.h5", labels=labels, train=train)


def test_two_rank_pretraining_resumes_bit_exactly_and_accepts_a_one_rank_checkpoint(tiny_cache, tmp_path):
    common = ["pretrain", str(tiny_cache), *TINY, "--batch-size", "4", "--epochs", "2", "--contrastive", "simclr",
              "--set", "simclr.proj_hidden=16", "--set", "simclr.proj_dim=8"]
    run([*common, "-o", str(tmp_path / "full")], 2, tmp_path)
    run([*common, "-o", str(tmp_path / "part"), "--max-steps", "3"], 2, tmp_path)
    run(["pretrain", "--resume", str(tmp_path / "part" / "checkpoint.pt"), "-q"], 2, tmp_path)
    run([*common, "-o", str(tmp_path / "one"), "--max-steps", "3"], 1, tmp_path)
    run(["pretrain", "--resume", str(tmp_path / "one" / "checkpoint.pt"), "-q"], 2, tmp_path)
    full, part, one = (torch.load(tmp_path / n / "checkpoint.pt", weights_only=True) for n in ("full", "part", "one"))
    assert full["step"] == part["step"] == one["step"] == 6
    assert all(torch.equal(full["encoder"][k], part["encoder"][k]) for k in full["encoder"])
    assert all(torch.isfinite(v).all() for v in one["encoder"].values() if v.is_floating_point())


def test_two_rank_retrieval_and_embedding_equal_one_process(tiny_cache, tmp_path):
    enc = ["--init", "random", "--backbone", "r21d", *TINY, "--seed", "5", "--size", "40x32"]
    for ranks in (1, 2):
        run(["retrieve", str(tiny_cache), *enc, "--clips", "3", "--montage", "0", "--out", str(tmp_path / f"r{ranks}")], ranks, tmp_path)
    r1, r2 = (json.loads((tmp_path / f"r{n}" / "retrieval.json").read_text())["recall"] for n in (1, 2))
    assert r1 == r2
    ckpt = tmp_path / "enc.pt"
    from cstp_cli.core.checkpoint import atomic_save, encoder_checkpoint
    from cstp_cli.plugins import get_registry

    torch.manual_seed(0)
    model = get_registry().backbone("r21d").build(width="tiny")
    atomic_save(encoder_checkpoint(kind="pretrain", backbone="r21d", width="tiny", feature_dim=model.feature_dim,
                                   encoder_state=model.state_dict(), frames=4, size=32, frame_wh=(40, 32)), ckpt)
    for ranks in (1, 2):
        run(["embed", str(tiny_cache), "--checkpoint", str(ckpt), "--workers", "0", "--device", "cpu", "-q", "--size", "40x32",
             "--which", "test", "-o", str(tmp_path / f"e{ranks}.npz")], ranks, tmp_path)
    e1, e2 = np.load(tmp_path / "e1.npz"), np.load(tmp_path / "e2.npz")
    assert np.array_equal(e1["videos"], e2["videos"]) and np.allclose(e1["features"], e2["features"], atol=1e-6)
