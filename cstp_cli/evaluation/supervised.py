"""Supervised downstream training: fine-tuning and the linear probe (METHOD §6).

Recipe (cstp defaults): SGD momentum 0.9, lr 0.02, weight decay 5e-4, batch 60, 100 epochs,
lr ×0.1 when the validation loss stops improving; training clips of T frames at pace 4
(``--clip-pace``; ``--augment pace`` draws the pace among the feasible 1, 2, 4, 8 instead),
random-resized crop + horizontal flip + colour jitter (``--augment rot`` adds a random
quarter turn), training only — drawn as one-clip plans (:mod:`cstp_cli.plans.clips`) and
applied by pretraining's device augmentation (:mod:`cstp_cli.evaluation.train_clips`). Head: the authors' code's ``L2 → BN → Linear`` (flagged in
METHOD §6; ``head="fc"`` gives the paper's plain linear layer). Validation: 10 % of the
train split, stratified by class, videos of one UCF group kept together; the test split is
never looked at until the end. Test: 10 uniformly spaced clips at the clip pace, centre
crop, mean of softmax (video level) and per-clip accuracy (clip level).

The linear probe is the same loop with the backbone frozen and in eval mode.

Randomness follows METHOD §0: the clip of sample i in epoch e is drawn from
``plan_rng(seed, e, i)``, the epoch's order from ``epoch_order(seed, e)``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from cstp_cli.core.checkpoint import encoder_checkpoint, load_checkpoint
from cstp_cli.errors import CheckpointError, TrainingError, UsageError
from cstp_cli.evaluation import protocols as ev
from cstp_cli.evaluation.features import reestimate_bn
from cstp_cli.evaluation.settings import FinetuneSettings
from cstp_cli.evaluation.train_clips import TrainClipDataset, augment_training_clips, collate_train
from cstp_cli.plans.clips import ClipSampler


_D = FinetuneSettings  # the user-facing defaults are declared there, once


@dataclass
class SupervisedConfig:
    """The resolved settings of one fine-tune or linear-probe run (METHOD §6 defaults).

    :class:`~cstp_cli.evaluation.settings.FinetuneSettings` declares what users set (and its
    defaults are these); this adds what a run resolves (``frames``/``clip_size`` from the
    encoder, ``augment`` as names) and the recipe's fixed constants.
    """

    mode: str = "finetune"  # "finetune" | "linear"
    epochs: int = _D.epochs
    batch_size: int = _D.batch_size
    lr: float = _D.lr
    momentum: float = 0.9
    weight_decay: float = _D.weight_decay
    plateau_patience: int = _D.plateau_patience
    plateau_factor: float = 0.1
    frames: int = 16  # --init random's; a checkpoint's own otherwise
    clip_size: int = 112
    clip_pace: int = _D.clip_pace
    test_clips: int = _D.test_clips
    head: str = _D.head  # "code" (L2 → BN → Linear) | "fc"
    augment: list[str] = field(default_factory=list)
    val_fraction: float = 0.1
    seed: int = _D.seed
    workers: int = _D.workers
    device: str = _D.device
    bn_reestimate: bool = False  # re-estimate BN statistics on train clips first (random-init probe)

    def validate(self) -> None:
        if self.mode not in ("finetune", "linear"):
            raise UsageError(f"unknown mode {self.mode!r}")
        if self.head not in ("code", "fc"):
            raise UsageError(f"--head must be code or fc, got {self.head!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise UsageError("--epochs and --batch-size must be >= 1 and --lr > 0")
        if self.clip_pace < 1 or self.frames < 1 or self.clip_size < 8:
            raise UsageError("--clip-pace and --frames must be >= 1, --clip-size >= 8")
        ClipSampler(self.frames, self.clip_pace, self.augment)  # refuses an unknown --augment


# --------------------------------------------------------------------------- validation split


def validation_split(
    labels: np.ndarray, groups: Sequence[Any] | None, train: np.ndarray, fraction: float = 0.1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Carve a validation set from the train split (METHOD §6 "validation").

    Stratified: about ``fraction`` of each class's train videos, at least one group per class
    when the class has two groups or more. Groups: videos sharing ``(label, group)`` (UCF-101's
    ``gNN``) go to the same side; videos without a group are groups of one.

    Args:
        labels: ``int64[V]`` labels of all videos of the cache.
        groups: per-video group names of the cache (``None``/empty entries: no group).
        train: ``int64[n]`` the train split's video indices (the test split is never passed).

    Returns:
        ``(train', val)``: disjoint sorted ``int64`` arrays whose union is ``train``.
    """
    rng = np.random.default_rng([seed, 7919])
    train = np.asarray(train, dtype=np.int64)
    val: list[int] = []
    for c in np.unique(labels[train]):
        members = train[labels[train] == c]
        by_group: dict[Any, list[int]] = {}
        for v in members:
            g = groups[v] if groups is not None and len(groups) > v else None
            key = ("g", g) if g not in (None, "") else ("v", int(v))
            by_group.setdefault(key, []).append(int(v))
        keys = sorted(by_group, key=str)
        if len(keys) < 2 or fraction <= 0:
            continue
        target = max(1, int(round(fraction * members.size)))
        taken = 0
        for j in rng.permutation(len(keys)):
            size = len(by_group[keys[j]])
            if taken >= target:
                break
            if taken + size >= members.size:  # keep at least one group for training
                continue
            val.extend(by_group[keys[j]])
            taken += size
    val_arr = np.array(sorted(val), dtype=np.int64)
    rest = np.setdiff1d(train, val_arr)
    return rest, val_arr


