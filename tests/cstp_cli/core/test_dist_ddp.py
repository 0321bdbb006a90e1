"""DDP on 2 gloo processes × B equals 1 process × 2B (issue 6; every BatchNorm in eval mode).

The two ranks run ``_dist_ranks.ddp_program`` once for the module (forked, torchrun's
environment, ``init_distributed("cpu")``); each test checks one result against the
single-process reference computed here with the same code and ``DistContext()``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cstp_cli.core.dist import DistContext

HERE = Path(__file__).resolve().parent


def _load_ranks():
    spec = importlib.util.spec_from_file_location("cstp_engine_dist_ranks", HERE / "_dist_ranks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


R = _load_ranks()


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(7)
    probe = torch.nn.ModuleDict({"backbone": R.build_encoder(), "head": torch.nn.Linear(R.FEATURES, 4)}).state_dict()
    return {"states": R.initial_states(), "data": R.make_data(), "shuffle_x": torch.randn(8, 3, 2, 8, 8, generator=g),
            "probe": probe}


@pytest.fixture(scope="module")
def ranks(inputs, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp")
    torch.save(inputs, folder / "inputs.pt")
    codes = R.launch(R.ddp_program, folder)
    assert codes == [0] * R.WORLD, "a gloo rank failed; its traceback is in the captured stderr"
    return [torch.load(folder / f"rank{r}.pt", weights_only=False) for r in range(R.WORLD)]


@pytest.fixture(scope="module")
def reference(inputs):
    """One process, batch 2B, same samples, same code path (no DDP wrapper)."""
    return {name: R.train_steps(name, inputs["states"][name], inputs["data"], DistContext()) for name in R.SCHEMES}


def test_ranks_read_torchruns_environment_and_use_gloo(ranks):
    for rank, out in enumerate(ranks):
        assert out["ctx"] == (rank, R.WORLD, rank, "cpu", "gloo", 20.0)


def test_init_distributed_again_returns_the_same_context_and_keeps_the_group(ranks):
    for out in ranks:
        assert out["ctx_again"] and out["inner_world"] == R.WORLD and out["still_initialised"]


def test_each_rank_takes_b_distinct_samples_that_make_the_global_batch(ranks, inputs):
    order = inputs["data"]["order"].tolist()
    for step in range(R.STEPS):
        taken = [out["schemes"]["simclr"]["taken"][step] for out in ranks]
        assert all(len(t) == R.GLOBAL_BATCH // R.WORLD for t in taken)
        assert not set(taken[0]) & set(taken[1])
        assert taken[0] + taken[1] == order[step * R.GLOBAL_BATCH : (step + 1) * R.GLOBAL_BATCH]


@pytest.mark.parametrize("name", R.SCHEMES)
def test_loss_of_two_ranks_equals_one_process(ranks, reference, name):
    for out in ranks:
        for step in range(R.STEPS):
            got, want = out["schemes"][name]["loss"][step], reference[name]["loss"][step]
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", R.SCHEMES)
def test_scheme_and_head_terms_of_two_ranks_equal_one_process(ranks, reference, name):
    want = reference[name]["logs"][0]
    got = ranks[0]["schemes"][name]["logs"][0]
    assert f"terms/{name}" in got and "terms/rot" in got
    for key in (f"terms/{name}", "terms/rot"):
        torch.testing.assert_close(got[key], want[key], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", R.SCHEMES)
def test_averaged_gradients_of_online_parameters_equal_one_process(ranks, reference, name):
    want = reference[name]["grads"]
    assert any(k.startswith("encoder.") for k in want) and any(k.startswith("objective.heads.") for k in want)
    for out in ranks:
        got = out["schemes"][name]["grads"]
        assert sorted(got) == sorted(want)
        for key in want:
            torch.testing.assert_close(got[key], want[key], rtol=1e-4, atol=1e-6, msg=f"{name}: {key}")


@pytest.mark.parametrize("name", R.SCHEMES)
def test_weights_and_targets_after_two_steps_equal_one_process(ranks, reference, name):
    want = reference[name]["state"]
    for out in ranks:
        got = out["schemes"][name]["state"]
        for key, value in want.items():
            if value.is_floating_point():
                torch.testing.assert_close(got[key], value, rtol=1e-4, atol=1e-5, msg=f"{name}: {key}")
            else:
                assert torch.equal(got[key], value), f"{name}: {key}"


def test_moco_queue_and_pointer_after_each_step_equal_one_process(ranks, reference):
    want = reference["moco"]
    assert want["queue_ptr"] == [8, 4]  # 2 views × 4 keys per step into a queue of 12: wraps
    for out in ranks:
        got = out["schemes"]["moco"]
        assert got["queue_ptr"] == want["queue_ptr"]
        for step in range(R.STEPS):
            torch.testing.assert_close(got["queue"][step], want["queue"][step], rtol=1e-5, atol=1e-6)


def test_linear_probe_through_call_module_equals_one_process(ranks, inputs):
    want = R.probe_step(inputs["probe"], inputs["data"], DistContext())
    for out in ranks:
        torch.testing.assert_close(out["probe"]["loss"], want["loss"], rtol=1e-5, atol=1e-6)
        assert sorted(out["probe"]["grads"]) == ["bias", "weight"]
        for key, value in want["grads"].items():
            torch.testing.assert_close(out["probe"]["grads"][key], value, rtol=1e-4, atol=1e-6)


def test_shuffle_bn_key_batches_mix_samples_of_both_ranks(ranks):
    local = [set(map(tuple, out["shuffle"]["local"].flatten(1).tolist())) for out in ranks]
    seen = [set(map(tuple, out["shuffle"]["bn_batch"].flatten(1).tolist())) for out in ranks]
    assert seen[0] | seen[1] == local[0] | local[1] and not seen[0] & seen[1]
    assert seen[0] != local[0] and seen[1] != local[1]


def test_shuffle_bn_keys_come_back_in_each_ranks_order(ranks, inputs):
    """Each key equals the key of its own clip computed in the BN batch the key encoder saw."""
    model = R.build_model("moco")
    model.load_state_dict(inputs["states"]["moco"])
    scheme = model.objective.scheme.train()
    with torch.no_grad():
        batches = [out["shuffle"]["bn_batch"] for out in ranks]
        keys = [F.normalize(scheme.key_projector(scheme.key_encoder(b)).float(), dim=1) for b in batches]
    pool_x, pool_k = torch.cat(batches).flatten(1), torch.cat(keys)
    for out in ranks:
        rows = [int((pool_x == x).all(dim=1).nonzero()) for x in out["shuffle"]["local"].flatten(1)]
        torch.testing.assert_close(out["shuffle"]["keys"], pool_k[rows], rtol=1e-4, atol=1e-5)  # float noise of another rank split; a key out of order is off by ~0.1


def test_shard_range_splits_work_contiguously(ranks):
    assert [out["shard"] for out in ranks] == [[0, 1], [2, 3, 4]]


def test_gather_tensors_restores_the_original_order_with_uneven_shards(ranks):
    for out in ranks:
        assert torch.equal(out["gathered"], (torch.arange(5.0) * 10).reshape(-1, 1))
        assert torch.equal(out["gathered_empty_ok"], torch.ones(1, 2))


def test_gather_objects_and_shards_are_in_rank_order(ranks):
    for out in ranks:
        assert out["objects"] == [{"rank": 0}, {"rank": 1}]
        assert out["shards"] == [f"video{i}" for i in range(5)]


def test_sharded_map_computes_each_rank_its_shard_and_returns_all_in_order(ranks):
    assert [out["mapped_calls"][0] for out in ranks] == [[0, 1], [2, 3, 4]]
    want = np.stack([np.arange(5), np.arange(5) ** 2], axis=1).astype(np.float32)
    for out in ranks:
        np.testing.assert_array_equal(out["mapped"], want)


def test_sharded_map_skips_an_empty_shard(ranks):
    assert [out["mapped_calls"][1:] for out in ranks] == [[], [[0]]]
    for out in ranks:
        assert torch.equal(out["mapped_one"], torch.ones(1, 1))


def test_broadcast_object_gives_every_rank_rank_zeros_value(ranks):
    assert [out["broadcast"] for out in ranks] == ["runs/pretrain-from-rank0"] * R.WORLD


def test_any_rank_is_true_everywhere_when_one_rank_says_so(ranks):
    assert [out["any_rank"] for out in ranks] == [(True, False)] * R.WORLD


def test_rank_zero_only_runs_on_rank_zero_alone(ranks):
    assert [out["zero_only"] for out in ranks] == ["ran on 0", None]
