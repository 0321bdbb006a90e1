"""Rank-0-only writes, batch and evaluation sharding, gathers, broadcasts and log reduction (METHOD §0: global batch)."""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
import torch.distributed as dist

from cstp_cli.core.dist.context import (
    is_main_process,
    rank_and_world,
)
from cstp_cli.core.dist.failures import (
    F,
    _collective,
)
from cstp_cli.errors import UsageError

# --------------------------------------------------------------------------- rank 0 only


def rank_zero_only(fn: F) -> F:
    """Decorator: run ``fn`` on rank 0 only; other ranks get None (no collective involved)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if is_main_process():
            return fn(*args, **kwargs)
        return None

    return wrapper  # type: ignore[return-value]


@rank_zero_only
def save_on_main(obj: Any, path: str | os.PathLike) -> Path:
    """Rank 0: :func:`cstp_cli.core.checkpoint.atomic_save` ``obj`` to ``path``; other ranks write nothing (None)."""
    from cstp_cli.core.checkpoint import atomic_save

    return atomic_save(obj, path)


# --------------------------------------------------------------------------- data sharding


def local_batch_size(global_batch: int, world_size: int) -> int:
    """B = G / W, the samples each rank takes per step; a usage error when W does not divide G."""
    if world_size < 1:
        raise ValueError(f"world size must be at least 1, got {world_size}")
    if global_batch < 1 or global_batch % world_size:
        raise UsageError(
            f"--batch-size {global_batch} is global and must be a positive multiple of the world size {world_size} "
            "(torchrun --nnodes × --nproc-per-node); "
            f"use e.g. --batch-size {max(1, global_batch // world_size) * world_size}"
        )
    return global_batch // world_size


def shard_of_batch(global_indices: Sequence[int], rank: int, world: int) -> list[int]:
    """This rank's B = G/W samples of one global batch (METHOD §0: ``--batch-size`` is global).

    Rank r takes the contiguous block ``global_indices[r·B:(r+1)·B]``: the ranks' shards are
    disjoint, together they are the global batch, and concatenating them in rank order (as
    every gather does) restores its order. Raises :class:`UsageError` when W does not divide G.
    """
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} is not in a world of {world}")
    b = local_batch_size(len(global_indices), world)
    return [int(i) for i in global_indices[rank * b : (rank + 1) * b]]


def shard_range(n: int, rank: int | None = None, world: int | None = None) -> range:
    """This rank's contiguous share of ``n`` work items (evaluation; sizes differ by at most one).

    ``range(n·r//W, n·(r+1)//W)``; the default rank and world are the running ones. Gathering
    the per-item results in rank order (:func:`gather_tensors`, :func:`gather_shards`)
    restores the original order.
    """
    if rank is None or world is None:
        rank, world = rank_and_world()
    return range(n * rank // world, n * (rank + 1) // world)


def _comm_device() -> torch.device:
    """Where collective buffers live: the current GPU for NCCL, the CPU otherwise."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


@_collective("gathering results from every rank")
def gather_tensors(x: torch.Tensor) -> torch.Tensor:
    """Every rank's ``x [n_r, ...]`` concatenated in rank order → ``[Σ n_r, ...]`` on every rank.

    Shards may differ in length (also 0 rows) but must agree in trailing shape and dtype. No
    gradients; the result is on ``x``'s device. Identity without a process group.
    """
    _, world = rank_and_world()
    if world == 1:
        return x
    home = x.device
    dev = _comm_device()
    x = x.detach().to(dev).contiguous()
    flag = x.dtype == torch.bool
    if flag:
        x = x.to(torch.uint8)
    mine = torch.tensor([x.shape[0]], dtype=torch.int64, device=dev)
    sizes_t = [torch.zeros_like(mine) for _ in range(world)]
    dist.all_gather(sizes_t, mine)
    sizes = [int(s.item()) for s in sizes_t]
    biggest = max(sizes)
    if x.shape[0] < biggest:
        x = torch.cat([x, x.new_zeros((biggest - x.shape[0],) + tuple(x.shape[1:]))])
    parts = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(parts, x)
    out = torch.cat([p[:n] for p, n in zip(parts, sizes)])
    return (out.bool() if flag else out).to(home)


@_collective("gathering results from every rank")
def gather_objects(obj: Any) -> list[Any]:
    """Every rank's picklable ``obj``, as a list in rank order (``[obj]`` in one process)."""
    _, world = rank_and_world()
    if world == 1:
        return [obj]
    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return out


def gather_shards(items: Sequence[Any]) -> list[Any]:
    """Concatenate every rank's list of results in rank order (pairs with :func:`shard_range`)."""
    return [item for part in gather_objects(list(items)) for item in part]


def sharded_map(items: Sequence[Any], fn: Callable[[Any], Any]) -> Any:
    """``fn(items)`` computed as ``fn`` of each rank's shard, gathered in the original order.

    ``items`` (e.g. ``int64[V]`` video indices, an array or a list) is split with
    :func:`shard_range`; ``fn`` maps a shard of n items to an array or tensor with n rows
    (features ``float32[n, F]``, logits ``[n, K, C]``). A rank with an empty shard does not
    call ``fn``. Every rank returns the full result (the type of ``fn``'s output); one process
    just returns ``fn(items)``. Per-item work must not depend on the other items of the batch
    (eval mode), so the numbers equal the single-process ones.
    """
    rank, world = rank_and_world()
    if world == 1:
        return fn(items)
    span = shard_range(len(items), rank, world)
    local = fn(items[span.start : span.stop]) if len(span) else None
    if isinstance(local, torch.Tensor):
        local = local.detach().cpu()
    parts = [p for p in gather_objects(local) if p is not None]
    if not parts:
        return fn(items)
    if isinstance(parts[0], torch.Tensor):
        return torch.cat(parts)
    import numpy as np

    return np.concatenate([np.asarray(p) for p in parts])


class ShardedBatchSampler(torch.utils.data.Sampler):
    """A DataLoader ``batch_sampler``: this rank's share of every global batch of an epoch order.

    ``order`` lists the dataset indices of the epoch in the global order; global batch k is
    ``order[k·G:(k+1)·G]`` and rank r gets :func:`shard_of_batch` of it (G/W samples). An
    incomplete last batch is dropped when ``drop_last`` or when it has fewer samples than
    ranks (every rank must run the same number of steps, or DDP hangs); otherwise it is split
    with :func:`shard_range` (local sizes may then differ by one).
    """

    def __init__(
        self,
        order: Sequence[int],
        global_batch: int,
        rank: int = 0,
        world: int = 1,
        drop_last: bool = True,
    ):
        local_batch_size(global_batch, world)
        self.order = [int(i) for i in order]
        self.global_batch, self.rank, self.world = (
            int(global_batch),
            int(rank),
            int(world),
        )
        self.drop_last = bool(drop_last)

    def __iter__(self) -> Iterator[list[int]]:
        g = self.global_batch
        full = len(self.order) // g
        for k in range(full):
            yield shard_of_batch(self.order[k * g : (k + 1) * g], self.rank, self.world)
        rest = self.order[full * g :]
        if self._keeps_rest():
            span = shard_range(len(rest), self.rank, self.world)
            yield rest[span.start : span.stop]

    def _keeps_rest(self) -> bool:
        rest = len(self.order) % self.global_batch
        return not self.drop_last and rest >= max(1, self.world)

    def __len__(self) -> int:
        return len(self.order) // self.global_batch + int(self._keeps_rest())


@_collective("receiving a value from rank 0")
def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s picklable ``obj`` on every rank (e.g. a run folder named after the time)."""
    _, world = rank_and_world()
    if world == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


@_collective("waiting for every rank")
def barrier() -> None:
    """Wait for every rank (no-op in one process)."""
    _, world = rank_and_world()
    if world == 1:
        return
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first, the others after it (e.g. building a cache or the synthetic set).

    The other ranks then find the finished files instead of racing to write them. If rank 0
    fails inside the block, the others stop in the barrier (torchrun ends them, or the
    collective timeout does).
    """
    main = is_main_process()
    if not main:
        barrier()
    yield
    if main:
        barrier()


@_collective("agreeing with the other ranks on whether to stop")
def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is true on any rank (e.g. a SIGINT seen by one rank).

    The loop must stop at the same step on every rank or the others hang in the next step's
    collectives; one tiny all-reduce per step settles it.
    """
    _, world = rank_and_world()
    if world == 1:
        return bool(flag)
    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=_comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


@_collective("averaging the logged values over ranks")
def reduce_logs(logs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Average logged scalars over ranks (one all-reduce); every rank must log the same keys.

    With equal local batches the mean of the ranks' losses is the global-batch loss, so the
    metrics, the progress bar and the NaN check see the same numbers on every rank.
    """
    _, world = rank_and_world()
    if world == 1 or not logs:
        return dict(logs)
    keys = sorted(logs)
    home = logs[keys[0]].device
    values = torch.stack(
        [logs[k].detach().float().reshape(()).to(_comm_device()) for k in keys]
    )
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    values = (values / world).to(home)
    return {k: values[i] for i, k in enumerate(keys)}
