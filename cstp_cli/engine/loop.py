"""The pretraining loop (DESIGN "Engine", METHOD §1 and §6): plain PyTorch.

One step: a global batch of plans and uint8 frames from the loader → pinned, non-blocking
copy to the device → :func:`cstp_cli.augment.augment_batch` (crop, resize, flip,
photometric, task device transforms, normalisation) → one online encoder pass per clip
(BN statistics per view; bf16 autocast and ``channels_last_3d`` on CUDA) → scheme + heads →
weighted joint loss → backward → grad-norm clip → SGD step → cosine lr → the scheme's
``after_step``.

Checkpoints (and the loss plot, redrawn in a background thread) follow
``--checkpoint-every`` (:class:`~cstp_cli.engine.checkpointing.Cadence`; default every 10
minutes). Stops: after the last step (checkpoint), at ``max_steps`` (checkpoint), on
SIGINT/SIGTERM (checkpoint at the last finished step, ``interrupted=True``), on a NaN/inf
loss (:class:`TrainingError`; no checkpoint is written, the last good one stays).
"""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import torch

from cstp_cli.engine import checkpointing
from cstp_cli.core import dist as ddp
from cstp_cli.engine.config import PretrainSettings
from cstp_cli.engine.data import PairDataset, make_loader, steps_per_epoch
from cstp_cli.core.progress import Progress
from cstp_cli.engine.metrics import LossPlotter, MetricsLog, chance_levels, progress_suffix, split_logs
from cstp_cli.engine.objective import build_objective, describe, parse_selection
from cstp_cli.engine.optim import CosineSchedule, clip_gradients, make_sgd, trainable
from cstp_cli.engine.run import PretrainResult, Run
from cstp_cli.errors import TrainingError, UsageError

#: Environment hook for tests and drills: send ourselves SIGINT after this many steps.
INTERRUPT_ENV = "CSTP_INTERRUPT_AFTER_STEPS"