# --------------------------------------------------------------------------- model


def build_head(feature_dim: int, num_classes: int, kind: str = "code") -> Any:
    """The classifier head: ``float[B, D] → float[B, C]``.

    ``"code"``: L2 normalise → BatchNorm1d(D) → Linear(D, C) (the authors' code, METHOD §6);
    ``"fc"``: Linear(D, C) (the paper).
    """
    import torch.nn as nn
    import torch.nn.functional as F

    class L2Norm(nn.Module):
        def forward(self, x):  # noqa: D401 - tiny module
            return F.normalize(x, dim=1)

    if kind == "code":
        return nn.Sequential(L2Norm(), nn.BatchNorm1d(feature_dim), nn.Linear(feature_dim, num_classes))
    return nn.Sequential(nn.Linear(feature_dim, num_classes))


class Classifier:
    """Backbone + head; with ``frozen`` the backbone stays in eval mode under ``no_grad``."""

    def __init__(self, backbone: Any, head: Any, frozen: bool):
        import torch.nn as nn

        self.backbone, self.head, self.frozen = backbone, head, frozen
        self.modules = nn.ModuleDict({"backbone": backbone, "head": head})
        if frozen:
            for p in backbone.parameters():
                p.requires_grad_(False)

    def parameters(self) -> list:
        return list(self.head.parameters()) if self.frozen else list(self.modules.parameters())

    def train(self, on: bool = True) -> None:
        self.head.train(on)
        self.backbone.train(on and not self.frozen)

    def to(self, device: Any) -> "Classifier":
        self.modules.to(device)
        return self

    def __call__(self, x: Any) -> Any:
        import torch

        if self.frozen:
            with torch.no_grad():
                y = self.backbone(x)
            return self.head(y.float())
        return self.head(self.backbone(x).float())


# --------------------------------------------------------------------------- evaluation


