"""Fixtures of the extensibility test: a tiny cache and a tiny-run config factory."""

from __future__ import annotations

import pytest

from cstp_cli.engine.config import build_config
from cstp_cli.data.memcache import render_videos, write_cache


@pytest.fixture(scope="session")
def arrow_cache(tmp_path_factory):
    """8 videos × 16 frames of 40×32, all in fold 1's train split."""
    return write_cache(render_videos(8, 16, (40, 32), seed=5), tmp_path_factory.mktemp("arrow") / "tiny.h5")


@pytest.fixture
def tiny_config(arrow_cache, tmp_path):
    """Tiny-run configs: tiny r21d, T=4, 32 px clips, batch 4 (2 steps per epoch)."""

    def make(**flags):
        base = dict(data=str(arrow_cache), width="tiny", frames=4, clip_size=32, batch_size=4, epochs=1,
                    workers=0, device="cpu", out=str(tmp_path / "run"))
        base.update(flags)
        cfg = build_config(data_given=True, flags=base)
        cfg.contrastive = {"byol": {"proj_hidden": 32, "pred_hidden": 32}}
        return cfg

    return make
