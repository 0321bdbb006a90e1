"""Pretraining checkpoints: what a run saves, and how ``--resume`` restores it.

The file is :func:`cstp_cli.core.checkpoint.encoder_checkpoint` (kind ``"pretrain"``) plus::

    "model": {"objective": state_dict},        # scheme (projector, predictor, target, queue) + heads
    "optimizer": state_dict, "scheduler": {"step": int, ...}, "scaler": {"enabled": False},
    "epoch": int, "step": int, "samples_consumed": int, "steps_per_epoch": int,
    "config": dict, "rng": {"torch": ByteTensor, "cuda": [ByteTensor, ...]}

Tensors and plain Python types only, so ``weights_only=True`` loads it. bf16 autocast
needs no loss scaler; ``scaler`` records that.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from cstp_cli.core.checkpoint import atomic_save, encoder_checkpoint, load_checkpoint
from cstp_cli.engine.config import PretrainSettings, parse_every
from cstp_cli.engine.run import Run
from cstp_cli.errors import CheckpointError, UsageError


class Cadence:
    """When the loop writes a checkpoint between steps (``--checkpoint-every``; issue 13 item 7).

    A checkpoint (and the loss plot) every epoch dominates a short run on a small dataset,
    so they follow a cadence: a time (``"10m"``: 10 minutes after the last save or the start),
    a step count (``"500steps"``: every global step divisible by 500, so a resumed run keeps
    the same save points) or epochs; ``"end"`` saves only at the end. The loop always saves
    at the end and on an interrupt, whatever the cadence.
    """

    def __init__(self, every: str, steps_per_epoch: int, clock: Callable[[], float] = time.monotonic):
        self.kind, amount = parse_every(every)
        self.period = amount if self.kind == "seconds" else 0.0
        self.steps = int(amount) * (int(steps_per_epoch) if self.kind == "epochs" else 1)
        self.clock = clock
        self.last = clock()

    def due(self, step: int) -> bool:
        """True when a checkpoint is due after global step ``step``."""
        if self.kind == "seconds":
            return self.clock() - self.last >= self.period
        if self.kind in ("steps", "epochs"):
            return step % self.steps == 0
        return False

    def saved(self) -> None:
        """Record that a checkpoint was just written (the time cadence restarts)."""
        self.last = self.clock()


def _cpu(state: Any) -> Any:
    """Detach every tensor of a (nested) state to a contiguous CPU copy."""
    if isinstance(state, torch.Tensor):
        return state.detach().to("cpu", copy=True).contiguous()
    if isinstance(state, dict):
        return {k: _cpu(v) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(_cpu(v) for v in state)
    return state


def state_of(run: Run) -> dict[str, Any]:
    """The checkpoint dict of ``run`` at its current step."""
    cfg = run.cfg
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and run.device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return encoder_checkpoint(
        kind="pretrain",
        backbone=cfg.backbone,
        width=cfg.width,
        feature_dim=run.feature_dim,
        encoder_state=_cpu(run.encoder.state_dict()),
        frames=int(cfg.frames),
        size=int(cfg.clip_size),
        frame_wh=run.frame_wh,
        model={"objective": _cpu(run.objective.state_dict())},
        optimizer=_cpu(run.optimizer.state_dict()),
        scheduler=run.schedule.state_dict(),
        scaler={"enabled": False},
        epoch=run.step // run.spe,
        step=run.step,
        samples_consumed=run.step * int(cfg.batch_size),
        steps_per_epoch=run.spe,
        config=cfg.to_dict(),
        rng=rng,
    )


def save(run: Run, path: Path) -> Path:
    """Atomically write the checkpoint of ``run`` to ``path``."""
    return atomic_save(state_of(run), path)


def load_resume(path: str | Path) -> dict[str, Any]:
    """Load a pretraining checkpoint for ``--resume`` (``weights_only=True``)."""
    state = load_checkpoint(path)
    if state.get("kind") != "pretrain" or "optimizer" not in state or "config" not in state:
        raise CheckpointError(f"{path} is a {state.get('kind')} checkpoint without training state; --resume needs one written by cstp pretrain")
    state["_path"] = str(path)
    return state


def resumed_config(state: dict[str, Any], given: Mapping[str, Any]) -> PretrainSettings:
    """The checkpoint's settings, with those that may change on resume taken from ``given``.

    ``given`` holds only what the user set explicitly (setting names, non-None); changing
    anything else is a usage error (a resumed run continues the same run). ``out`` defaults
    to the checkpoint's folder; ``max_steps`` applies only when given again.
    """
    cfg = PretrainSettings.from_dict(state["config"])
    cfg.max_steps = None  # a cap of the interrupted invocation, not of the run
    mutable = PretrainSettings.resume_mutable()
    stored = cfg.to_dict()
    for key, value in PretrainSettings.flags_to_values(given).items():
        if key in mutable:
            setattr(cfg, key, value)
        elif value != stored.get(key):
            raise UsageError(
                f"--resume continues the checkpoint's run; {key} cannot change ({stored.get(key)!r} → {value!r}); "
                f"only {', '.join(sorted(mutable))} may"
            )
    if given.get("out") is None:
        cfg.out = str(Path(state["_path"]).resolve().parent)
    cfg.validate()
    return cfg


def check_cache(state: dict[str, Any], frame_wh: tuple[int, int], cache_path: Any) -> None:
    """Refuse a cache of another frame size than the checkpoint's (DESIGN "HDF5 cache")."""
    want = tuple(int(v) for v in state["cache"]["frame_wh"])
    if want != tuple(frame_wh):
        raise CheckpointError(
            f"{state.get('_path', 'the checkpoint')} was trained on {want[0]}x{want[1]} frames but the cache "
            f"{cache_path} has {frame_wh[0]}x{frame_wh[1]}; resume on a cache built with --size {want[0]}x{want[1]}"
        )


def restore(run: Run, state: dict[str, Any]) -> None:
    """Load weights, optimiser, schedule, step and RNG of ``state`` into ``run``."""
    try:
        run.encoder.load_state_dict(state["encoder"])
        run.objective.load_state_dict(state["model"]["objective"])
        run.optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise CheckpointError(
            f"{state.get('_path')} does not fit this run's model ({type(exc).__name__}: {str(exc).splitlines()[0]})"
        ) from exc
    if int(state["steps_per_epoch"]) != run.spe:
        raise CheckpointError(
            f"{state.get('_path')} had {state['steps_per_epoch']} steps per epoch, this cache gives {run.spe}; "
            "resume on the same cache and split"
        )
    run.schedule.load_state_dict(state["scheduler"])
    run.step = int(state["step"])
    torch.set_rng_state(state["rng"]["torch"])
    if "cuda" in state["rng"] and run.device.type == "cuda":
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
