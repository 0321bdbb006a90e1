"""Supervised downstream training: fine-tuning and the linear probe (METHOD §6).

Recipe (cstp defaults): SGD momentum 0.9, lr 0.02, weight decay 5e-4, batch 60, 100 epochs,
lr ×0.1 when the validation loss stops improving; training clips of T frames at pace 4
(``--clip-pace``; ``--augment pace`` draws the pace among the feasible 1, 2, 4, 8 instead),
random-resized crop + horizontal flip + colour jitter (``--augment rot`` adds a random
quarter turn), training only. Head: the authors' code's ``L2 → BN → Linear`` (flagged in
METHOD §6; ``head="fc"`` gives the paper's plain linear layer). Validation: 10 % of the
train split, stratified by class, videos of one UCF group kept together; the test split is
never looked at until the end. Test: 10 uniformly spaced clips at the clip pace, centre
crop, mean of softmax (video level) and per-clip accuracy (clip level).

The linear probe is the same loop with the backbone frozen and in eval mode.

Randomness follows METHOD §0: the clip of sample i in epoch e is drawn from
``np.random.default_rng([seed, e, i])``, the epoch's order from ``(seed, e)``.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from cstp_cli.evaluation import protocols as ev
from cstp_cli.core.checkpoint import encoder_checkpoint, load_checkpoint
from cstp_cli.errors import CheckpointError, TrainingError, UsageError

PACES = (1, 2, 4, 8)
AUGMENTS = ("pace", "rot")


@dataclass
class SupervisedConfig:
    """Settings of one fine-tune or linear-probe run (METHOD §6 defaults)."""

    mode: str = "finetune"  # "finetune" | "linear"
    epochs: int = 100
    batch_size: int = 60
    lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 5e-4
    plateau_patience: int = 10
    plateau_factor: float = 0.1
    frames: int = 16
    clip_size: int = 112
    clip_pace: int = 4
    test_clips: int = 10
    head: str = "code"  # "code" (L2 → BN → Linear) | "fc"
    augment: list[str] = field(default_factory=list)
    val_fraction: float = 0.1
    seed: int = 0
    workers: int = 2
    device: str = "auto"
    jitter_p: float = 0.8
    bn_reestimate: bool = False  # re-estimate BN statistics on train clips first (random-init probe)

    def validate(self) -> None:
        if self.mode not in ("finetune", "linear"):
            raise UsageError(f"unknown mode {self.mode!r}")
        if self.head not in ("code", "fc"):
            raise UsageError(f"--head must be code or fc, got {self.head!r}")
        bad = [a for a in self.augment if a not in AUGMENTS]
        if bad:
            raise UsageError(f"--augment accepts {', '.join(AUGMENTS)}; got {bad[0]!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise UsageError("--epochs and --batch-size must be >= 1 and --lr > 0")
        if self.clip_pace < 1 or self.frames < 1 or self.clip_size < 8:
            raise UsageError("--clip-pace and --frames must be >= 1, --clip-size >= 8")


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


# --------------------------------------------------------------------------- training clips


def random_box(W: int, H: int, rng: np.random.Generator) -> np.ndarray:
    """Random-resized-crop box ``int64[4]`` (x, y, w, h): area U[0.2, 1]·W·H, aspect log-uniform
    in [3/4, 4/3], w/h swapped with p ½, up to 10 tries, else the largest centred square (METHOD §2.3)."""
    for _ in range(10):
        area = rng.uniform(0.2, 1.0) * W * H
        aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        w, h = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
        if rng.random() < 0.5:
            w, h = h, w
        if 1 <= w <= W and 1 <= h <= H:
            x, y = int(rng.integers(0, W - w + 1)), int(rng.integers(0, H - h + 1))
            return np.array([x, y, w, h], dtype=np.int64)
    s = min(W, H)
    return np.array([(W - s) // 2, (H - s) // 2, s, s], dtype=np.int64)


def train_clip_indices(num_frames: int, T: int, pace: int, rng: np.random.Generator) -> np.ndarray:
    """``int64[T]`` frames of a training clip at ``pace``: uniform start; a short video loops."""
    steps = pace * np.arange(T, dtype=np.int64)
    span = (T - 1) * pace + 1
    if num_frames < span:
        return steps % num_frames
    return int(rng.integers(0, num_frames - span + 1)) + steps


def draw_clip(num_frames: int, frame_wh: tuple[int, int], cfg: SupervisedConfig, rng: np.random.Generator) -> dict:
    """The plan of one training clip (pure NumPy): frame indices, box, flip, rot90, jitter."""
    T = cfg.frames
    pace = cfg.clip_pace
    if "pace" in cfg.augment:
        fits = [p for p in PACES if (T - 1) * p + 1 <= num_frames] or [1]
        pace = int(fits[rng.integers(len(fits))])
    idx = train_clip_indices(num_frames, T, pace, rng)
    box = random_box(int(frame_wh[0]), int(frame_wh[1]), rng)
    flip = bool(rng.random() < 0.5)
    rot = int(rng.integers(4)) if "rot" in cfg.augment else 0
    jitter = bool(rng.random() < cfg.jitter_p)
    factors = np.array(
        [rng.uniform(0.6, 1.4), rng.uniform(0.6, 1.4), rng.uniform(0.6, 1.4), rng.uniform(-0.1, 0.1)], dtype=np.float32
    )
    order = rng.permutation(4).astype(np.int64)
    return {"idx": idx, "box": box, "flip": flip, "rot90": rot, "jitter": jitter, "factors": factors, "order": order}


class TrainClipDataset:
    """Training clips for fine-tuning (a map-style dataset, epoch-aware via :meth:`set_epoch`).

    Item i of epoch e: ``(frames uint8[T, H, W, 3], plan arrays, label)`` of video
    ``videos[perm_e[i]]`` with ``perm_e`` drawn from ``(seed, e)`` and the clip from
    ``(seed, e, i)`` (METHOD §0), so batches do not depend on the worker count.
    """

    def __init__(self, reader: Any, videos: np.ndarray, labels: np.ndarray, cfg: SupervisedConfig):
        self.reader, self.videos, self.labels, self.cfg = reader, np.asarray(videos), np.asarray(labels), cfg
        self.num_frames = np.asarray(reader.num_frames, dtype=np.int64)
        self.frame_wh = tuple(int(v) for v in reader.frame_wh)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return int(self.videos.size)

    def __getitem__(self, i: int) -> tuple:
        perm = np.random.default_rng([self.cfg.seed, self.epoch]).permutation(self.videos.size)
        v = int(self.videos[perm[i]])
        plan = draw_clip(int(self.num_frames[v]), self.frame_wh, self.cfg, np.random.default_rng([self.cfg.seed, self.epoch, i]))
        unique, inverse = np.unique(plan["idx"], return_inverse=True)
        frames = np.asarray(self.reader.read(v, unique))[inverse]
        arrays = (plan["box"], np.array([plan["flip"], plan["jitter"]]), np.int64(plan["rot90"]), plan["factors"], plan["order"])
        return frames, arrays, int(self.labels[perm[i]])


def _collate_train(items: list) -> tuple:
    import torch

    frames = torch.from_numpy(np.stack([it[0] for it in items]))
    box = torch.from_numpy(np.stack([it[1][0] for it in items]))
    flags = torch.from_numpy(np.stack([it[1][1] for it in items]))
    rot = torch.as_tensor([int(it[1][2]) for it in items])
    factors = torch.from_numpy(np.stack([it[1][3] for it in items]))
    order = torch.from_numpy(np.stack([it[1][4] for it in items]))
    labels = torch.as_tensor([it[2] for it in items], dtype=torch.int64)
    return frames, (box, flags, rot, factors, order), labels


def _gray(x: Any) -> Any:
    return (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)


def _hue_shift(x: Any, shift: Any) -> Any:
    """Rotate hue by ``shift`` (fraction of a turn) in YIQ space; x ``[B, 3, T, S, S]`` in [0, 1]."""
    import torch

    y = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    i = 0.596 * x[:, 0] - 0.274 * x[:, 1] - 0.322 * x[:, 2]
    q = 0.211 * x[:, 0] - 0.523 * x[:, 1] + 0.312 * x[:, 2]
    a = (2 * math.pi * shift).view(-1, 1, 1, 1)
    i2, q2 = i * torch.cos(a) - q * torch.sin(a), i * torch.sin(a) + q * torch.cos(a)
    r = y + 0.956 * i2 + 0.621 * q2
    g = y - 0.272 * i2 - 0.647 * q2
    b = y - 1.106 * i2 + 1.703 * q2
    return torch.stack([r, g, b], dim=1)


def augment_clips(frames: Any, plans: tuple, size: int, device: Any) -> Any:
    """Apply training plans on the device in a few batched ops.

    Crop + resize + flip in one ``affine_grid``/``grid_sample``; colour jitter (brightness,
    contrast, saturation, hue; one draw per clip, shared by its frames, in the drawn order);
    quarter turns after resizing (METHOD §2.4); normalisation ``x/255·2 − 1``.

    Args:
        frames: ``uint8[B, T, H, W, 3]``.
        plans: ``(box int64[B,4], flags bool[B,2] (flip, jitter), rot int64[B], factors float[B,4], order int64[B,4])``.

    Returns:
        ``float32[B, 3, T, size, size]``.
    """
    import torch
    import torch.nn.functional as F

    box, flags, rot, factors, order = (p.to(device) for p in plans)
    x = frames.to(device, non_blocking=True)
    B, T, H, W, _ = x.shape
    x = x.permute(0, 4, 1, 2, 3).float().div_(255.0)  # B,3,T,H,W
    bx, by, bw, bh = (box[:, k].float() for k in range(4))
    sx, sy = bw / W, bh / H
    cx, cy = (2 * bx + bw) / W - 1, (2 * by + bh) / H - 1
    sx = torch.where(flags[:, 0], -sx, sx)
    theta = torch.zeros(B, 2, 3, device=device)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = sx, cx, sy, cy
    grid = F.affine_grid(theta, (B, 3 * T, size, size), align_corners=False)
    x = F.grid_sample(x.reshape(B, 3 * T, H, W), grid, mode="bilinear", padding_mode="border", align_corners=False)
    x = x.reshape(B, 3, T, size, size)
    jit = flags[:, 1].view(-1, 1, 1, 1, 1)
    out = x
    for step in range(4):
        kind = order[:, step]
        f = factors.gather(1, kind.view(-1, 1)).view(-1, 1, 1, 1, 1)
        bright = out * f
        mean = _gray(out).mean(dim=(2, 3, 4), keepdim=True)
        contrast = (out - mean) * f + mean
        g = _gray(out)
        sat = (out - g) * f + g
        hue = _hue_shift(out, f.view(-1))
        k = kind.view(-1, 1, 1, 1, 1)
        new = torch.where(k == 0, bright, torch.where(k == 1, contrast, torch.where(k == 2, sat, hue)))
        out = torch.where(jit, new, out).clamp_(0, 1)
    x = out
    if bool((rot != 0).any()):
        x = torch.stack([torch.rot90(x[b], int(rot[b]), dims=(2, 3)) for b in range(B)])
    return x * 2.0 - 1.0




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
        ev.reestimate_bn(backbone, reader, train, device=device, T=cfg.frames, stride=cfg.clip_pace,
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

    data = TrainClipDataset(reader, train, labels_all[train], cfg)
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
        data, batch_sampler=batches, num_workers=max(0, cfg.workers), collate_fn=_collate_train,
        pin_memory=str(device).startswith("cuda"),
    )
    model.train(True)
    cuda = str(device).startswith("cuda")
    used = len(loader) * cfg.batch_size if loader.drop_last else len(data)
    bar = progress_factory(used, desc) if progress_factory else None
    total, correct, seen, t0 = 0.0, 0, 0, time.perf_counter()
    for frames, plans, labels in loader:
        clips = augment_clips(frames, plans, cfg.clip_size, device)
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
