"""Shared fixtures of the engine tests: a tiny in-memory-rendered cache and a tiny config."""

from __future__ import annotations

import pytest

from cstp_cli.engine.config import build_config
from cstp_cli.data.memcache import render_videos, write_cache


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory):
    """12 videos × 20 frames of 40×32, all in fold 1's train split."""
    folder = tmp_path_factory.mktemp("engine-cache")
    return write_cache(render_videos(12, 20, (40, 32), seed=3), folder / "tiny.h5")


@pytest.fixture
def tiny_config(tiny_cache, tmp_path):
    """A factory of tiny-run configs: tiny r21d, T=4, 32 px clips, batch 4 (3 steps/epoch)."""

    def make(**flags):
        base = dict(
            data=str(tiny_cache), width="tiny", frames=4, clip_size=32, batch_size=4, epochs=2,
            workers=0, device="cpu", out=str(tmp_path / "run"),
        )
        base.update(flags)
        cfg = build_config(data_given=True, flags=base)
        cfg.pretext = {"pace": {"rates": [1, 2]}, **cfg.pretext}
        cfg.contrastive = {"byol": {"proj_hidden": 32, "pred_hidden": 32}, **cfg.contrastive}
        return cfg

    return make
