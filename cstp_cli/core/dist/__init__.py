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

from cstp_cli.core.dist.collectives import (
    ShardedBatchSampler,
    any_rank,
    barrier,
    broadcast_object,
    gather_objects,
    gather_shards,
    gather_tensors,
    local_batch_size,
    main_first,
    rank_zero_only,
    reduce_logs,
    save_on_main,
    shard_of_batch,
    shard_range,
    sharded_map,
)
from cstp_cli.core.dist.context import (
    BACKEND_ENV,
    DEFAULT_TIMEOUT_S,
    DEVICE_CHOICES,
    TIMEOUT_ENV,
    DistContext,
    cleanup,
    distributed,
    init_distributed,
    is_main_process,
    rank_and_world,
    resolve_device,
    timeout_seconds,
)
from cstp_cli.core.dist.ddp import (
    CallModule,
    TrainModule,
    broadcast_state,
    ddp_ignored_names,
    frozen_submodules,
    unwrap,
    wrap_for_ddp,
)
from cstp_cli.core.dist.failures import guard, is_collective_failure

__all__ = [
    "TIMEOUT_ENV",
    "DEFAULT_TIMEOUT_S",
    "BACKEND_ENV",
    "DistContext",
    "timeout_seconds",
    "DEVICE_CHOICES",
    "resolve_device",
    "init_distributed",
    "rank_and_world",
    "is_main_process",
    "cleanup",
    "distributed",
    "is_collective_failure",
    "guard",
    "rank_zero_only",
    "save_on_main",
    "local_batch_size",
    "shard_of_batch",
    "shard_range",
    "gather_tensors",
    "gather_objects",
    "gather_shards",
    "sharded_map",
    "ShardedBatchSampler",
    "broadcast_object",
    "barrier",
    "main_first",
    "any_rank",
    "reduce_logs",
    "unwrap",
    "TrainModule",
    "CallModule",
    "frozen_submodules",
    "ddp_ignored_names",
    "broadcast_state",
    "wrap_for_ddp",
]
