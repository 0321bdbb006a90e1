"""Multi-GPU / multi-node runs on ``torch.distributed`` launched by ``torchrun`` (DESIGN "Engine").

What this module gives the engine and the evaluation commands:

* :func:`init_distributed` reads torchrun's environment (``RANK``, ``WORLD_SIZE``,
  ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) and joins the process group: NCCL on CUDA
  (rank r uses ``cuda:LOCAL_RANK``), gloo on CPU. Without torchrun (no ``WORLD_SIZE`` or
  ``WORLD_SIZE=1``) it returns a one-process :class:`DistContext` and initialises nothing, so
  every helper here is then the identity (or its one-process equivalent).
* Data: ``--batch-size`` is global (METHOD §0). :func:`shard_of_batch` gives rank r the
  contiguous block ``[r·G/W, (r+1)·G/W)`` of every global batch of G samples, so gathers in
  rank order (SimCLR negatives, MoCo keys) see the global batch in its single-process order.
  :class:`ShardedBatchSampler` does the same for a DataLoader (fine-tuning). Evaluation:
  :func:`sharded_map` computes each rank's contiguous shard (:func:`shard_range`) and gathers
  the results back in the original order (:func:`gather_tensors`, :func:`gather_objects`).
  :func:`main_first` lets rank 0 build caches before the others read them;
  :func:`broadcast_object` makes values such as a timestamped run folder agree.
* Model: :class:`TrainModule` holds encoder + objective (scheme with its projector,
  predictor, targets and queue; pretext heads) and runs the whole objective in ``forward``;
  :func:`wrap_for_ddp` wraps it in ``DistributedDataParallel`` so DDP's gradient averaging
  covers every trainable parameter. Target networks (every submodule whose parameters all
  have ``requires_grad=False``) are excluded from DDP's parameter and buffer
  synchronisation: they are not wrapped, only broadcast from rank 0 once at wrap time.
  ``--sync-bn`` converts BatchNorm to torch's SyncBatchNorm (CUDA only). :class:`CallModule`
  adapts models that are not one ``nn.Module`` (the fine-tuning classifier).
  :func:`reduce_logs` averages logged scalars over ranks; :func:`any_rank` makes every rank
  stop at the same step (SIGINT seen by one rank).
* Failures: collectives time out after ``CSTP_DIST_TIMEOUT`` seconds (default 1800); a rank
  that dies or hangs makes the others raise :class:`DistributedError` (one line) inside
  :func:`guard`. Only rank 0 writes (:func:`rank_zero_only`, :func:`save_on_main`), through
  :func:`cstp_cli.core.checkpoint.atomic_save` (temporary file + rename), so a crash never leaves
  a partial checkpoint.

Tested on CPU with gloo (tests/cstp_cli/engine/test_distributed_*.py); NCCL and
SyncBatchNorm need GPUs and are documented in docs/distributed.md, not tested here.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence, TypeVar

import torch
import torch.distributed as dist
import torch.nn as nn

from cstp_cli.errors import DistributedError, UsageError

#: Seconds a collective waits for the other ranks before failing (``init_process_group`` timeout).
TIMEOUT_ENV = "CSTP_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 1800.0
#: Optional backend override (``gloo`` on GPUs for debugging); default: nccl on CUDA, gloo on CPU.
BACKEND_ENV = "CSTP_DIST_BACKEND"

#: Substrings of the messages torch's backends raise when a peer died, hung or vanished.
_FAILURE_MARKS = (
    "connection closed by peer",
    "connection reset",
    "connection refused",
    "broken pipe",
    "timed out",
    "timeout",
    "watchdog",
    "nccl error",
    "ncclremoteerror",
    "ncclsystemerror",
)

F = TypeVar("F", bound=Callable[..., Any])


# --------------------------------------------------------------------------- context


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in the run.

    ``backend`` is ``"nccl"``, ``"gloo"`` or None (one process, no process group);
    ``device`` is the device this rank computes on (``cuda:LOCAL_RANK`` on GPUs).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def is_main(self) -> bool:
        """True on rank 0, the only rank that writes checkpoints, metrics and progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when more than one process takes part."""
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"environment variable {name}={value!r} is not an integer; launch with torchrun") from None


def timeout_seconds() -> float:
    """``CSTP_DIST_TIMEOUT`` in seconds (default 1800); a usage error if it is not a positive number."""
    text = os.environ.get(TIMEOUT_ENV, "")
    if not text:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise UsageError(f"{TIMEOUT_ENV}={text!r}: give the collective timeout as a positive number of seconds")
    return value


#: What ``--device`` accepts (``cuda:N`` picks one GPU; ``mps`` only where PyTorch has it).
DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"


def _parse_device(name: str) -> torch.device:
    """``--device`` text → a ``torch.device`` of a type cstp can run on; a usage error otherwise."""
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        device = None
    mps = device is not None and device.type == "mps" and torch.backends.mps.is_available()
    if device is None or not (device.type in ("cpu", "cuda") or mps):
        raise UsageError(f"--device {name}: not a device this machine runs cstp on; use {DEVICE_CHOICES}")
    return device


def resolve_device(name: str | None = "auto", local_rank: int = 0, world_size: int = 1) -> torch.device:
    """``auto``/``cpu``/``cuda``/``cuda:N`` → this process's device (``cuda:LOCAL_RANK`` under torchrun).

    The one place a ``--device`` value is checked: an unknown or unavailable device is a
    :class:`UsageError` (exit 2) that says what to pass instead.
    """
    name = (name or "auto").strip()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = _parse_device(name)
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type != "cuda":
        if world_size > 1:
            raise UsageError(f"--device {name}: multi-process runs support cpu (gloo) and cuda (NCCL) only")
        return device
    if not torch.cuda.is_available():
        raise UsageError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    if device.index is not None and world_size > 1:
        raise UsageError(
            f"--device {name}: under torchrun each rank uses cuda:LOCAL_RANK; pass --device cuda "
            "and pick GPUs with CUDA_VISIBLE_DEVICES"
        )
    if device.index is not None:
        index = device.index
    else:
        index = local_rank if world_size > 1 else torch.cuda.current_device()
    if index >= torch.cuda.device_count():
        raise UsageError(
            f"rank with LOCAL_RANK={local_rank} needs cuda:{index} but {torch.cuda.device_count()} GPU(s) are visible; "
            "lower torchrun --nproc-per-node to the number of GPUs per node"
        )
    return torch.device("cuda", index)


def _context_of_group(device: str) -> DistContext:
    """The context of an already initialised process group (idempotent :func:`init_distributed`)."""
    world = dist.get_world_size()
    local_rank = _env_int("LOCAL_RANK", dist.get_rank())
    return DistContext(
        rank=dist.get_rank(),
        world_size=world,
        local_rank=local_rank,
        device=resolve_device(device, local_rank, world),
        backend=str(dist.get_backend()),
        timeout_s=timeout_seconds(),
    )


def init_distributed(device: str = "auto") -> DistContext:
    """Join torchrun's process group (or describe the single process) and pick the device.

    Reads ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` (set by
    ``torchrun``). ``WORLD_SIZE`` unset or 1: no process group, ``DistContext(rank=0,
    world_size=1, backend=None)``. Otherwise ``init_process_group`` with NCCL on CUDA (this
    rank on ``cuda:LOCAL_RANK``) or gloo on CPU, ``env://`` rendezvous and a timeout of
    ``CSTP_DIST_TIMEOUT`` seconds. Calling it again returns the same context.

    Raises :class:`UsageError` for a bad environment or device, :class:`DistributedError` when
    the rendezvous fails.
    """
    if dist.is_available() and dist.is_initialized():
        return _context_of_group(device)
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", rank)
    timeout = timeout_seconds()
    if world < 1 or not 0 <= rank < world:
        raise UsageError(f"RANK={rank} WORLD_SIZE={world} is not a valid rank of the run; launch with torchrun")
    dev = resolve_device(device, local_rank, world)
    if world == 1:
        return DistContext(0, 1, local_rank if dev.type == "cuda" else 0, dev, None, timeout)
    missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(k)]
    if missing:
        raise UsageError(
            f"WORLD_SIZE={world} but {' and '.join(missing)} not set; launch with "
            "`torchrun --nproc-per-node=G -m cstp_cli ...` (it sets them)"
        )
    backend = os.environ.get(BACKEND_ENV) or ("nccl" if dev.type == "cuda" else "gloo")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
        # A collective that outlives the timeout tears the process down instead of hanging,
        # so torchrun notices and stops the other ranks.
        os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
    try:
        dist.init_process_group(
            backend, init_method="env://", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=timeout)
        )
    except (RuntimeError, ValueError) as exc:
        raise DistributedError(
            f"rank {rank}/{world}: cannot join the process group at "
            f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']} ({_first_line(exc)}); check the rendezvous "
            "endpoint, the firewall and that every node started"
        ) from exc
    atexit.register(cleanup)  # commands need not call cleanup() themselves
    return DistContext(rank, world, local_rank, dev, backend, timeout)


def rank_and_world() -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` without a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    """True on rank 0 (and in a single process)."""
    return rank_and_world()[0] == 0


