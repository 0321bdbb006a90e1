"""MoCo v2: momentum key encoder and a queue of negatives (METHOD §4).

* Key network = momentum copy of the encoder f and projector g, copied at init
  (g at construction, f in :meth:`MoCo.attach`), never given gradients.
* Queries ``q = normalize(g(y))``; keys ``k = normalize(g'(f'(x)))`` under ``no_grad``, with
  shuffle-BN under DDP (:func:`batch_shuffle`; identity in one process).
* Logits ``[q·k+, q·queue] / τ``, cross-entropy with target 0. τ = 0.2, MoCo v2's recipe
  (Chen et al. 2020); ``temperature=0.07`` is MoCo v1's (and cstp's default before this fix).
* **Symmetric loss (our choice):** q1 is scored against k2 and q2 against k1 (each key comes
  from the *other* view of its video), and the term is the **mean** of the two
  cross-entropies, so its scale matches one MoCo v2 loss.
* The momentum update ``ξ ← m·ξ + (1−m)·θ`` (m = 0.999) runs in :meth:`MoCo.after_step`,
  i.e. after optimiser step k and therefore before the keys of step k+1 are computed —
  the same sequence as MoCo's update at the start of each step.
* Queue: K = 2048 keys, a ring buffer that accepts any number of keys per step (wrapping
  around). After the loss, both views' keys of every rank (gathered without gradients, order
  ``[k1 of ranks 0..W−1, k2 of ranks 0..W−1]``) are enqueued, so each forward is one training
  step. The queue is a buffer: no gradients, saved in ``state_dict``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from cstp_cli.api import ContrastiveScheme, Option, SchemeOutput, SchemeSpec
from cstp_cli.hookspecs import hookimpl
from cstp_plugins.contrastive.common import (
    projector_options,
    batch_shuffle,
    batch_unshuffle,
    collapse_std,
    dist_info,
    fp32,
    gather_no_grad,
    make_target,
    momentum_update,
    projector,
)


def moco_logits(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float) -> torch.Tensor:
    """``[q·k+, q·queue] / τ``: q, k float[B, d] normalised, queue float[K, d] → float32[B, 1 + K]."""
    q, k, queue = q.float(), k.float(), queue.float()
    positive = (q * k).sum(dim=1, keepdim=True)
    return torch.cat([positive, q @ queue.t()], dim=1) / temperature


def moco_loss(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of :func:`moco_logits` with target 0 (float32 scalar), and top-1 accuracy."""
    logits = moco_logits(q, k, queue, temperature)
    target = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
    accuracy = (logits.detach().argmax(dim=1) == 0).float().mean()
    return F.cross_entropy(logits, target), accuracy


class MoCo(ContrastiveScheme):
    """MoCo v2 scheme (see the module docstring). Call :meth:`attach` before ``forward`` or loading."""

    name = "moco"

    def __init__(
        self,
        feature_dim: int,
        queue_size: int = 2048,
        temperature: float = 0.2,
        momentum: float = 0.999,
        shuffle_bn: bool = True,
        proj_hidden: int = 4096,
        proj_dim: int = 128,
    ):
        super().__init__()
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, got {queue_size}")
        self.temperature = float(temperature)
        self.momentum = float(momentum)
        self.shuffle_bn = bool(shuffle_bn)
        self.projector = projector(feature_dim, proj_hidden, proj_dim)
        self.key_projector = make_target(self.projector)
        self.register_module("key_encoder", None)
        self.register_buffer("queue", F.normalize(torch.randn(queue_size, proj_dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def attach(self, encoder: nn.Module) -> None:
        """Copy the online encoder into the key encoder (frozen, in this module's state_dict)."""
        self.key_encoder = make_target(encoder)

    def after_step(self, encoder: nn.Module, step: int, total_steps: int) -> None:
        """Momentum update of the key encoder and key projector (m = ``momentum``)."""
        momentum_update(self.key_encoder, encoder, self.momentum)
        momentum_update(self.key_projector, self.projector, self.momentum)

    def embed(self, y: torch.Tensor) -> torch.Tensor:
        """Queries ``normalize(g(y))``: float[B, D] → float32[B, proj_dim]."""
        return F.normalize(self.projector(y).float(), dim=1)

    @torch.no_grad()
    def keys(self, x: torch.Tensor, view: int) -> torch.Tensor:
        """Keys ``normalize(g'(f'(x)))`` of clips float[B, 3, T, S, S] → float32[B, proj_dim], no grad."""
        if self.key_encoder is None:
            raise RuntimeError("MoCo.attach(encoder) must be called before the first step")
        handle = None
        if self.shuffle_bn and dist_info()[1] > 1:
            x, handle = batch_shuffle(x, seed=int(self.steps.item()) * 2 + view)
        k = self.key_projector(self.key_encoder(x))
        return F.normalize(batch_unshuffle(k, handle).float(), dim=1)

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Write keys float[N, d] into the ring buffer at the pointer, wrapping; keeps the last K if N > K."""
        size = self.queue.shape[0]
        n = keys.shape[0]
        if n > size:
            keys, skip = keys[n - size :], n - size
        else:
            skip = 0
        rows = (self.queue_ptr + skip + torch.arange(keys.shape[0], device=self.queue.device)) % size
        self.queue[rows] = keys.detach().to(self.queue.dtype)
        self.queue_ptr.copy_((self.queue_ptr + n) % size)

    def forward(self, y1: torch.Tensor, y2: torch.Tensor, x1: torch.Tensor, x2: torch.Tensor) -> SchemeOutput:
        """Online features y1, y2 float[B, D] and clips x1, x2 → ``{"moco": loss}``, stats std and acc."""
        q1, q2 = self.embed(y1), self.embed(y2)
        k1, k2 = self.keys(x1, 0), self.keys(x2, 1)
        queue = self.queue.clone()  # autograd keeps it for q's gradient; enqueue writes in place
        with fp32(q1.device):
            loss1, acc1 = moco_loss(q1, k2, queue, self.temperature)
            loss2, acc2 = moco_loss(q2, k1, queue, self.temperature)
        self.enqueue(torch.cat([gather_no_grad(k1), gather_no_grad(k2)]))
        self.steps += 1
        return SchemeOutput(
            terms={"moco": (loss1 + loss2) / 2},
            stats={"std": collapse_std(torch.cat([q1, q2])), "acc": (acc1 + acc2) / 2},
        )


OPTIONS = {
    "queue_size": Option("queue_size", "int", 2048, "number of keys K in the queue"),
    "temperature": Option("temperature", "float", 0.2, "softmax temperature τ (0.2: MoCo v2; 0.07: MoCo v1)"),
    "momentum": Option("momentum", "float", 0.999, "key-encoder momentum m"),
    "shuffle_bn": Option("shuffle_bn", "bool", True, "shuffle keys across ranks for BatchNorm (DDP only)"),
    **projector_options(4096, 128),
}


@hookimpl
def register_contrastive_schemes(register: Any) -> None:
    register(
        SchemeSpec(
            name="moco",
            build=MoCo,
            options=OPTIONS,
            description="MoCo v2: momentum key encoder, queue of 2048 keys, τ = 0.2 (symmetric)",
        )
    )
