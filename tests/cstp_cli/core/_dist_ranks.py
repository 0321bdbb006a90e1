"""Rank programs of the 2-process gloo tests of cstp_cli.core.dist (not collected).

The test modules load this file by path, build the single-process references in the pytest
process, then :func:`launch` forks the ranks (fork: torch is not imported again). Each rank
gets torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR=127.0.0.1, a free
MASTER_PORT), calls ``init_distributed("cpu")`` and writes ``rank{r}.pt`` into the folder.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import time
import traceback
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from cstp_cli.core import dist as D
from cstp_cli.errors import DistributedError

WORLD = 2
FEATURES = 16
SCHEMES = ("simclr", "moco", "byol", "simsiam")
OPTIONS = {
    "simclr": {"proj_hidden": 16, "proj_dim": 8},
    "moco": {"proj_hidden": 16, "proj_dim": 8, "queue_size": 12, "momentum": 0.9},
    "byol": {"proj_hidden": 16, "proj_dim": 8, "pred_hidden": 16, "base_momentum": 0.9},
    "simsiam": {"proj_hidden": 16, "proj_dim": 8, "pred_hidden": 8},
}
GLOBAL_BATCH = 4  # 2 ranks × B = 2
STEPS = 2


# --------------------------------------------------------------------------- models


def build_encoder() -> nn.Module:
    """Tiny 3D CNN: clips float[B, 3, 2, 8, 8] → float[B, 16], with a BatchNorm3d."""
    return nn.Sequential(
        nn.Conv3d(3, 4, 3, padding=1), nn.BatchNorm3d(4), nn.ReLU(),
        nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(4, FEATURES),
    )


def build_model(name: str) -> D.TrainModule:
    """Encoder + engine Objective (scheme ``name`` at λ=1 and the rot pretext head)."""
    from cstp_cli.engine.objective import Objective, TaskEntry
    from cstp_cli.plugins import get_registry

    registry = get_registry()
    encoder = build_encoder()
    scheme = registry.scheme(name).build(FEATURES, **OPTIONS[name])
    scheme.attach(encoder)
    rot = registry.pretext("rot").build()
    objective = Objective(scheme, name, 1.0, [TaskEntry("rot", rot, 1.0, False)], FEATURES)
    return D.TrainModule(encoder, objective)


def initial_states(seed: int = 0) -> dict[str, dict]:
    """One initial state_dict per scheme (the same weights for every rank and the reference)."""
    torch.manual_seed(seed)
    return {name: build_model(name).state_dict() for name in SCHEMES}


def make_data(seed: int = 1) -> dict[str, torch.Tensor]:
    """A pool of 8 samples (clip pairs and rot labels) and the epoch's global order of them."""
    g = torch.Generator().manual_seed(seed)
    n = GLOBAL_BATCH * STEPS
    return {
        "x1": torch.randn(n, 3, 2, 8, 8, generator=g),
        "x2": torch.randn(n, 3, 2, 8, 8, generator=g),
        "rot": torch.randint(0, 4, (n, 2), generator=g),
        "order": torch.randperm(n, generator=g),
    }


def bn_eval(module: nn.Module) -> None:
    """Train mode everywhere except BatchNorm (eval), so equality tests the distributed logic."""
    module.train()
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def grads(module: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in module.named_parameters() if p.requires_grad}


