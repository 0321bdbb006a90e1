"""Pretraining throughput: real ``cstp pretrain`` steps against a bare backbone loop.

(a) **bare**: the backbone passes a contrastive step makes — online forward + backward on
    both clips, plus target forwards (no grad) on both clips when the scheme has a target
    encoder (BYOL, MoCo) — with the same dtype/autocast, memory layout, compile flag, SGD
    step and grad-norm clip, on clips already on the device. No data, no augmentation, no
    heads: the ceiling.
(b) **cstp**: real pretraining steps (:func:`cstp_cli.engine.loop.pretrain`) fed from an HDF5
    cache through the DataLoader with every augmentation (plans, crop/resize, flip,
    photometric block, rotation) and the full objective (scheme + STOR + rot + pace heads).

Same batch, one run; prints clips/s of both, the ratio (b)/(a) and the device. Clips/s
counts clip pairs (one sample = two clips), the unit of ``--batch-size``. Runs without PyAV:
the frames are rendered with NumPy and written through ``cstp_cli.data.cache`` (h5py).

    python bench/pretrain_throughput.py --backbone r21d --batch 60 --precision bf16   # GPU
    python bench/pretrain_throughput.py --width tiny --batch 8 --frames 8 --clip-size 64 --steps 6  # CPU

Target on an H100/H200 (METHOD §6 batch 60, bf16): (b)/(a) >= 0.9 for r21d and r2plus1d18.
"""

from __future__ import annotations

import argparse
import copy
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cstp_cli.core.dist import resolve_device  # noqa: E402
from cstp_cli.engine import loop  # noqa: E402
from cstp_cli.engine.config import ObjectiveSettings, build_config  # noqa: E402
from cstp_cli.data.memcache import render_videos, write_cache  # noqa: E402
from cstp_cli.engine.optim import clip_gradients, make_sgd  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backbone", default="r21d")
    p.add_argument("--width", default="full", choices=("full", "tiny"))
    p.add_argument("--scheme", default="byol", help="contrastive scheme of (b); decides the target passes of (a)")
    p.add_argument("--batch", type=int, default=60, help="global batch (clip pairs per step)")
    p.add_argument("--frames", type=int, default=16, help="T")
    p.add_argument("--clip-size", type=int, default=112, help="S")
    p.add_argument("--size", default="171x128", help="cache frame size WxH")
    p.add_argument("--steps", type=int, default=20, help="timed steps of each loop")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (cudnn autotune, compile)")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="bf16", choices=("bf16", "fp32"))
    p.add_argument("--compile", action="store_true")
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--codec", default="raw", help="cache codec of (b): raw or jpeg[:Q] (jpeg: decoded on the GPU on CUDA)")
    p.add_argument("--steps-per-epoch", type=int, default=4, help="cache holds batch × this many videos")
    p.add_argument("--results", default=None, help="append a markdown row to this file")
    p.add_argument("--sync-report", action="store_true",
                   help="CUDA: count the host syncs of 3 steps after warm-up (torch.cuda.set_sync_debug_mode) and print where")
    return p.parse_args(argv)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_loop(args: argparse.Namespace, device: torch.device, has_target: bool) -> float:
    """(a): clips/s of the backbone passes alone (see the module docstring)."""
    from cstp_cli.plugins import get_registry

    torch.manual_seed(0)
    encoder = get_registry().backbone(args.backbone).build(width=args.width).to(device)
    if device.type == "cuda":
        encoder.to(memory_format=torch.channels_last_3d)
    target = copy.deepcopy(encoder).requires_grad_(False) if has_target else None
    forward = torch.compile(encoder) if args.compile else encoder
    params = [p for p in encoder.parameters() if p.requires_grad]
    opt = make_sgd(params, 0.03, 0.9, 5e-4)
    shape = (args.batch, 3, args.frames, args.clip_size, args.clip_size)
    x1 = loop.to_layout(torch.randn(shape, device=device), device)
    x2 = loop.to_layout(torch.randn(shape, device=device), device)
    encoder.train()

    def step() -> None:
        with loop.autocast_for(device, args.precision):
            y1, y2 = forward(x1), forward(x2)
            if target is not None:
                with torch.no_grad():
                    target(x1), target(x2)
            loss = y1.float().square().mean() + y2.float().square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        clip_gradients(params, 18.0)
        opt.step()

    for _ in range(args.warmup):
        step()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync(device)
    return args.batch * args.steps / (time.perf_counter() - t0)