def cleanup() -> None:
    """Leave the process group (best effort: after a failed peer the backend may refuse)."""
    if dist.is_available() and dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001 - a dead peer must not mask the real error
            pass


@contextlib.contextmanager
def distributed(device: str = "auto") -> Iterator[DistContext]:
    """``with distributed(cfg["device"]) as ctx:`` — :func:`init_distributed`, then :func:`cleanup`.

    A process group that existed before the block (initialised by the caller) is left alone.
    """
    owner = not (dist.is_available() and dist.is_initialized())
    ctx = init_distributed(device)
    try:
        yield ctx
    finally:
        if owner:
            cleanup()


# --------------------------------------------------------------------------- failures


def _first_line(exc: BaseException) -> str:
    """The backend's reason in short: first line, no ``[source.cc:123]`` prefix, first sentence."""
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    line = re.sub(r"^\[[^\]]*\]\s*", "", line).split(". ")[0].rstrip(".")
    return line if len(line) <= 200 else line[:197] + "..."


def is_collective_failure(exc: BaseException) -> bool:
    """True for the errors torch raises when a peer died, hung or the network failed."""
    if isinstance(exc, dist.DistError):
        return True
    if not isinstance(exc, RuntimeError):
        return False
    text = str(exc).lower()
    return any(mark in text for mark in _FAILURE_MARKS)


