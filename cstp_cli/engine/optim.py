"""Optimiser and schedule of pretraining (METHOD §6).

SGD (momentum 0.9, lr 0.03, weight decay 5e-4) over every parameter that requires grad
(targets and queues never do); a per-step cosine from the base lr to ``min_lr`` (1e-5),
optionally after a linear warm-up (the authors' code: 150 epochs); grad-norm clip 18.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import torch


def trainable(*modules: torch.nn.Module) -> list[torch.nn.Parameter]:
    """Parameters with ``requires_grad`` of ``modules``, each once, in a fixed order."""
    seen: set[int] = set()
    out = []
    for module in modules:
        for p in module.parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                out.append(p)
    return out


def make_sgd(params: Iterable[torch.nn.Parameter], lr: float, momentum: float, weight_decay: float) -> torch.optim.SGD:
    """SGD of METHOD §6 (no Nesterov)."""
    return torch.optim.SGD(list(params), lr=lr, momentum=momentum, weight_decay=weight_decay)


def cosine_lr(step: int, total: int, base: float, floor: float, warmup: int = 0) -> float:
    """Learning rate at optimiser step ``step`` (0-based) of ``total``.

    Warm-up: ``base·(step+1)/warmup`` for ``step < warmup``; then
    ``floor + (base − floor)·½(1 + cos(π·t/(total − warmup)))`` with ``t = step − warmup``.
    """
    if step < warmup:
        return base * (step + 1) / warmup
    span = max(1, total - warmup)
    t = min(step - warmup, span)
    return floor + (base - floor) * 0.5 * (1.0 + math.cos(math.pi * t / span))


class CosineSchedule:
    """Sets the optimiser's lr before every step; its state is one integer (the step)."""

    def __init__(self, optimizer: torch.optim.Optimizer, base: float, floor: float, total: int, warmup: int = 0):
        self.optimizer = optimizer
        self.base, self.floor, self.total, self.warmup = float(base), float(floor), int(total), int(warmup)
        self.step_count = 0
        self._apply()

    def lr(self) -> float:
        return cosine_lr(self.step_count, self.total, self.base, self.floor, self.warmup)

    def _apply(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr()

    def step(self) -> None:
        """Advance one optimiser step and set the next lr."""
        self.step_count += 1
        self._apply()

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step_count, "base": self.base, "floor": self.floor, "total": self.total, "warmup": self.warmup}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the step; base/floor/warm-up come from the run's config, ``total`` may grow (--epochs)."""
        self.step_count = int(state["step"])
        self._apply()


def clip_gradients(params: list[torch.nn.Parameter], max_norm: float | None) -> torch.Tensor | None:
    """Clip the global grad norm to ``max_norm`` (METHOD §6: 18); returns the norm before clipping."""
    if not max_norm:
        return None
    return torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True)
