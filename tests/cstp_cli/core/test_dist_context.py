"""One-process behaviour of cstp_cli.core.dist: context, usage errors, sharding, wrapping."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from cstp_cli.core import dist as D
from cstp_cli.errors import UsageError

HERE = Path(__file__).resolve().parent
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", D.TIMEOUT_ENV, D.BACKEND_ENV)


def _load_ranks():
    spec = importlib.util.spec_from_file_location("cstp_engine_dist_ranks", HERE / "_dist_ranks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


R = _load_ranks()


@pytest.fixture
def no_torchrun(monkeypatch):
    for key in TORCHRUN_ENV:
        monkeypatch.delenv(key, raising=False)
    return monkeypatch


def test_without_torchrun_the_context_is_one_process_on_cpu(no_torchrun):
    ctx = D.init_distributed("cpu")
    assert (ctx.rank, ctx.world_size, ctx.backend, ctx.device, ctx.is_main, ctx.distributed) == (
        0, 1, None, torch.device("cpu"), True, False)
    assert not torch.distributed.is_initialized()


def test_distributed_block_gives_the_one_process_context(no_torchrun):
    with D.distributed("cpu") as ctx:
        assert ctx == D.DistContext(timeout_s=D.DEFAULT_TIMEOUT_S)


def test_world_size_one_under_torchrun_initialises_nothing(no_torchrun):
    no_torchrun.setenv("WORLD_SIZE", "1")
    no_torchrun.setenv("RANK", "0")
    assert D.init_distributed("auto").world_size == 1 and not torch.distributed.is_initialized()


def test_missing_rendezvous_address_is_a_usage_error_naming_torchrun(no_torchrun):
    no_torchrun.setenv("WORLD_SIZE", "2")
    no_torchrun.setenv("RANK", "1")
    with pytest.raises(UsageError, match="MASTER_ADDR and MASTER_PORT not set; launch with `torchrun"):
        D.init_distributed("cpu")


def test_rank_outside_the_world_is_a_usage_error(no_torchrun):
    no_torchrun.setenv("WORLD_SIZE", "2")
    no_torchrun.setenv("RANK", "2")
    with pytest.raises(UsageError, match="RANK=2 WORLD_SIZE=2"):
        D.init_distributed("cpu")


@pytest.mark.parametrize("value", ["soon", "0", "-5"])
def test_bad_timeout_is_a_usage_error(no_torchrun, value):
    no_torchrun.setenv(D.TIMEOUT_ENV, value)
    with pytest.raises(UsageError, match="CSTP_DIST_TIMEOUT"):
        D.init_distributed("cpu")


def test_timeout_comes_from_the_environment(no_torchrun):
    no_torchrun.setenv(D.TIMEOUT_ENV, "7.5")
    assert D.init_distributed("cpu").timeout_s == 7.5


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_cuda_is_a_usage_error(no_torchrun):
    with pytest.raises(UsageError, match="CUDA is not available"):
        D.init_distributed("cuda")


def test_shard_of_batch_gives_each_rank_its_contiguous_block():
    batch = [9, 4, 7, 1, 0, 3]
    shards = [D.shard_of_batch(batch, r, 3) for r in range(3)]
    assert shards == [[9, 4], [7, 1], [0, 3]]


def test_batch_size_not_divisible_by_world_size_is_a_usage_error():
    message = r"--batch-size 6 is global and must be a positive multiple of the world size 4.*--batch-size 4"
    with pytest.raises(UsageError, match=message):
        D.shard_of_batch(list(range(6)), 0, 4)


def test_shard_range_covers_every_item_once_in_order():
    for n, world in [(0, 3), (5, 2), (7, 3), (2, 4)]:
        assert [i for r in range(world) for i in D.shard_range(n, r, world)] == list(range(n))


def test_sharded_batch_sampler_gives_each_rank_its_share_of_every_global_batch():
    order = [8, 3, 5, 1, 0, 7, 2, 6, 4, 9, 10]  # 2 global batches of 4, then 3 left over
    per_rank = [list(D.ShardedBatchSampler(order, 4, r, 2, drop_last=True)) for r in range(2)]
    assert per_rank == [[[8, 3], [0, 7]], [[5, 1], [2, 6]]]


def test_sharded_batch_sampler_splits_a_last_batch_only_if_every_rank_gets_a_sample():
    kept = [list(D.ShardedBatchSampler(list(range(11)), 4, r, 2, drop_last=False)) for r in range(2)]
    assert [b[-1] for b in kept] == [[8], [9, 10]]
    short = [D.ShardedBatchSampler(list(range(9)), 4, r, 2, drop_last=False) for r in range(2)]
    assert [len(list(s)) for s in short] == [len(s) for s in short] == [2, 2]  # 1 left for 2 ranks: dropped


def test_sync_bn_on_cpu_is_a_usage_error_explaining_cuda():
    with pytest.raises(UsageError, match="--sync-bn: torch's SyncBatchNorm needs CUDA devices, this run is on cpu"):
        D.wrap_for_ddp(torch.nn.BatchNorm1d(2), D.DistContext(), sync_bn=True)


def test_one_process_wrap_returns_the_module_itself():
    model = R.build_model("simclr")
    assert D.wrap_for_ddp(model, D.DistContext()) is model


@pytest.mark.parametrize(
    "name, targets",
    [("byol", ["objective.scheme.target_encoder", "objective.scheme.target_projector"]),
     ("moco", ["objective.scheme.key_encoder", "objective.scheme.key_projector"]),
     ("simclr", []), ("simsiam", [])],
)
def test_target_networks_are_found_and_left_out_of_ddp(name, targets):
    model = R.build_model(name)
    assert sorted(D.frozen_submodules(model)) == targets
    ignored = D.ddp_ignored_names(model)
    assert all(any(n.startswith(t + ".") for t in targets) for n in ignored)
    assert not any(n.startswith(("encoder.", "objective.heads.")) for n in ignored)
    if targets:
        assert f"{targets[0]}.1.running_mean" in ignored  # the target's BatchNorm buffers too


def test_train_module_runs_encoder_per_view_then_the_objective():
    model = R.build_model("simclr")
    R.bn_eval(model)
    calls = []
    model.encoder.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
    data = R.make_data()
    loss, logs = model(data["x1"][:3], data["x2"][:3], {"rot.clips": data["rot"][:3]})
    assert calls == [3, 3] and loss.ndim == 0 and "terms/simclr" in logs and "terms/rot" in logs


def test_one_process_helpers_are_identities():
    x = torch.arange(4.0)
    assert D.gather_tensors(x) is x
    assert D.gather_objects("a") == ["a"] and D.gather_shards([1, 2]) == [1, 2]
    assert D.broadcast_object({"k": 1}) == {"k": 1} and D.any_rank(True) and not D.any_rank(False)
    assert D.reduce_logs({"loss": x[1]}) == {"loss": x[1]}
    D.barrier()


def test_rank_zero_only_runs_in_a_single_process():
    assert D.rank_zero_only(lambda v: v + 1)(1) == 2


def test_save_on_main_writes_atomically_in_a_single_process(tmp_path):
    path = D.save_on_main({"step": 3}, tmp_path / "ckpt.pt")
    assert path == tmp_path / "ckpt.pt" and torch.load(path)["step"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_guard_is_transparent_for_other_errors_and_in_one_process():
    with pytest.raises(ValueError, match="shape"):
        with D.guard("step 1"):
            raise ValueError("shape mismatch")


@pytest.mark.parametrize(
    "exc, expected",
    [(RuntimeError("[pair.cc:561] Connection closed by peer [127.0.0.1]:1"), True),
     (RuntimeError("Timed out waiting 2000ms for recv operation to complete"), True),
     (torch.distributed.DistBackendError("NCCL error"), True),
     (RuntimeError("mat1 and mat2 shapes cannot be multiplied"), False),
     (ValueError("timed out"), False)],
)
def test_collective_failures_are_told_apart_from_bugs(exc, expected):
    assert D.is_collective_failure(exc) is expected


def test_train_module_runs_a_compiled_encoder():
    """Regression (found on the H200 with --compile): a compiled module has no truth value."""

    class Objective(torch.nn.Module):
        def forward(self, y1, y2, x1, x2, labels):
            return (y1 - y2).square().mean(), {}

    class Encoder(torch.nn.Module):  # like the backbones: no __len__
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(12, 3)

        def forward(self, x):
            return self.fc(x.flatten(1))

    encoder = Encoder()
    compiled = torch.compile(encoder, backend="eager")
    module = D.TrainModule(encoder, Objective(), encode=compiled)
    loss, _ = module(torch.ones(2, 3, 4), torch.zeros(2, 3, 4), {})
    assert loss.item() == (encoder(torch.ones(2, 3, 4)) - encoder(torch.zeros(2, 3, 4))).square().mean().item()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_cuda_device_without_cuda_is_a_one_line_usage_error(name):
    with pytest.raises(UsageError, match="CUDA is not available"):
        D.resolve_device(name)


@pytest.mark.parametrize("name", ["tpu", "xla", "gpu", "cuda:x"])
def test_unknown_device_is_a_usage_error_listing_the_choices(name):
    with pytest.raises(UsageError, match="use auto, cpu, cuda or cuda:N"):
        D.resolve_device(name)


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="needs a machine without MPS")
def test_mps_without_mps_is_a_usage_error():
    with pytest.raises(UsageError, match="use auto, cpu, cuda or cuda:N"):
        D.resolve_device("mps")


def test_auto_and_cpu_resolve_on_a_cpu_machine():
    assert D.resolve_device("cpu") == torch.device("cpu")
    assert D.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_cleanup_waits_for_the_other_gloo_ranks_before_leaving_the_group(monkeypatch):
    import torch.distributed as tdist

    calls = []
    monkeypatch.setattr(tdist, "is_initialized", lambda: True)
    monkeypatch.setattr(tdist, "get_backend", lambda: "gloo")
    monkeypatch.setattr(tdist, "get_world_size", lambda: 2)
    monkeypatch.setattr(tdist, "monitored_barrier", lambda timeout: calls.append(("barrier", timeout.total_seconds())))
    monkeypatch.setattr(tdist, "destroy_process_group", lambda: calls.append(("destroy",)))
    D.cleanup()
    assert calls == [("barrier", 30.0), ("destroy",)]


def test_cleanup_still_leaves_the_group_when_a_peer_is_gone(monkeypatch):
    import torch.distributed as tdist

    def dead_peer(timeout):
        raise RuntimeError("Connection closed by peer")

    left = []
    monkeypatch.setattr(tdist, "is_initialized", lambda: True)
    monkeypatch.setattr(tdist, "get_backend", lambda: "gloo")
    monkeypatch.setattr(tdist, "get_world_size", lambda: 2)
    monkeypatch.setattr(tdist, "monitored_barrier", dead_peer)
    monkeypatch.setattr(tdist, "destroy_process_group", lambda: left.append(True))
    D.cleanup()
    assert left == [True]