def _failure_message(what: str, exc: BaseException, checkpoint: str | os.PathLike | None) -> str:
    rank, world = rank_and_world()
    if checkpoint is None:
        kept = "checkpoints are written by rank 0 only, atomically: the last one is whole; continue with --resume"
    elif Path(checkpoint).is_file():
        kept = f"the last checkpoint {checkpoint} is intact; continue with --resume {checkpoint}"
    else:
        kept = "no checkpoint was written by this run yet"
    return (
        f"rank {rank}/{world}: {what} failed because another rank died or hung "
        f"(collectives wait at most {TIMEOUT_ENV}={timeout_seconds():g}s; {_first_line(exc)}); "
        f"see the other ranks' output for the cause; {kept}"
    )


@contextlib.contextmanager
def guard(what: str, checkpoint: str | os.PathLike | None = None) -> Iterator[None]:
    """Turn a failed collective inside the block into one :class:`DistributedError` line.

    ``what`` names the work (``"training step 12"``); ``checkpoint`` is the last one written,
    reported as intact (rank 0 wrote it atomically, so it is whole). A
    :class:`DistributedError` raised by a helper inside the block is re-worded with ``what``
    and ``checkpoint``. Other errors pass through unchanged. A no-op without a process group.
    """
    if rank_and_world()[1] == 1:
        yield
        return
    try:
        yield
    except DistributedError as exc:
        cause = exc.__cause__ or exc
        raise DistributedError(_failure_message(what, cause, checkpoint)) from cause
    except Exception as exc:
        if not is_collective_failure(exc):
            raise
        raise DistributedError(_failure_message(what, exc, checkpoint)) from exc