def make_cache(args: argparse.Namespace, folder: Path) -> Path:
    """A cache of ``batch × steps_per_epoch`` rendered videos (2·T frames, enough for pace 2)."""
    w, h = (int(v) for v in args.size.lower().split("x"))
    count = args.batch * args.steps_per_epoch
    frames = max(2 * args.frames + 2, 24)
    return write_cache(render_videos(count, frames, (w, h), seed=0), folder / "bench.h5", codec=args.codec)


def cstp_loop(args: argparse.Namespace, cache: Path, out: Path) -> tuple[float, bool, str]:
    """(b): clips/s of real pretraining steps; also whether the scheme has a target encoder."""
    cfg = build_config(data_given=True, flags=dict(
        data=str(cache), backbone=args.backbone, width=args.width, batch_size=args.batch,
        frames=args.frames, clip_size=args.clip_size, workers=args.workers, device=args.device,
        precision=args.precision, compile=args.compile, out=str(out), epochs=1000,
        max_steps=args.warmup + args.steps + 1,
    ))
    cfg.objective = ObjectiveSettings(contrastive=args.scheme, pretext="stor,rot,pace", augment="pace,rot")
    cfg.pretext = {"pace": {"rates": [1, 2]}}
    stamps: list[tuple[int, float]] = []
    info: dict = {}
    watch = args.sync_report and torch.cuda.is_available() and str(resolve_device(args.device)).startswith("cuda")

    def on_step(run, step, frames, batch, values) -> None:
        stamps.append((step, time.perf_counter()))  # values were read on the host: the step is done
        if watch and step in (args.warmup, args.warmup + 3):  # steps warmup+1 .. warmup+3 are watched
            torch.cuda.set_sync_debug_mode("warn" if step == args.warmup else 0)
        info["spe"] = run.spe
        scheme = run.objective.scheme
        info["target"] = scheme is not None and any(m is not run.encoder and type(m) is type(run.encoder) for m in scheme.modules())
        info["device"] = str(run.device)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loop.pretrain(cfg, progress=False, on_step=on_step)
    if watch:
        report_syncs([w for w in caught if "called a synchronizing" in str(w.message)], steps=3)
    spe = info["spe"]
    # time from the end of step `warmup` on; skip intervals holding an epoch-end checkpoint
    timed = [(b[1] - a[1]) for a, b in zip(stamps, stamps[1:]) if a[0] >= args.warmup and a[0] % spe != 0]
    return args.batch * len(timed) / sum(timed), info["target"], info["device"]


def report_syncs(caught: list, steps: int) -> None:
    """Print how many host syncs ``steps`` pretraining steps made, grouped by source line."""
    from collections import Counter

    where = Counter(f"{Path(w.filename).name}:{w.lineno}" for w in caught)
    print(f"host syncs in {steps} steps: {len(caught)} ({len(caught) / steps:.1f} per step)")
    for place, n in where.most_common(12):
        print(f"  {n:4d}  {place}")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory(prefix="cstp-bench-") as tmp:
        t0 = time.perf_counter()
        cache = make_cache(args, Path(tmp))
        print(f"cache: {args.batch * args.steps_per_epoch} videos at {args.size} in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
        real, has_target, _ = cstp_loop(args, cache, Path(tmp) / "run")
    bare = bare_loop(args, device, has_target)
    ratio = real / bare
    name = device_name(device)
    precision = args.precision if device.type == "cuda" else "fp32"  # autocast is CUDA-only
    row = (
        f"| {name} | {args.backbone} ({args.width}) | {args.scheme} | {args.batch} | {args.frames}×{args.clip_size}² "
        f"| {precision}{' +compile' if args.compile else ''} | {args.workers}{'' if args.codec == 'raw' else ', ' + args.codec + ' cache'} | {bare:.1f} | {real:.1f} | {ratio:.2f} |"
    )
    print(f"device: {name}")
    print(f"(a) bare backbone loop ({'with' if has_target else 'no'} target passes): {bare:.1f} clips/s")
    print(f"(b) cstp pretrain steps (cache + augmentation + objective):       {real:.1f} clips/s")
    print(f"ratio (b)/(a): {ratio:.2f}")
    print(row)
    if args.results:
        with open(args.results, "a") as fh:
            fh.write(row + "\n")


if __name__ == "__main__":
    main()