def autocast_for(device: torch.device, precision: str):
    """bf16 autocast on CUDA when ``precision == "bf16"``; nothing otherwise (CPU runs fp32)."""
    if device.type == "cuda" and precision == "bf16":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def to_layout(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``channels_last_3d`` on CUDA (clips float[B, 3, T, S, S]); unchanged elsewhere."""
    return x.contiguous(memory_format=torch.channels_last_3d) if device.type == "cuda" else x


def setup(cfg: PretrainSettings, resume_state: dict | None = None, ctx: ddp.DistContext | None = None) -> Run:
    """Resolve the data, build encoder, objective, optimiser and schedule (restored on resume)."""
    from cstp_cli.data.cache import CacheReader
    from cstp_cli.plugins import get_registry
    from cstp_cli.data.resolve import resolve_data
    from cstp_cli.plans.sampling import make_sampler

    ctx = ctx or ddp.DistContext(device=ddp.resolve_device(cfg.device))
    device = ctx.device
    ddp.local_batch_size(int(cfg.batch_size), ctx.world_size)  # --batch-size is global: W must divide it
    size = cfg.frame_size
    # model and objective first: a usage error (unknown name, nothing to learn from, bad
    # option) must come before any dataset is generated or cached
    registry = get_registry()
    torch.manual_seed(int(cfg.seed))
    encoder = registry.backbone(cfg.backbone).build(width=cfg.width)
    feature_dim = int(getattr(encoder, "feature_dim"))
    obj = cfg.objective
    objective = build_objective(
        parse_selection(obj.contrastive, obj.pretext, obj.augment),
        feature_dim,
        registry=registry,
        pretext_options=cfg.pretext,
        contrastive_options=cfg.contrastive,
        sets=cfg.sets,
    )
    with ddp.main_first():  # rank 0 builds the cache / synthetic set, the others then reuse it
        cache_path = resolve_data(cfg.data, size=size, workers=cfg.workers or None)
    reader = CacheReader(cache_path)
    if ctx.is_main:  # a clip larger or longer than the cache provides is allowed, but said
        for line in reader.clip_warnings(int(cfg.frames), int(cfg.clip_size), videos=reader.split(int(cfg.split), "train")):
            print(f"warning: {line}", file=sys.stderr)
    frame_wh = tuple(int(v) for v in reader.frame_wh)
    if resume_state is not None:
        checkpointing.check_cache(resume_state, frame_wh, cache_path)
    encoder.to(device)
    if device.type == "cuda":
        encoder.to(memory_format=torch.channels_last_3d)
    objective.to(device)
    if objective.scheme is not None:
        objective.scheme.attach(encoder)
    sampler = make_sampler(objective.tasks, T=int(cfg.frames), mode=cfg.sampling, photometric_p=float(cfg.photometric_p))
    videos = reader.split(int(cfg.split), "train")
    if len(videos) == 0:
        raise UsageError(f"the cache {cache_path} has no training videos in split {cfg.split}; pick another --split")
    from cstp_cli.engine.prefetch import use_device_decode

    dataset = PairDataset(reader, videos, sampler, int(cfg.seed), decode_on_device=use_device_decode(reader, device))
    spe = steps_per_epoch(len(dataset), int(cfg.batch_size))
    total = spe * int(cfg.epochs)
    params = trainable(encoder, objective)
    optimizer = make_sgd(params, cfg.lr, cfg.momentum, cfg.weight_decay)
    schedule = CosineSchedule(optimizer, cfg.lr, cfg.min_lr, total, spe * int(cfg.warmup_epochs))
    forward = torch.compile(encoder) if cfg.compile else encoder
    out = Path(cfg.out)
    run = Run(cfg, device, encoder, forward, objective, optimizer, schedule, params, dataset, frame_wh, feature_dim, spe, total, out)
    if resume_state is not None:
        checkpointing.restore(run, resume_state)
    run.ctx = ctx
    run.model = ddp.wrap_for_ddp(ddp.TrainModule(encoder, objective, encode=forward), ctx, sync_bn=bool(cfg.sync_bn))
    return run


def save(run: Run, name: str = "checkpoint.pt") -> Path:
    """Write the run's checkpoint atomically to ``out/name``."""
    return checkpointing.save(run, run.out / name)


class _StopFlag:
    """SIGINT/SIGTERM set a flag checked between steps (so no step is half applied).

    A second SIGINT raises ``KeyboardInterrupt`` at once.
    """

    def __init__(self) -> None:
        self.stop = False
        self.signal = ""

    def _handler(self, signum: int, frame: Any) -> None:
        if self.stop and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.stop = True
        self.signal = signal.Signals(signum).name

    @contextmanager
    def installed(self) -> Iterator["_StopFlag"]:
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {s: signal.signal(s, self._handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


def train_step(run: Run, frames: torch.Tensor, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One optimiser step on ``frames uint8[B, 2, T, H, W, 3]`` and its ``PlanBatch``.

    Returns the loss and the logged scalars (still on the device); raises
    :class:`TrainingError` on a non-finite loss before touching the weights.
    """
    from cstp_cli.augment import augment_batch

    device = run.device
    frames = frames.to(device, non_blocking=True)
    batch = batch.to(device, non_blocking=True)
    with torch.no_grad():
        clips = augment_batch(frames, batch, run.objective.tasks, out_size=int(run.cfg.clip_size))
    x1, x2 = to_layout(clips[:, 0], device), to_layout(clips[:, 1], device)
    with autocast_for(device, run.cfg.precision):
        loss, logs = run.model(x1, x2, batch.labels)  # encoder per view + objective; DDP syncs grads
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    norm = clip_gradients(run.params, run.cfg.grad_clip)
    if norm is not None:
        logs["grad_norm"] = norm.detach().float()
    return loss, ddp.reduce_logs(logs)  # averaged over ranks: same numbers (and NaN check) everywhere


def optimise(run: Run, frames: torch.Tensor, batch: Any) -> dict[str, float]:
    """:func:`train_step`, then (when the loss and grad norm are finite) the SGD step, the lr
    schedule and the scheme's ``after_step``; returns the step's logged values as floats."""
    _, logs = train_step(run, frames, batch)
    values = _host(logs)
    values["lr"] = float(run.optimizer.param_groups[0]["lr"])
    if not (math.isfinite(values["loss"]) and math.isfinite(values.get("grad_norm", 0.0))):
        raise TrainingError(_nan_message(run, values, run.step))
    run.optimizer.step()
    if run.objective.scheme is not None:
        run.objective.scheme.after_step(run.encoder, run.step, run.total_steps)
    run.schedule.step()
    run.step += 1
    return values


def _host(logs: dict[str, torch.Tensor]) -> dict[str, float]:
    """All logged scalars to Python floats with one device sync."""
    keys = list(logs)
    values = torch.stack([logs[k].detach().float().reshape(()) for k in keys]).tolist()
    return dict(zip(keys, values))


def _nan_message(run: Run, values: dict[str, float], step: int) -> str:
    bad = {k.split("/", 1)[-1]: v for k, v in values.items() if not math.isfinite(v)}
    terms = ", ".join(f"{k}={v:.4g}" for k, v in values.items() if k.startswith("terms/"))
    last = run.out / "checkpoint.pt"
    kept = (f"the last good checkpoint {last} is kept" if last.exists()
            else f"no checkpoint was written yet (--checkpoint-every {run.cfg.checkpoint_every})")
    return (
        f"loss became non-finite at step {step + 1} (epoch {step // run.spe + 1}): "
        f"{', '.join(f'{k}={v}' for k, v in bad.items())} [{terms}]; {kept}; lower --lr or check the data"
    )


def train(
    run: Run,
    *,
    progress: bool = True,
    on_step: Callable[[Run, int, torch.Tensor, Any, dict[str, float]], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> PretrainResult:
    """Run the remaining steps of ``run`` (see the module docstring for how it stops).

    ``on_step(run, step, frames, batch, values)`` is called after every optimiser step with
    the step's loader output (``uint8[B, 2, T, H, W, 3]``, ``PlanBatch``) and logged values.
    """
    cfg = run.cfg
    G = int(cfg.batch_size)
    stop_step = run.total_steps if cfg.max_steps is None else min(run.total_steps, int(cfg.max_steps))
    interrupt_after = int(os.environ.get(INTERRUPT_ENV, "0") or 0)
    writer = run.ctx.is_main
    metrics = MetricsLog(run.out / "metrics.jsonl", resume_step=run.step if run.step else None) if writer else None
    epochs = math.ceil(run.total_steps / run.spe)
    bar = Progress(stop_step, "pretraining", unit="steps", start=run.step, rate_scale=G, rate_unit="clips", enabled=progress and writer)
    loader = make_loader(
        run.dataset,
        start_step=run.step,
        stop_step=stop_step,
        steps_per_epoch=run.spe,
        global_batch=G,
        workers=int(cfg.workers),
        pin_memory=run.device.type == "cuda",
        rank=run.ctx.rank,
        world_size=run.ctx.world_size,
    )
    run.encoder.train()
    run.objective.train()
    flag = _StopFlag()
    checkpoint: Path | None = None
    cadence = checkpointing.Cadence(cfg.checkpoint_every, run.spe)
    plotter = LossPlotter(run.out / "metrics.jsonl", run.out / "loss.png", chance_levels(run.objective), warn=log) if writer else None
    start = run.step
    prefetcher = None
    t_last = time.perf_counter()
    try:
        with flag.installed():
            iterator = iter(loader)
            if run.dataset.decode_on_device:  # jpeg on CUDA: next batches decoded on a side stream
                from cstp_cli.engine.prefetch import DevicePrefetcher

                iterator = prefetcher = DevicePrefetcher(iterator, run.device)
            stop = False
            while run.step < stop_step and not (stop := ddp.any_rank(flag.stop)):  # all ranks stop together
                try:
                    frames, batch = next(iterator)
                except RuntimeError:
                    if flag.stop:  # workers died of the same SIGINT
                        break
                    raise
                with ddp.guard(f"training step {run.step + 1}", checkpoint=run.out / "checkpoint.pt"):
                    values = optimise(run, frames, batch)  # a dead or hung rank → one DistributedError line
                now = time.perf_counter()
                record = {
                    "step": run.step,
                    "epoch": (run.step - 1) // run.spe,
                    "samples": run.step * G,
                    "clips_per_s": G / max(now - t_last, 1e-9),
                    **split_logs(values),
                }
                t_last = now
                if metrics is not None:
                    metrics.write(record)
                suffix = progress_suffix(record, (run.step - 1) // run.spe + 1, epochs)
                bar.update(done=run.step, suffix=suffix, force=run.step % run.spe == 0)
                if on_step is not None:
                    on_step(run, run.step, frames, batch, values)
                if writer and run.step < stop_step and cadence.due(run.step):
                    checkpoint = save(run)
                    cadence.saved()
                    plotter.request()  # drawn in a background thread, off the training path
                    t_last = time.perf_counter()  # the next step's clips/s measures the step, not the save
                if interrupt_after and run.step - start == interrupt_after:
                    os.kill(os.getpid(), signal.SIGINT)
            interrupted = stop and run.step < stop_step
            del iterator
    finally:
        if prefetcher is not None:
            prefetcher.close()
        bar.close()
        if metrics is not None:
            metrics.close()
        if plotter is not None:
            plotter.wait()  # no redraw outlives the run (a NaN stop included)
    plot = None
    if writer:
        checkpoint = save(run)
        plot = plotter.finish()
    return PretrainResult(
        out=run.out,
        checkpoint=checkpoint,
        metrics=run.out / "metrics.jsonl",
        plot=plot,
        steps=run.step,
        samples=run.step * G,
        interrupted=interrupted,
        is_main=writer,
        encoder=run.encoder,
        objective=run.objective,
        config=cfg,
    )


def pretrain(
    cfg: PretrainSettings | Mapping[str, Any],
    *,
    resume: str | Path | None = None,
    progress: bool = True,
    on_step: Callable | None = None,
    log: Callable[[str], None] | None = None,
) -> PretrainResult:
    """Set up (or resume) and train one run (see :mod:`cstp_cli.engine.config`).

    ``cfg`` is the run's :class:`PretrainSettings`; with ``resume`` (a checkpoint) it is the
    mapping of settings given again on the command line (only those a resumed run may change).
    """
    device = (cfg.get("device") if isinstance(cfg, Mapping) else cfg.device) or "auto"
    with ddp.distributed(device) as ctx:  # torchrun's group, or one process
        return _pretrain(cfg, ctx, resume=resume, progress=progress, on_step=on_step, log=log)


#: Files a pretraining run leaves in its folder; any of them means the folder holds a run.
RUN_FILES = ("checkpoint.pt", "metrics.jsonl")


def check_run_out(out: Path, state: dict | None, ctx: ddp.DistContext) -> None:
    """Refuse (exit 2) a run folder that holds another run or cannot be written, on every rank.

    Continuing a checkpoint in its own folder (``--resume RUN/checkpoint.pt``) is the one
    case where the folder's run files are expected. Rank 0 checks; every rank raises the
    same :class:`UsageError` (so no rank waits for one that has stopped).
    """
    from cstp_cli.core.rundir import check_run_folder

    problem = None
    if ctx.is_main:
        same = state is not None and Path(state["_path"]).resolve().parent == out.resolve()
        ckpt = out / "checkpoint.pt"
        hint = f"--resume {ckpt}" if ckpt.is_file() else None
        try:
            check_run_folder(out, RUN_FILES, flag="-o", resume=same, continue_hint=hint)
        except UsageError as exc:
            problem = str(exc)
    problem = ddp.broadcast_object(problem)
    if problem:
        raise UsageError(problem)


def _pretrain(cfg: PretrainSettings | Mapping[str, Any], ctx: ddp.DistContext, *, resume: str | Path | None, progress: bool, on_step: Callable | None, log: Callable[[str], None] | None) -> PretrainResult:
    state = checkpointing.load_resume(resume) if resume else None
    if state is not None:
        cfg = checkpointing.resumed_config(state, cfg)
    cfg.out = ddp.broadcast_object(cfg.out)  # run folders named after the time must agree
    check_run_out(Path(cfg.out), state, ctx)  # before any model, data or cache work
    run = setup(cfg, state, ctx)
    run.out.mkdir(parents=True, exist_ok=True)
    if log is not None and ctx.is_main:
        log(
            f"pretraining {cfg.backbone} ({cfg.width}, D={run.feature_dim}) on {run.device}"
            + (f" × {ctx.world_size} ranks ({ctx.backend})" if ctx.distributed else "") + ": "
            f"{describe(run.objective)}; {len(run.dataset)} videos, {run.spe} steps/epoch × {cfg.epochs} epochs, "
            f"batch {cfg.batch_size}, clips {cfg.frames}×{cfg.clip_size}² from {run.frame_wh[0]}x{run.frame_wh[1]} frames"
            + f"; checkpoint every {cfg.checkpoint_every} and at the end"
            + (f"; resuming at step {run.step}" if state is not None else "")
        )
    return train(run, progress=progress, on_step=on_step, log=log)