def _collective(what: str) -> Callable[[F], F]:
    """Decorator: the helper's collectives fail with one :class:`DistributedError` line."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with guard(what):
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


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

    def __init__(self, order: Sequence[int], global_batch: int, rank: int = 0, world: int = 1, drop_last: bool = True):
        local_batch_size(global_batch, world)
        self.order = [int(i) for i in order]
        self.global_batch, self.rank, self.world = int(global_batch), int(rank), int(world)
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
    values = torch.stack([logs[k].detach().float().reshape(()).to(_comm_device()) for k in keys])
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    values = (values / world).to(home)
    return {k: values[i] for i, k in enumerate(keys)}


# --------------------------------------------------------------------------- model


def unwrap(module: nn.Module) -> nn.Module:
    """The plain module inside DDP / DataParallel / ``torch.compile`` wrappers."""
    while True:
        if isinstance(module, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            module = module.module
        elif isinstance(getattr(module, "_orig_mod", None), nn.Module):
            module = module._orig_mod
        else:
            return module


class TrainModule(nn.Module):
    """Encoder + objective as one module whose ``forward`` is the whole pretraining objective.

    ``forward(x1, x2, labels)``: clips ``x1, x2 float[B, 3, T, S, S]`` → one online pass per
    clip (BN statistics per view, METHOD §1) ``y = encode(x) float[B, D]`` →
    ``objective(y1, y2, x1, x2, labels)`` → ``(loss float32 scalar, logs)``. Wrapping this
    module in DDP makes its gradient averaging cover the encoder, the scheme's trainable
    parts and the pretext heads. ``encode`` is an optional replacement of ``encoder`` for the
    online pass (e.g. ``torch.compile(encoder)``); it is not registered as a submodule.
    When the objective's ``wants_feature_maps`` is true (a task reads conv maps, API
    ``PretextTask.uses_feature_maps``), the pass is ``m = encoder.features(x)``, ``y`` its
    global average, and ``maps=(m1, m2)`` goes to the objective (``encode`` is not used).
    """

    def __init__(
        self, encoder: nn.Module, objective: nn.Module, encode: Callable[[torch.Tensor], torch.Tensor] | None = None
    ):
        super().__init__()
        self.encoder = encoder
        self.objective = objective
        self.__dict__["_encode"] = encode

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, labels: Mapping[str, torch.Tensor]) -> Any:
        encode = self.__dict__["_encode"]
        if encode is None:  # never `or`: a compiled module has no truth value (len() raises)
            encode = self.encoder
        if getattr(self.objective, "wants_feature_maps", False):
            m1, m2 = self.encoder.features(x1), self.encoder.features(x2)
            y1, y2 = (torch.flatten(nn.functional.adaptive_avg_pool3d(m, 1), 1) for m in (m1, m2))
            return self.objective(y1, y2, x1, x2, labels, maps=(m1, m2))
        y1 = encode(x1)
        y2 = encode(x2)
        return self.objective(y1, y2, x1, x2, labels)


class CallModule(nn.Module):
    """An ``nn.Module`` whose ``forward`` is ``fn``, computed with the registered ``modules``.

    For models that are not one ``nn.Module`` (e.g. the fine-tuning ``Classifier``: backbone +
    head behind a plain ``__call__``): ``wrap_for_ddp(CallModule(model.modules, model), ctx)``
    lets DDP see the parameters and hook their gradients while ``fn`` does the computation.
    ``fn`` is not registered as a submodule.
    """

    def __init__(self, modules: nn.Module, fn: Callable[..., Any]):
        super().__init__()
        self.inner = modules
        self.__dict__["_fn"] = fn

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.__dict__["_fn"](*args, **kwargs)


def frozen_submodules(module: nn.Module) -> list[str]:
    """Qualified names of the outermost submodules whose parameters all have ``requires_grad=False``.

    These are the target / key networks of BYOL and MoCo (``make_target`` copies).
    """
    out: list[str] = []
    for name, sub in module.named_modules():
        if not name or any(name == f or name.startswith(f + ".") for f in out):
            continue
        params = list(sub.parameters())
        if params and not any(p.requires_grad for p in params):
            out.append(name)
    return out


def ddp_ignored_names(module: nn.Module) -> list[str]:
    """Parameter and buffer names DDP must leave alone: frozen parameters, all of a target network."""
    names = {n for n, p in module.named_parameters() if not p.requires_grad}
    for prefix in frozen_submodules(module):
        sub = module.get_submodule(prefix)
        names.update(f"{prefix}.{n}" for n, _ in sub.named_parameters())
        names.update(f"{prefix}.{n}" for n, _ in sub.named_buffers())
    return sorted(names)


@torch.no_grad()
@_collective("copying rank 0's weights to every rank")
def broadcast_state(module: nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers (targets and queues included) to every rank."""
    _, world = rank_and_world()
    if world == 1:
        return
    dev = _comm_device()
    for tensor in list(module.parameters()) + list(module.buffers()):
        if tensor.device == dev:
            dist.broadcast(tensor.data, src=src)
        else:
            buf = tensor.data.to(dev)
            dist.broadcast(buf, src=src)
            tensor.data.copy_(buf)


