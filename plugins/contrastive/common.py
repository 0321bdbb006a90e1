"""Shared pieces of the built-in contrastive schemes (METHOD §4).

* MLP builders for projectors and predictors;
* target networks: :func:`make_target` (a frozen copy) and :func:`momentum_update`;
* :func:`collapse_std`, the collapse monitor every scheme logs;
* :func:`fp32`, a context that turns autocast off so losses are computed in float32;
* the only cross-rank code of the schemes: :func:`gather_with_grad`, :func:`gather_no_grad`,
  :func:`rank_offset`, :func:`batch_shuffle` / :func:`batch_unshuffle` (shuffle-BN). Each is
  the identity (or its one-process equivalent) when ``torch.distributed`` is not initialised,
  so the schemes run unchanged in one process and under DDP (torchrun).

Batches may have different sizes on different ranks; gathers pad to the largest and trim.
"""

from __future__ import annotations

import contextlib
import copy
import math
from typing import Any, Iterator, Sequence

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from cstp_cli.api import Option, unwrap  # unwrap: the core's one (DDP / DataParallel / compile)

# --------------------------------------------------------------------------- networks


def mlp(dims: Sequence[int], last_bn: bool = False, last_affine: bool = True) -> nn.Sequential:
    """An MLP ``dims[0] → … → dims[-1]``: ``Linear-BN-ReLU`` per hidden layer, then ``Linear``.

    With ``last_bn`` the output ``Linear`` is followed by a BatchNorm (``affine=last_affine``),
    as SimSiam's projector (METHOD §4). A ``Linear`` followed by BN has no bias (BN subtracts it).
    Maps ``float[B, dims[0]]`` → ``float[B, dims[-1]]``.
    """
    if len(dims) < 2:
        raise ValueError(f"an MLP needs at least an input and an output width, got {list(dims)}")
    layers: list[nn.Module] = []
    for d_in, d_out in zip(dims[:-2], dims[1:-1]):
        layers += [nn.Linear(d_in, d_out, bias=False), nn.BatchNorm1d(d_out), nn.ReLU(inplace=True)]
    layers.append(nn.Linear(dims[-2], dims[-1], bias=not last_bn))
    if last_bn:
        layers.append(nn.BatchNorm1d(dims[-1], affine=last_affine))
    return nn.Sequential(*layers)


def projector(feature_dim: int, hidden: int = 4096, out: int = 128) -> nn.Sequential:
    """METHOD §4 projector g: ``D → hidden → out`` (Linear-BN-ReLU-Linear); not normalised here."""
    return mlp([feature_dim, hidden, out])


def make_target(module: nn.Module) -> nn.Module:
    """A frozen copy of ``module`` (unwrapped): same weights, ``requires_grad=False``, no grads.

    Used for the momentum (target / key) networks of BYOL and MoCo, "copied at init" (METHOD §4).
    """
    target = copy.deepcopy(unwrap(module))
    for p in target.parameters():
        p.requires_grad_(False)
        p.grad = None
    return target


@torch.no_grad()
def momentum_update(target: nn.Module, online: nn.Module, m: float) -> None:
    """``ξ ← m·ξ + (1−m)·θ`` for every parameter (METHOD §4, BYOL and MoCo).

    Buffers (BatchNorm running statistics) are not averaged: the target keeps those of its
    own forward passes. ``online`` may be wrapped (DDP, compile); parameter order must match.
    """
    t_params = list(target.parameters())
    o_params = [p.detach() for p in unwrap(online).parameters()]
    if len(t_params) != len(o_params):
        raise ValueError(
            f"target has {len(t_params)} parameters, online network {len(o_params)}; "
            "they must be copies of one another"
        )
    if not t_params:
        return
    torch._foreach_mul_(t_params, m)
    torch._foreach_add_(t_params, o_params, alpha=1.0 - m)


def momentum_at(base: float, step: int, total_steps: int, schedule: str = "constant") -> float:
    """The momentum after optimiser step ``step`` of ``total_steps`` (METHOD §4, BYOL).

    ``constant``: ``base``. ``cosine``: ``m_k = 1 − (1 − base)·(cos(π·k/K) + 1)/2``, rising from
    ``base`` at k = 0 to 1 at k = K (k clamped to ``[0, K]``).
    """
    if schedule == "constant":
        return float(base)
    if schedule != "cosine":
        raise ValueError(f"momentum schedule must be constant or cosine, got {schedule!r}")
    k = min(max(step, 0), max(total_steps, 1))
    return 1.0 - (1.0 - base) * (math.cos(math.pi * k / max(total_steps, 1)) + 1.0) / 2.0


# --------------------------------------------------------------------------- numerics


def collapse_std(z: torch.Tensor) -> torch.Tensor:
    """Collapse monitor (METHOD §4): mean over dims of the std over the batch of ``normalize(z)``.

    ``z`` float[N, d] → float32 scalar, detached. About ``1/sqrt(d)`` for well-spread
    embeddings, 0 when every embedding is the same.
    """
    with torch.no_grad():
        zn = F.normalize(z.detach().float(), dim=1)
        return zn.std(dim=0).mean()


