"""The pretraining loop: terms logged, NaN stop, checkpoints, bit-exact resume."""

from __future__ import annotations


import pytest
import torch

from cstp_cli.core.checkpoint import load_checkpoint
from cstp_cli.engine import loop
from cstp_cli.engine.metrics import read_metrics
from cstp_cli.engine.objective import Objective
from cstp_cli.errors import CheckpointError, TrainingError


def test_every_term_is_logged_every_step(tiny_config):
    result = loop.pretrain(tiny_config(epochs=1), progress=False)
    records = read_metrics(result.metrics)
    assert [r["step"] for r in records] == [1, 2, 3]
    for r in records:
        assert set(r["terms"]) == {"byol", "stor.spatial", "stor.temporal", "rot", "pace"}
        assert set(r["weighted"]) == {"byol", "stor", "rot", "pace"}
        assert "byol.std" in r["stats"]
        assert r["weighted"]["byol"] == pytest.approx(0.1 * r["terms"]["byol"], rel=1e-5)
        assert r["loss"] == pytest.approx(sum(r["weighted"].values()), rel=1e-5)


def test_checkpoint_loads_with_weights_only(tiny_config):
    result = loop.pretrain(tiny_config(epochs=1), progress=False)
    raw = torch.load(result.checkpoint, weights_only=True)
    assert raw["kind"] == "pretrain" and raw["step"] == 3 and raw["samples_consumed"] == 12
    assert raw["cache"]["frame_wh"] == [40, 32]
    assert raw["clip"] == {"frames": 4, "size": 32}
    ckpt = load_checkpoint(result.checkpoint)
    for name, value in result.encoder.state_dict().items():
        assert torch.equal(ckpt["encoder"][name], value)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_config, monkeypatch):
    original = Objective.forward
    calls = {"n": 0}

    def poisoned(self, *args, **kwargs):
        loss, logs = original(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 5:  # step 5: in epoch 2, after epoch 1's checkpoint
            loss = loss * float("nan")
            logs["loss"] = loss.detach()
        return loss, logs

    monkeypatch.setattr(Objective, "forward", poisoned)
    cfg = tiny_config(epochs=3, checkpoint_every="1epoch")
    with pytest.raises(TrainingError, match=r"step 5 \(epoch 2\).*stor\.spatial=.*last good checkpoint"):
        loop.pretrain(cfg, progress=False)
    ckpt = load_checkpoint(f"{cfg.out}/checkpoint.pt")
    assert ckpt["step"] == 3
    assert all(torch.isfinite(v).all() for v in ckpt["encoder"].values() if v.is_floating_point())


def _final_weights(result):
    return {**result.encoder.state_dict(), **{f"obj.{k}": v for k, v in result.objective.state_dict().items()}}


@pytest.fixture(scope="module")
def reference_weights(tiny_cache, tmp_path_factory):
    """An uninterrupted 2-epoch run (6 steps) with 0 workers."""
    from cstp_cli.engine.config import build_config

    cfg = build_config(data_given=True, flags=dict(
        data=str(tiny_cache), width="tiny", frames=4, clip_size=32, batch_size=4, epochs=2, workers=0,
        device="cpu", out=str(tmp_path_factory.mktemp("ref") / "run")))
    cfg.pretext = {"pace": {"rates": [1, 2]}}
    cfg.contrastive = {"byol": {"proj_hidden": 32, "pred_hidden": 32}}
    result = loop.pretrain(cfg, progress=False)
    return _final_weights(result), cfg


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_after_interrupt_is_bit_exact(reference_weights, tiny_config, monkeypatch, workers):
    expected, _ = reference_weights
    cfg = tiny_config(workers=workers)
    monkeypatch.setenv(loop.INTERRUPT_ENV, "2")  # SIGINT to ourselves after step 2 of epoch 1
    first = loop.pretrain(cfg, progress=False)
    assert first.interrupted and first.steps == 2
    monkeypatch.delenv(loop.INTERRUPT_ENV)
    second = loop.pretrain({"workers": workers}, resume=first.checkpoint, progress=False)
    assert second.steps == 6 and not second.interrupted
    got = _final_weights(second)
    assert got.keys() == expected.keys()
    different = [k for k in expected if not torch.equal(expected[k], got[k])]
    assert different == []
    steps = [r["step"] for r in read_metrics(second.metrics)]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_resume_refuses_another_cache_size(tiny_config, tmp_path):
    from cstp_cli.data.memcache import render_videos, write_cache

    first = loop.pretrain(tiny_config(epochs=1), progress=False)
    other = write_cache(render_videos(8, 12, (48, 32), seed=1), tmp_path / "other.h5")
    with pytest.raises(CheckpointError, match="40x32 frames but the cache .* has 48x32"):
        loop.pretrain({"data": str(other)}, resume=first.checkpoint, progress=False)


def _saved_steps(monkeypatch):
    from cstp_cli.engine import checkpointing

    steps = []
    original = checkpointing.save

    def recording(run, path):
        steps.append(run.step)
        return original(run, path)

    monkeypatch.setattr(checkpointing, "save", recording)
    return steps


def test_a_short_run_saves_once_at_the_end_by_default(tiny_config, monkeypatch):
    steps = _saved_steps(monkeypatch)
    result = loop.pretrain(tiny_config(epochs=3), progress=False)  # 9 steps, far less than 10 minutes
    assert steps == [9]
    assert load_checkpoint(result.checkpoint)["step"] == 9
    assert result.plot is not None and result.plot.read_bytes()[:4] == b"\x89PNG"


def test_a_step_cadence_saves_at_every_multiple_and_at_the_end(tiny_config, monkeypatch):
    steps = _saved_steps(monkeypatch)
    loop.pretrain(tiny_config(epochs=3, checkpoint_every="4steps"), progress=False)
    assert steps == [4, 8, 9]


def test_the_loss_plot_is_drawn_at_save_time_off_the_training_thread(tiny_config, monkeypatch):
    import threading

    from cstp_cli.engine import metrics

    threads = []
    original = metrics.plot_losses

    def recording(*args, **kwargs):
        threads.append(threading.current_thread().name)
        return original(*args, **kwargs)

    monkeypatch.setattr(metrics, "plot_losses", recording)
    loop.pretrain(tiny_config(epochs=2, checkpoint_every="1epoch"), progress=False)  # 6 steps: one save mid-run
    assert threads == ["cstp-loss-plot", threading.main_thread().name]  # mid-run in the background; the final one


def test_resume_after_an_interrupt_between_cadence_saves_is_bit_exact(reference_weights, tiny_config, monkeypatch):
    expected, _ = reference_weights
    monkeypatch.setenv(loop.INTERRUPT_ENV, "5")
    first = loop.pretrain(tiny_config(checkpoint_every="2steps"), progress=False)
    assert first.interrupted and load_checkpoint(first.checkpoint)["step"] == 5
    monkeypatch.delenv(loop.INTERRUPT_ENV)
    second = loop.pretrain({}, resume=first.checkpoint, progress=False)
    got = _final_weights(second)
    assert [k for k in expected if not torch.equal(expected[k], got[k])] == []