def wrap_for_ddp(module: nn.Module, ctx: DistContext, sync_bn: bool = False, find_unused: bool = False) -> nn.Module:
    """``module`` (a :class:`TrainModule`) ready for training on ``ctx``'s world.

    * ``sync_bn``: convert every BatchNorm to ``nn.SyncBatchNorm`` (in place in the children,
      same Parameter objects, so optimisers built before stay valid); CUDA only — a
      :class:`UsageError` on CPU.
    * One process: ``module`` itself (no wrapper; identical maths).
    * Several: rank 0's whole state (targets, queues included) is broadcast once, target
      networks and frozen parameters are excluded from DDP, and the rest is wrapped in
      ``DistributedDataParallel`` (``find_unused_parameters=find_unused``: set it when some
      trainable parameter may get no gradient in a step).
    """
    if sync_bn and ctx.device.type != "cuda":
        raise UsageError(
            f"--sync-bn: torch's SyncBatchNorm needs CUDA devices, this run is on {ctx.device.type}; "
            "drop --sync-bn (MoCo keeps shuffle-BN) or run on GPUs"
        )
    if not ctx.distributed:
        return module
    if sync_bn:
        converted = nn.SyncBatchNorm.convert_sync_batchnorm(module)
        if converted is not module:  # pragma: no cover - only when module itself is a BatchNorm
            raise UsageError("--sync-bn: wrap a module that contains the BatchNorm layers, not a BatchNorm")
    broadcast_state(module)
    nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(module, ddp_ignored_names(module))
    devices = {"device_ids": [ctx.device.index], "output_device": ctx.device.index} if ctx.device.type == "cuda" else {}
    with guard("setting up DistributedDataParallel"):
        return nn.parallel.DistributedDataParallel(module, find_unused_parameters=find_unused, **devices)


__all__ = [
    "DEFAULT_TIMEOUT_S",
    "TIMEOUT_ENV",
    "CallModule",
    "DistContext",
    "DistributedError",
    "ShardedBatchSampler",
    "TrainModule",
    "any_rank",
    "barrier",
    "broadcast_object",
    "broadcast_state",
    "cleanup",
    "ddp_ignored_names",
    "distributed",
    "frozen_submodules",
    "gather_objects",
    "gather_shards",
    "gather_tensors",
    "guard",
    "init_distributed",
    "is_collective_failure",
    "is_main_process",
    "local_batch_size",
    "main_first",
    "rank_and_world",
    "rank_zero_only",
    "reduce_logs",
    "save_on_main",
    "shard_of_batch",
    "shard_range",
    "sharded_map",
    "unwrap",
    "wrap_for_ddp",
]
