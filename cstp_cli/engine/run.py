"""What a pretraining run holds while it trains (:class:`Run`) and what it leaves (:class:`PretrainResult`).

Its own module so that the loop (:mod:`cstp_cli.engine.loop`) and the checkpoints
(:mod:`cstp_cli.engine.checkpointing`) both depend on it and not on each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from cstp_cli.core import dist as ddp
from cstp_cli.engine.config import PretrainSettings
from cstp_cli.engine.data import PairDataset
from cstp_cli.engine.objective import Objective
from cstp_cli.engine.optim import CosineSchedule


@dataclass
class PretrainResult:
    """What a run left behind."""

    out: Path
    checkpoint: Path | None
    metrics: Path
    plot: Path | None
    steps: int  # global optimiser steps done (including resumed ones)
    samples: int  # samples consumed
    interrupted: bool = False
    is_main: bool = True  # rank 0 (the only rank that wrote anything)
    encoder: Any = field(default=None, repr=False)
    objective: Any = field(default=None, repr=False)
    config: PretrainSettings | None = field(default=None, repr=False)


@dataclass
class Run:
    """Everything a run holds (built by :func:`setup`)."""

    cfg: PretrainSettings
    device: torch.device
    encoder: torch.nn.Module
    forward: Callable[[torch.Tensor], torch.Tensor]  # the (possibly compiled) encoder
    objective: Objective
    optimizer: torch.optim.Optimizer
    schedule: CosineSchedule
    params: list
    dataset: PairDataset
    frame_wh: tuple[int, int]
    feature_dim: int
    spe: int  # steps per epoch
    total_steps: int
    out: Path
    step: int = 0  # global optimiser steps done
    ctx: ddp.DistContext = field(default_factory=ddp.DistContext)
    model: Any = None  # TrainModule(encoder, objective), wrapped in DDP when world_size > 1