def train_steps(name: str, state: dict, data: dict, ctx: D.DistContext) -> dict:
    """``STEPS`` SGD steps of scheme ``name`` on this rank's share of each global batch.

    Returns per step the reduced loss and logs, the gradients after DDP's averaging (step
    1), the MoCo queue and pointer, the sample indices taken; and the state at the end.
    """
    model = build_model(name)
    model.load_state_dict(state)
    bn_eval(model)
    ddp = D.wrap_for_ddp(model, ctx)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.5, momentum=0.9)
    out: dict = {"loss": [], "logs": [], "taken": [], "queue": [], "queue_ptr": []}
    for step in range(STEPS):
        global_batch = data["order"][step * GLOBAL_BATCH : (step + 1) * GLOBAL_BATCH].tolist()
        mine = D.shard_of_batch(global_batch, ctx.rank, ctx.world_size)
        labels = {"rot.clips": data["rot"][mine]}
        loss, logs = ddp(data["x1"][mine], data["x2"][mine], labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        logs = D.reduce_logs(logs)
        if step == 0:
            out["grads"] = grads(model)
        opt.step()
        model.objective.scheme.after_step(model.encoder, step, STEPS)
        out["loss"].append(logs["loss"].clone())
        out["logs"].append({k: v.clone() for k, v in logs.items()})
        out["taken"].append(mine)
        if name == "moco":
            out["queue"].append(model.objective.scheme.queue.clone())
            out["queue_ptr"].append(int(model.objective.scheme.queue_ptr))
    out["state"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return out


# --------------------------------------------------------------------------- linear probe


def probe_step(state: dict, data: dict, ctx: D.DistContext) -> dict:
    """One step of a linear probe (frozen encoder under no_grad + Linear head) through CallModule."""
    encoder, head = build_encoder(), nn.Linear(FEATURES, 4)
    nn.ModuleDict({"backbone": encoder, "head": head}).load_state_dict(state)
    for p in encoder.parameters():
        p.requires_grad_(False)
    encoder.eval()

    def classify(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            y = encoder(x)
        return head(y)

    net = D.wrap_for_ddp(D.CallModule(nn.ModuleDict({"backbone": encoder, "head": head}), classify), ctx)
    mine = D.shard_of_batch(data["order"][:GLOBAL_BATCH].tolist(), ctx.rank, ctx.world_size)
    loss = nn.functional.cross_entropy(net(data["x1"][mine]), data["rot"][mine, 0])
    loss.backward()
    return {"loss": D.reduce_logs({"loss": loss})["loss"], "grads": grads(head)}


# --------------------------------------------------------------------------- shuffle-BN


def shuffle_bn_keys(state: dict, x: torch.Tensor, rows: list[int]) -> dict:
    """MoCo keys of ``x[rows]`` with the key encoder's BatchNorm in TRAIN mode (shuffle-BN on).

    Records the clips the key encoder actually received (its BN batch) and the keys returned.
    """
    model = build_model("moco")
    model.load_state_dict(state)
    scheme = model.objective.scheme
    scheme.train()
    seen: list[torch.Tensor] = []
    handle = scheme.key_encoder.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    try:
        keys = scheme.keys(x[rows], 0)
    finally:
        handle.remove()
    return {"local": x[rows].clone(), "bn_batch": seen[0], "keys": keys}


# --------------------------------------------------------------------------- programs


def ddp_program(rank: int, folder: Path) -> dict:
    """Everything the multi-process tests check, in one process group (results of rank ``rank``)."""
    ctx = D.init_distributed("cpu")
    inputs = torch.load(folder / "inputs.pt")
    out: dict = {"ctx": (ctx.rank, ctx.world_size, ctx.local_rank, str(ctx.device), ctx.backend, ctx.timeout_s)}
    out["ctx_again"] = D.init_distributed("cpu") == ctx
    with D.distributed("cpu") as inner:  # a group that already exists is left alone
        out["inner_world"] = inner.world_size
    out["still_initialised"] = torch.distributed.is_initialized()
    out["schemes"] = {name: train_steps(name, inputs["states"][name], inputs["data"], ctx) for name in SCHEMES}
    out["probe"] = probe_step(inputs["probe"], inputs["data"], ctx)
    shuffle_rows = D.shard_of_batch(list(range(8)), ctx.rank, ctx.world_size)
    out["shuffle"] = shuffle_bn_keys(inputs["states"]["moco"], inputs["shuffle_x"], shuffle_rows)
    work = D.shard_range(5)
    out["shard"] = list(work)
    out["gathered"] = D.gather_tensors(torch.arange(5.0)[list(work)].reshape(-1, 1) * 10)
    out["gathered_empty_ok"] = D.gather_tensors(torch.ones(rank, 2))  # rank 0 has no rows
    out["objects"] = D.gather_objects({"rank": rank})
    out["shards"] = D.gather_shards([f"video{i}" for i in work])
    calls: list[list[int]] = []

    def squares(v):
        calls.append([int(i) for i in v])
        return np.stack([v, v * v], axis=1).astype(np.float32)

    def plus_one(v):
        calls.append([int(i) for i in v])
        return torch.as_tensor(v)[:, None] + 1.0

    out["mapped"] = D.sharded_map(np.arange(5), squares)
    out["mapped_one"] = D.sharded_map(np.arange(1), plus_one)  # rank 0's shard is empty
    out["mapped_calls"] = calls
    out["broadcast"] = D.broadcast_object(f"runs/pretrain-from-rank{rank}")
    out["any_rank"] = (D.any_rank(rank == 1), D.any_rank(False))
    out["zero_only"] = D.rank_zero_only(lambda: f"ran on {rank}")()
    D.barrier()
    return out


def death_program(rank: int, folder: Path) -> dict:
    """Rank 0 writes a checkpoint, then rank 1 dies (or hangs) before a DDP step's collectives."""
    ctx = D.init_distributed("cpu")
    inputs = torch.load(folder / "inputs.pt")
    ckpt = folder / "checkpoint.pt"
    if rank == 0:
        D.save_on_main({"step": 1, "weights": inputs["weights"]}, ckpt)
    D.barrier()
    if rank == 1:  # must write nothing: only rank 0 writes
        D.save_on_main({"step": 1, "weights": torch.zeros_like(inputs["weights"])}, ckpt)
    D.barrier()
    model = build_model("simclr")
    model.load_state_dict(inputs["state"])
    bn_eval(model)
    ddp = D.wrap_for_ddp(model, ctx)
    if rank == 1:
        mode = os.environ["CSTP_TEST_FAILURE"]
        if mode == "hang":
            time.sleep(float(os.environ[D.TIMEOUT_ENV]) + 1.5)
        os._exit(3)
    start = time.perf_counter()
    data = inputs["data"]
    try:
        with D.guard("training step 2", checkpoint=ckpt):
            loss, _ = ddp(data["x1"][:2], data["x2"][:2], {"rot.clips": data["rot"][:2]})
            loss.backward()
        error = None
    except DistributedError as exc:
        error = str(exc)
    seconds = time.perf_counter() - start
    try:
        D.any_rank(False)  # a helper's collective outside any guard
        helper_error = None
    except DistributedError as exc:
        helper_error = str(exc)
    return {"error": error, "seconds": seconds, "helper_error": helper_error}


# --------------------------------------------------------------------------- launcher


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rank_main(program: Callable[[int, Path], dict], rank: int, folder: Path, env: dict[str, str]) -> None:
    torch.set_num_threads(1)
    os.environ.update(env)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank))
    code = 0
    try:
        torch.save(program(rank, folder), folder / f"rank{rank}.pt")
    except BaseException:  # noqa: BLE001 - report and exit non-zero
        traceback.print_exc()
        code = 1
    finally:
        D.cleanup()
    os._exit(code)


def launch(
    program: Callable[[int, Path], dict], folder: Path, extra_env: dict[str, str] | None = None, timeout: float = 60
) -> list[int | None]:
    """Fork ``WORLD`` ranks running ``program`` with torchrun's environment; their exit codes."""
    env = {"WORLD_SIZE": str(WORLD), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()),
           D.TIMEOUT_ENV: "20", **(extra_env or {})}
    context = multiprocessing.get_context("fork")
    procs = [context.Process(target=_rank_main, args=(program, r, folder, env)) for r in range(WORLD)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + timeout
    for p in procs:
        p.join(timeout=max(0.1, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join()
    return [p.exitcode for p in procs]
