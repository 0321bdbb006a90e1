"""Extensibility proof: a third-party pretext task installed through a real entry point."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cstp_cli.plugins import get_registry

HERE = Path(__file__).resolve().parent


@pytest.fixture
def arrow_installed(tmp_path, monkeypatch):
    """Install ``cstp_arrow`` with a ``.dist-info`` (entry point group ``cstp``) on sys.path."""
    dist = tmp_path / "cstp_arrow-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: cstp-arrow\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[cstp]\narrow = cstp_arrow\n")
    monkeypatch.syspath_prepend(str(HERE))
    monkeypatch.syspath_prepend(str(tmp_path))
    get_registry(refresh=True)
    yield
    monkeypatch.undo()
    get_registry(refresh=True)


def test_arrow_plugin_is_registered_from_its_entry_point(arrow_installed):
    registry = get_registry()
    assert "arrow" in registry.names("pretext")
    assert any(c.name == "arrow" and c.version == "0.1" for c in registry.all())


def test_arrow_pretraining_uses_its_plan_transform_head_and_loss(arrow_installed, tiny_config):
    from cstp_cli.augment import augment_batch
    from cstp_cli.engine import loop

    seen = {}

    def on_step(run, step, frames, batch, values):
        if step == 1:
            seen["frames"] = frames
            seen["labels"] = {k: v.clone() for k, v in batch.labels.items()}
            seen["batch"] = batch
            seen["tasks"] = run.objective.tasks
        seen.setdefault("terms", []).append(values)

    cfg = tiny_config(epochs=1, objective={"pretext": "stor,arrow", "augment": "none"})
    cfg.sets = {"arrow": {"p": "0.5"}}
    setup_head = {}
    run = loop.setup(cfg)
    setup_head.update({k: v.clone() for k, v in run.objective.heads["arrow"].state_dict().items()})
    result = loop.train(run, progress=False, on_step=on_step)

    # the plan: its label is collated into every batch
    flags = seen["labels"]["arrow.reverse"]
    assert flags.shape == (4, 2) and set(flags.unique().tolist()) <= {0, 1}
    # its device transform: flagged clips are the time-reversed unflagged clips
    batch = seen["batch"]
    frames = seen["frames"]
    on = augment_batch(frames, batch, seen["tasks"], out_size=32)
    off_batch = type(batch)(**{**batch.__dict__, "extras": {**batch.extras, "arrow.reverse": torch.zeros_like(flags)}})
    off = augment_batch(frames, off_batch, seen["tasks"], out_size=32)
    mask = flags.bool()
    assert mask.any()
    assert torch.equal(on[mask], off[mask].flip(2))  # [K, 3, T, S, S]: T is axis 2
    assert torch.equal(on[~mask], off[~mask])
    # its loss is a logged term and its head trained
    assert all("terms/arrow" in v for v in seen["terms"])
    after = result.objective.heads["arrow"].state_dict()
    assert any(not torch.equal(setup_head[k], after[k]) for k in after if after[k].is_floating_point())
