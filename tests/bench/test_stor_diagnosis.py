"""bench/stor_diagnosis.py (issue 12 item 1): a row trains on the current sampler and reports."""

import json

import numpy as np
import pytest
import torch


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    from cstp_cli.data.memcache import render_videos, write_cache

    return write_cache(render_videos(8, 40, (64, 48), seed=5), tmp_path_factory.mktemp("diag") / "c.h5")


@pytest.mark.parametrize("tie,sets", [(True, {}), (False, {"sets": {"stor.parts": "spatial,temporal", "stor.share": "flip"}})])
def test_a_row_trains_a_few_steps_and_measures_loss_and_oracle(diag, cache, tmp_path, tie, sets):
    row = diag.Row("T. test row", tie=tie, flags={"batch_size": 4, **sets}, data=str(cache))
    out = diag.run_one(row, "temporal", seed=101, steps=3, work=tmp_path, oracle_batches=1)
    assert out["steps"] == 3 and np.isfinite(out["loss"]) and 0.0 <= out["oracle"] <= 1.0
    # both parts at once: the loss split by the other part's label (5 labels; the last step's 4 samples)
    assert len(out["by_other_label"]) == (0 if tie else 5)


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


def test_shifted_oracle_recovers_the_offset_when_the_boxes_differ(diag):
    import torch

    from cstp_cli.api import delta_steps

    g = torch.Generator().manual_seed(0)
    T, n, labels = 8, 5, [0, 1, 2, 3, 4, 2]
    x1, x2 = [], []
    for i, k in enumerate(labels):
        video = torch.rand(3, T + 8, 24, 24, generator=g)
        d = delta_steps(k, n, T)
        ux, uy = (i % 3) + 1, 4 - (i % 4)  # box 2 shifted right/down by a few pixels
        a, b = (0, d) if i % 2 else (d, 0)  # clip 2 before or after clip 1
        x1.append(video[:, a: a + T, 4: 20, 4: 20])
        x2.append(video[:, b: b + T, 4 + uy: 20 + uy, 4 + ux: 20 + ux])
    x1, x2 = torch.stack(x1), torch.stack(x2)
    assert diag.oracle_temporal_shifted(x1, x2, n).tolist() == labels
    assert diag.oracle_temporal(x1, x2, n).tolist() != labels  # the plain matcher assumes equal boxes


@pytest.mark.parametrize("t", [8, 2])
def test_profile_head_maps_any_time_length_to_logits(diag, t):
    import torch

    head = diag.ProfileHead(feature_dim=4, n=5)
    m1, m2 = torch.randn(3, 4, t, 4, 4), torch.randn(3, 4, t, 4, 4)
    assert head(m1, m2).shape == (3, 5)


def test_profile_variant_keeps_time_in_cnn4_and_is_undone_on_exit(diag):
    import torch
    from cstp_plugins.backbones.cnn4 import CNN4
    from cstp_plugins.pretext.stor import StorTask

    with diag.variant("profile"):
        maps = CNN4("tiny").features(torch.zeros(1, 3, 8, 32, 32))
        heads = StorTask(fusion="corr").head(32)
    assert maps.shape[2] == 8 and isinstance(heads["temporal"], diag.ProfileHead)
    assert CNN4("tiny").features(torch.zeros(1, 3, 8, 32, 32)).shape[2] == 2
    assert not isinstance(StorTask(fusion="corr").head(32)["temporal"], diag.ProfileHead)


def test_loss_is_split_by_the_other_parts_label(diag):
    import torch

    rows = [torch.tensor([[0.0, 1.0], [0.0, 3.0], [2.0, 0.5]])]
    assert diag.by_other_label(rows, 3) == [2.0, None, 0.5]


def test_merge_keeps_earlier_rows_not_redone_in_table_order(diag):
    first, second, third = (r.name for r in diag.ROWS[:3])
    earlier = [{"row": first, "v": "old"}, {"row": third, "v": "old"}]
    merged = diag.merge_rows(earlier, [{"row": third, "v": "new"}, {"row": second, "v": "new"}])
    assert [(m["row"], m["v"]) for m in merged] == [(first, "old"), (second, "new"), (third, "new")]


def test_markdown_splits_joint_rows_by_the_other_label(diag, tmp_path):
    run = {"loss": 1.5, "oracle": 0.6, "steps": 3, "seconds": 1.0, "curve": [1.5],
           "by_other_label": [1.2, 1.6, 1.6, 1.6, 1.6]}
    rec = {"row": "S. joint", "steps": 3, "seeds": [101], "parts": {"temporal": [run]}}
    diag.write(tmp_path, [rec], 60.0, 3)
    assert "| S | 1.20 | 1.60 | 1.60 | 1.60 | 1.60 | — | — | — | — | — |" in (tmp_path / "stor_diagnosis.md").read_text()


def test_overlap_profile_finds_a_shift_only_when_allowed_to(diag):
    torch.manual_seed(0)
    m1 = torch.randn(2, 16, 2, 4, 4)
    m2 = torch.roll(m1, shifts=2, dims=-1)  # the same map, moved by half its width
    anywhere = diag.ProfileHead(16, 5, min_overlap=0.0).profile(m1, m2)
    unshifted = diag.ProfileHead(16, 5, min_overlap=1.0).profile(m1, m2)
    assert anywhere.shape == (2, 2)
    assert torch.allclose(anywhere[:, 0], torch.ones(2), atol=1e-5)  # the shift is found
    assert (unshifted[:, 0] < 0.9).all()  # only the zero shift: the maps do not match there


def test_overlap_restricted_profile_head_gives_logits(diag):
    head = diag.ProfileHead(16, 5, min_overlap=0.15)
    assert head(torch.randn(3, 16, 8, 4, 4), torch.randn(3, 16, 8, 4, 4)).shape == (3, 5)
