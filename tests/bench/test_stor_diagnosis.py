"""bench/stor_diagnosis.py (issue 12 item 1): a row trains on the current sampler and reports."""

import json

import numpy as np
import pytest


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    from cstp_cli.data.memcache import render_videos, write_cache

    return write_cache(render_videos(8, 40, (64, 48), seed=5), tmp_path_factory.mktemp("diag") / "c.h5")


@pytest.mark.parametrize("tie,sets", [(True, {}), (False, {"sets": {"stor.parts": "spatial,temporal", "stor.share": "flip"}})])
def test_a_row_trains_a_few_steps_and_measures_loss_and_oracle(diag, cache, tmp_path, tie, sets):
    row = diag.Row("T. test row", tie=tie, flags={"batch_size": 4, **sets}, data=str(cache))
    out = diag.run_one(row, "temporal", seed=101, steps=3, work=tmp_path, oracle_batches=1)
    assert out["steps"] == 3 and np.isfinite(out["loss"]) and 0.0 <= out["oracle"] <= 1.0


def test_markdown_is_rewritten_from_json_with_each_rows_why(diag, tmp_path):
    name = diag.ROWS[0].name
    run = {"loss": 1.6, "oracle": 0.4, "steps": 3, "seconds": 1.0, "curve": [1.6]}
    (tmp_path / "in.json").write_text(json.dumps({"seconds": 60.0, "steps": 3, "rows": [
        {"row": name, "steps": 3, "seeds": [101], "parts": {"spatial": [run], "temporal": [run]}}]}))
    diag.WHY[name.split(".")[0]] = "because it is a test."
    assert diag.main(["--from-json", str(tmp_path / "in.json"), "--results", str(tmp_path)]) == 0
    text = (tmp_path / "stor_diagnosis.md").read_text()
    assert f"| {name} | 3 × 1 | 1.600 | 40 % | 1.600 | 40 % |" in text
    assert "because it is a test." in text and "cpu-synthetic preset" in text