@contextlib.contextmanager
def fp32(device: torch.device | str) -> Iterator[None]:
    """Turn autocast off for the enclosed code (losses are computed in float32; cast inputs)."""
    device_type = torch.device(device).type
    with torch.autocast(device_type=device_type, enabled=False):
        yield


# --------------------------------------------------------------------------- distributed


def dist_info() -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` when ``torch.distributed`` is not initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _all_sizes(n: int, device: torch.device) -> list[int]:
    """The local batch sizes of every rank (one small all_gather)."""
    _, world = dist_info()
    mine = torch.tensor([n], dtype=torch.int64, device=device)
    out = [torch.zeros_like(mine) for _ in range(world)]
    dist.all_gather(out, mine)
    return [int(s.item()) for s in out]


def _gather_padded(x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """All-gather ``x`` float[n_r, ...] of every rank into float[sum(n_r), ...] (no autograd)."""
    biggest = max(sizes)
    x = x.contiguous()
    if x.shape[0] < biggest:
        pad = x.new_zeros((biggest - x.shape[0],) + tuple(x.shape[1:]))
        x = torch.cat([x, pad])
    parts = [torch.empty_like(x) for _ in sizes]
    dist.all_gather(parts, x)
    return torch.cat([p[:n] for p, n in zip(parts, sizes)])


def rank_offset(n: int, device: torch.device | str = "cpu") -> int:
    """Row of this rank's first sample in a gathered batch (0 in one process)."""
    rank, world = dist_info()
    if world == 1:
        return 0
    return sum(_all_sizes(n, torch.device(device))[:rank])


def gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` float[n_r, ...] of all ranks in rank order, without gradients.

    Returns float[sum(n_r), ...] detached; ``x.detach()`` in one process.
    """
    _, world = dist_info()
    if world == 1:
        return x.detach()
    with torch.no_grad():
        return _gather_padded(x.detach(), _all_sizes(x.shape[0], x.device))


class _GatherWithGrad(torch.autograd.Function):
    """All-gather whose backward sums the incoming gradients over ranks and keeps this rank's rows."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        rank, _ = dist_info()
        sizes = _all_sizes(x.shape[0], x.device)
        ctx.rows = (sum(sizes[:rank]), sum(sizes[: rank + 1]))
        return _gather_padded(x, sizes)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start, stop = ctx.rows
        return grad[start:stop]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` float[n_r, D] of all ranks in rank order, keeping gradients.

    The local shard's gradient is the sum over ranks of the gradients of its rows, so that
    with DDP's gradient averaging, a loss averaged over each rank's local queries gives the
    gradient of the full-batch loss (SimCLR negatives, METHOD §4). Identity in one process.
    """
    _, world = dist_info()
    if world == 1:
        return x
    return _GatherWithGrad.apply(x)


def batch_shuffle(x: torch.Tensor, seed: int | None = None) -> tuple[torch.Tensor, Any]:
    """Shuffle-BN, step 1: exchange samples across ranks (MoCo keys, METHOD §4).

    ``x`` float[n, ...] → ``(x_shuffled float[n, ...], handle)``: this rank's share of a random
    permutation of the global batch, so the key encoder's BatchNorm sees other ranks' samples.
    The permutation comes from ``seed`` on every rank (deterministic), or from rank 0's RNG
    when ``seed`` is None. Identity in one process (``handle`` None). No gradients.
    """
    rank, world = dist_info()
    if world == 1:
        return x, None
    with torch.no_grad():
        sizes = _all_sizes(x.shape[0], x.device)
        everything = _gather_padded(x.detach(), sizes)
        total = sum(sizes)
        if seed is None:
            perm = torch.randperm(total, device=x.device)
            dist.broadcast(perm, src=0)
        else:
            gen = torch.Generator().manual_seed(int(seed))
            perm = torch.randperm(total, generator=gen).to(x.device)
        start = sum(sizes[:rank])
        mine = perm[start : start + sizes[rank]]
        return everything[mine], (perm, sizes, start)


def batch_unshuffle(y: torch.Tensor, handle: Any) -> torch.Tensor:
    """Shuffle-BN, step 2: outputs ``y`` float[n, ...] of the shuffled inputs back in this rank's order.

    ``handle`` is the one :func:`batch_shuffle` returned; identity when it is None.
    """
    if handle is None:
        return y
    perm, sizes, start = handle
    with torch.no_grad():
        everything = _gather_padded(y.detach(), sizes)
        inverse = torch.argsort(perm)
        return everything[inverse[start : start + sizes[dist_info()[0]]]]


def projector_options(hidden: int = 4096, out: int = 128) -> dict[str, Option]:
    """The ``proj_hidden`` / ``proj_dim`` options every scheme's projector g has (METHOD §4)."""
    return {
        "proj_hidden": Option("proj_hidden", "int", hidden, "projector hidden width"),
        "proj_dim": Option("proj_dim", "int", out, "projector output width"),
    }