def classify_videos(
    model: Classifier, reader: Any, videos: np.ndarray, cfg: SupervisedConfig, device: Any, num_clips: int,
    progress: Callable[[int], None] | None = None,
) -> Any:
    """Logits ``float32[V, K, C]`` of ``num_clips`` uniformly spaced clips per video (centre crop)."""
    import torch

    ds = ev.VideoClipDataset(reader, videos, cfg.frames, cfg.clip_pace, num_clips)
    loader = ev.clip_loader(ds, max(1, cfg.batch_size // num_clips), cfg.workers, device)
    crop = ev.center_crop_side(reader.frame_wh, cfg.clip_size)
    model.train(False)
    out = None
    cuda = str(device).startswith("cuda")
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
        for frames, ids in loader:
            b, K = frames.shape[:2]
            clips = ev.preprocess_clips(frames.reshape(b * K, *frames.shape[2:]), cfg.clip_size, crop, device)
            logits = model(clips).float().cpu().reshape(b, K, -1)
            if out is None:
                out = torch.zeros(len(ds), K, logits.shape[-1])
            out[ids] = logits
            if progress:
                progress(b)
    return out


def test_report(logits: Any, labels: np.ndarray) -> dict[str, float]:
    """Video-level top-1/top-5 (mean softmax over clips) and clip-level top-1, in percent."""
    import torch

    probs = ev.aggregate_softmax(logits)
    video = ev.topk_accuracy(probs, labels, (1, 5))
    clip_pred = torch.as_tensor(logits).argmax(-1)
    clip_acc = (clip_pred == torch.as_tensor(labels)[:, None]).float().mean().item() * 100.0
    return {"video_top1": video["top1"], "video_top5": video["top5"], "clip_top1": clip_acc}


# --------------------------------------------------------------------------- the run


@dataclass
class RunResult:
    """What one fold's run produced."""

    fold: int
    metrics: dict[str, float]
    checkpoint: Path
    history: list[dict] = field(default_factory=list)


def _state(model: Classifier, opt: Any, sched: Any, epoch: int, samples: int, cfg: SupervisedConfig, info: dict) -> dict:
    return encoder_checkpoint(
        kind=cfg.mode,
        backbone=info["backbone"],
        width=info["width"],
        feature_dim=info["feature_dim"],
        encoder_state={k: v.detach().cpu() for k, v in model.backbone.state_dict().items()},
        frames=cfg.frames,
        size=cfg.clip_size,
        frame_wh=info["frame_wh"],
        head={k: v.detach().cpu() for k, v in model.head.state_dict().items()},
        optimizer=opt.state_dict(),
        scheduler=sched.state_dict(),
        epoch=int(epoch),
        samples_consumed=int(samples),
        config={**asdict(cfg), **{k: v for k, v in info.items() if k not in ("frame_wh",)}},
    )


def run_supervised(
    cfg: SupervisedConfig,
    reader: Any,
    fold: int,
    backbone: Any,
    info: dict,
    out_dir: Path,
    resume: bool = False,
    progress_factory: Callable[[int, str], Any] | None = None,
    log: Callable[[str], None] = lambda s: None,
) -> RunResult:
    """Train a classifier on ``fold``'s train split, validate on the carved set, test on its test split.

    Args:
        backbone: the encoder module (already initialised: pretrained weights or random).
        info: ``backbone``, ``width``, ``feature_dim``, ``frame_wh``, ``init`` (recorded).
        out_dir: where ``checkpoint.pt`` goes (every epoch and at the end, atomically; the final
            one also holds the test results).
        resume: continue from ``out_dir/checkpoint.pt`` at its next epoch.
        progress_factory: ``(total, description) -> bar`` with ``update(n)`` and ``close()``.

    Returns:
        :class:`RunResult` with ``video_top1``, ``video_top5``, ``clip_top1`` (test split).
    """
    import torch

    from cstp_cli.core import dist as ddp

    cfg.validate()
    ctx = ddp.init_distributed(cfg.device or "auto")
    device = ctx.device
    torch.manual_seed(cfg.seed)
    train_all = ev.split_indices(reader, fold, "train")
    test = ev.split_indices(reader, fold, "test")
    labels_all = np.asarray(reader.labels, dtype=np.int64)
    ev.require_labels(reader, train_all, "train")
    ev.require_labels(reader, test, "test")
    num_classes = int(max(len(getattr(reader, "classes", []) or []), labels_all.max() + 1))
    groups = getattr(reader, "groups", None)
    train, val = validation_split(labels_all, groups, train_all, cfg.val_fraction, cfg.seed)
    out_dir = Path(out_dir)
    last = out_dir / "checkpoint.pt"
    log(f"split {fold}: {train.size} train, {val.size} validation (carved from train), {test.size} test videos")

    if cfg.bn_reestimate and not (resume and last.is_file()):
        reestimate_bn(backbone, reader, train, device=device, T=cfg.frames, stride=cfg.clip_pace,
                         size=cfg.clip_size, batch_videos=max(1, cfg.batch_size // cfg.test_clips), workers=cfg.workers)
    head = build_head(int(info["feature_dim"]), num_classes, cfg.head)
    model = Classifier(backbone, head, frozen=cfg.mode == "linear").to(device)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=cfg.plateau_factor, patience=cfg.plateau_patience)
    start_epoch, samples, history = 0, 0, []
    if resume and last.is_file():
        start_epoch, samples, history = _resume(last, model, opt, sched, cfg)
        log(f"resumed from {last} after epoch {start_epoch}")
    elif resume:
        log(f"no checkpoint at {last}: split {fold} starts from epoch 1")
    net = ddp.wrap_for_ddp(ddp.CallModule(model.modules, model), ctx)  # the model itself in one process

    sampler = ClipSampler(cfg.frames, cfg.clip_pace, cfg.augment)
    data = TrainClipDataset(reader, train, labels_all[train], sampler, cfg.seed)
    for epoch in range(start_epoch, cfg.epochs):
        data.set_epoch(epoch)
        stats = _train_epoch(model, net, data, opt, cfg, device, ctx, progress_factory, f"{cfg.mode} split {fold} epoch {epoch + 1}/{cfg.epochs}")
        samples += len(data)
        entry = {"epoch": epoch + 1, "lr": opt.param_groups[0]["lr"], **stats}
        if val.size:
            vlogits = ddp.sharded_map(val, lambda v: classify_videos(model, reader, v, cfg, device, 1))
            vloss = torch.nn.functional.cross_entropy(vlogits[:, 0], torch.as_tensor(labels_all[val])).item()
            vacc = test_report(vlogits, labels_all[val])["clip_top1"]
            sched.step(vloss)
            entry.update(val_loss=vloss, val_top1=vacc)
        history.append(entry)
        log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in entry.items()))
        ckpt = _state(model, opt, sched, epoch + 1, samples, cfg, info)
        ckpt["history"] = history
        ddp.save_on_main(ckpt, last)

    bar = progress_factory(test.size, f"test split {fold}") if progress_factory else None
    logits = ddp.sharded_map(test, lambda v: classify_videos(model, reader, v, cfg, device, cfg.test_clips, bar.update if bar else None))
    if bar:
        bar.close()
    metrics = test_report(logits, labels_all[test])
    final = _state(model, opt, sched, cfg.epochs, samples, cfg, info)
    final.update(history=history, results={"fold": fold, **metrics}, classes=list(getattr(reader, "classes", []) or []))
    ddp.save_on_main(final, last)
    return RunResult(fold, metrics, last, history)


def _resume(path: Path, model: Classifier, opt: Any, sched: Any, cfg: SupervisedConfig) -> tuple[int, int, list]:
    ckpt = load_checkpoint(path)
    if ckpt.get("kind") != cfg.mode or "head" not in ckpt:
        raise CheckpointError(f"{path} is not a {cfg.mode} checkpoint; --resume continues a run in the same --out")
    model.backbone.load_state_dict(ckpt["encoder"])
    model.head.load_state_dict(ckpt["head"])
    opt.load_state_dict(ckpt["optimizer"])
    sched.load_state_dict(ckpt["scheduler"])
    return int(ckpt["epoch"]), int(ckpt.get("samples_consumed", 0)), list(ckpt.get("history", []))


def _train_epoch(model: Classifier, net: Any, data: TrainClipDataset, opt: Any, cfg: SupervisedConfig, device: Any,
                 ctx: Any, progress_factory: Callable | None, desc: str) -> dict[str, float]:
    import torch
    import torch.nn.functional as F

    from cstp_cli.core import dist as ddp

    batches = ddp.ShardedBatchSampler(range(len(data)), cfg.batch_size, ctx.rank, ctx.world_size, drop_last=len(data) > cfg.batch_size)
    loader = torch.utils.data.DataLoader(
        data, batch_sampler=batches, num_workers=max(0, cfg.workers), collate_fn=collate_train,
        pin_memory=str(device).startswith("cuda"),
    )
    model.train(True)
    cuda = str(device).startswith("cuda")
    used = len(loader) * cfg.batch_size if loader.drop_last else len(data)
    bar = progress_factory(used, desc) if progress_factory else None
    total, correct, seen, t0 = 0.0, 0, 0, time.perf_counter()
    for frames, plans, labels in loader:
        clips = augment_training_clips(frames, plans, cfg.clip_size, device)
        labels = labels.to(device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            logits = net(clips)
        loss = F.cross_entropy(logits.float(), labels)
        if ddp.any_rank(not torch.isfinite(loss)):
            raise TrainingError(f"{desc}: the loss became {loss.item()}; lower --lr (the last good checkpoint is kept)")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        n = labels.numel()
        total += loss.item() * n
        correct += int((logits.argmax(1) == labels).sum())
        seen += n
        if bar:
            bar.update(n)
    if bar:
        bar.close()
    total, correct, seen = (sum(v) for v in zip(*ddp.gather_objects((total, correct, seen))))  # over ranks
    return {"train_loss": total / max(1, seen), "train_top1": 100.0 * correct / max(1, seen),
            "clips_per_s": seen / max(1e-9, time.perf_counter() - t0)}
