"""Shared fixtures of the contrastive-scheme tests: a tiny encoder and tiny clips."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

torch.set_num_threads(1)

FEATURE_DIM = 16
#: tiny widths for every scheme (METHOD §4 defaults are far too large for unit tests)
TINY = {"proj_hidden": 32, "proj_dim": 8}
TINY_PRED = {**TINY, "pred_hidden": 32}


class TinyEncoder(nn.Module):
    """clips float[B, 3, T, S, S] → features float[B, 16] (conv, BN, pool, linear)."""

    feature_dim = FEATURE_DIM

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 4, kernel_size=3, padding=1, bias=False)
        self.bn = nn.BatchNorm3d(4)
        self.fc = nn.Linear(4, FEATURE_DIM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn(self.conv(x)))
        return self.fc(h.mean(dim=(2, 3, 4)))


@pytest.fixture
def encoder() -> TinyEncoder:
    torch.manual_seed(0)
    return TinyEncoder()


@pytest.fixture
def clips() -> tuple[torch.Tensor, torch.Tensor]:
    """Two views of a batch of 5 clips: float[5, 3, 2, 6, 6] each."""
    gen = torch.Generator().manual_seed(1)
    return torch.randn(5, 3, 2, 6, 6, generator=gen), torch.randn(5, 3, 2, 6, 6, generator=gen)


def _perturb(module: nn.Module, amount: float = 0.5) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.add_(amount)


def _grads_ok(params) -> bool:
    return all(p.grad is not None and bool(torch.isfinite(p.grad).all()) and float(p.grad.abs().sum()) > 0 for p in params)


@pytest.fixture
def perturb():
    """``perturb(module, amount=0.5)``: move every parameter so it differs from its copies."""
    return _perturb


@pytest.fixture
def grads_ok():
    """``grads_ok(params)``: every parameter has a finite, non-zero gradient."""
    return _grads_ok


@pytest.fixture
def tiny() -> dict:
    """Tiny projector widths."""
    return dict(TINY)


@pytest.fixture
def tiny_pred() -> dict:
    """Tiny projector and predictor widths."""
    return dict(TINY_PRED)
