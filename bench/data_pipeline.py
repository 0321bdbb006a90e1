"""Data-pipeline benchmark (issue 2 item 9): clip pairs from the HDF5 cache vs decoding on the fly.

Prints figures; it is not a test. One process, compression none, warm page cache. Source
videos: 20 × 300 frames of 320×240 H.264 at the encoder's default keyframe interval,
rendered here (or the videos of ``--videos DIR``). The same sampled clip pairs (2 × 16
frames, paces 1, 2, 4, 8, random starts — the real :class:`cstp_cli.plans.sampling.PairSampler`
with stor, pace and rot active, or plain NumPy plans with ``--numpy-plans``) are obtained

(a) decoding on the fly with PyAV as a good loader does (:func:`cstp_cli.data.video.decode_span`:
    seek to the keyframe before the first needed frame, decode only to the last, threaded
    decoding, the cache's resize), one span per clip, merged when the clips overlap;
(b) from the cache (:meth:`cstp_cli.data.cache.CacheReader.read_pair`), including plan sampling
    and collation (each pair written into its slot of a fresh batch array, plans through
    ``collate_plans``), as a DataLoader worker's batch would be.

Both loops sample the plans and collate batches the same way. On a lossless fixture the two
paths must give identical frames (asserted). Targets: (b) >= 500 pairs/s and >= 50× (a).

(c) cache codecs (issue 14, :mod:`data_codecs`): raw, raw + lzf and jpeg caches of the same
    sources (the rendered set and a photo-pan set): bytes per frame, UCF-101 / K400 sizes
    extrapolated from them, build time on one core, pairs per CPU core, PSNR vs raw.
    Targets: jpeg <= 1/6 of raw bytes with PSNR >= 36 dB at quality 90; >= 100 pairs/s per core.

    python bench/data_pipeline.py                  # render, cache, measure (~1-2 min)
    python bench/data_pipeline.py --videos DIR     # your own videos
    python bench/data_pipeline.py --codecs ""      # skip (c)
Results are appended to ``bench/results/data_pipeline.md``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
T = 16
PACES = (1, 2, 4, 8)


# --------------------------------------------------------------------------- sources


def render_video(seed: int, frames: int = 300, size: tuple[int, int] = (320, 240)) -> np.ndarray:
    """uint8 [frames, H, W, 3]: a textured background and a moving, colour-changing disc."""
    w, h = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    background = (((xx // 16 + yy // 16) % 2) * 60)[..., None] + rng.integers(0, 128, 3)
    background = background.astype(np.uint8)
    cx, cy = rng.uniform(40, w - 40), rng.uniform(40, h - 40)
    vx, vy = rng.uniform(-3, 3, 2)
    out = np.empty((frames, h, w, 3), np.uint8)
    for t in range(frames):
        out[t] = background
        disc = (xx - (cx + vx * t) % w) ** 2 + (yy - (cy + vy * t) % h) ** 2 < 30**2
        out[t][disc] = (255, (7 * t) % 256, (seed * 40) % 256)
    return out


def ensure_sources(folder: Path, count: int, frames: int, lossless: bool) -> Path:
    """Render ``count`` videos into ``folder`` unless they are already there."""
    from cstp_cli.data.video import write_video

    folder.mkdir(parents=True, exist_ok=True)
    for k in range(count):
        path = folder / f"bench_{k:02d}.{'mkv' if lossless else 'mp4'}"
        if not path.exists():
            write_video(path, render_video(k, frames), fps=25, lossless=lossless)
    return folder


def build(folder: Path, out: Path, size: tuple[int, int], workers: int | None) -> Path:
    from cstp_cli.data.cache import build_cache
    from cstp_cli.data.datasets import load_dataset

    index = load_dataset(folder, kind="unlabelled")
    result = build_cache(folder, out=out, size=size, workers=workers, compression="none", progress=False, index=index, reuse=True)
    if result.path is None or result.failed:
        raise SystemExit(f"cache build failed: {result.failed}")
    return result.path


# --------------------------------------------------------------------------- plans


def make_sampler(numpy_plans: bool):
    """A ``sample(i, video, num_frames, frame_wh) -> (plan or None, idx int[2, T])`` function."""
    if not numpy_plans:
        try:
            from cstp_cli.commands.data_pairs import build_tasks
            from cstp_cli.plans.sampling import PairSampler, plan_rng

            sampler = PairSampler(build_tasks("stor,rot,pace", "pace,rot", []), T=T)

            def sample(i, video, num_frames, frame_wh):
                plan = sampler.plan(video, num_frames, frame_wh, plan_rng(0, 0, i))
                return plan, np.asarray(plan.idx, dtype=np.int64)

            return sample, "cstp_cli.plans.sampling.PairSampler (stor, rot, pace)"
        except Exception as exc:  # noqa: BLE001 - the bench still runs with NumPy plans
            print(f"note: PairSampler unavailable ({type(exc).__name__}: {exc}); NumPy plans", file=sys.stderr)

    def sample(i, video, num_frames, frame_wh):
        rng = np.random.default_rng([0, 0, i])
        pace = int(rng.choice([s for s in PACES if (T - 1) * s + 1 <= num_frames] or [1]))
        span = (T - 1) * pace
        starts = rng.integers(0, max(1, num_frames - span), size=2)
        return None, starts[:, None] + pace * np.arange(T)[None, :]

    return sample, "NumPy (pace uniform in 1,2,4,8, independent uniform starts)"


def plan_list(sample, reader, n: int, seed: int):
    """The n sampled pairs: (video, plan, idx) with videos drawn uniformly."""
    videos = np.random.default_rng(seed).integers(0, reader.num_videos, size=n)
    out = []
    for i, v in enumerate(videos.tolist()):
        plan, idx = sample(i, v, int(reader.num_frames[v]), reader.frame_wh)
        out.append((v, plan, idx))
    return out


# --------------------------------------------------------------------------- loaders


def decode_pair(path: str, idx: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Loader (a): uint8 [2, T, H, W, 3] by seeking and decoding only the needed spans."""
    from cstp_cli.data.video import decode_span

    spans = sorted((int(c.min()), int(c.max()) + 1) for c in idx)
    merged = [list(spans[0])]
    for a, b in spans[1:]:
        if a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    out = np.empty((*idx.shape, size[1], size[0], 3), np.uint8)
    for a, b in merged:
        frames = decode_span(path, a, b, size, threads=True)
        for c in range(2):
            sel = (idx[c] >= a) & (idx[c] < b)
            out[c][sel] = frames[idx[c][sel] - a]
    return out


def run_loader(fetch, sample, reader, n: int, batch: int, seed: int, keep: int = 0) -> tuple[float, float, list]:
    """Sample n pairs, fetch each pair's frames into its slot of a fresh batch array with
    ``fetch(video, idx, out)`` and collate the plans (``collate_plans``) per batch.

    Returns pairs per wall-clock second, pairs per CPU second of this process (all its
    threads; robust to other processes sharing the machine) and the batches (torch uint8
    [B, 2, T, H, W, 3]) holding the first ``keep`` pairs (the others are dropped, as a
    training step would consume them)."""
    import torch

    from cstp_cli.api import collate_plans

    w, h = reader.frame_wh
    videos = np.random.default_rng(seed).integers(0, reader.num_videos, size=n).tolist()
    batches = []
    t0, c0 = time.perf_counter(), time.process_time()
    for first in range(0, n, batch):
        chunk = videos[first : first + batch]
        frames = np.empty((len(chunk), 2, T, h, w, 3), np.uint8)
        plans = []
        for k, v in enumerate(chunk):
            plan, idx = sample(first + k, v, int(reader.num_frames[v]), reader.frame_wh)
            fetch(v, idx, frames[k])
            plans.append(plan)
        if plans[0] is not None:
            collate_plans(plans)
        if first < keep:
            batches.append(torch.from_numpy(frames))
    return n / (time.perf_counter() - t0), n / max(time.process_time() - c0, 1e-9), batches


# --------------------------------------------------------------------------- report


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    from importlib.metadata import version

    return (
        f"{cpu}, {os.cpu_count()} logical cores ({usable} usable), load {os.getloadavg()[0]:.2f}; "
        f"Python {platform.python_version()}, torch {torch.__version__}, av {version('av')}, "
        f"h5py {version('h5py')}, numpy {np.__version__}, {platform.system()} {platform.release()}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--videos", type=Path, help="folder of source videos (default: render 20 × 300 frames 320×240)")
    ap.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "cstp-bench-data", help="work folder")
    ap.add_argument("--size", default="171x128", help="cache frame size WxH")
    ap.add_argument("--pairs-cache", type=int, default=3000, help="pairs timed from the cache")
    ap.add_argument("--pairs-decode", type=int, default=60, help="pairs timed by decoding on the fly")
    ap.add_argument("--batch", type=int, default=16, help="pairs per collated batch")
    ap.add_argument("--workers", type=int, default=None, help="decoder processes for the cache build")
    ap.add_argument("--numpy-plans", action="store_true", help="plain NumPy plans instead of PairSampler")
    ap.add_argument("--codecs", default="raw,lzf,jpeg", help="codec rows (c): comma-separated raw, lzf, jpeg[:Q]; empty to skip")
    ap.add_argument("--codec-pairs", type=int, default=600, help="pairs timed per codec row")
    ap.add_argument("--pan-videos", type=int, default=8, help="photo-pan source videos of 300 frames for (c); 0 to skip the set")
    ap.add_argument("--no-write", action="store_true", help="do not append to bench/results/data_pipeline.md")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from cstp_cli.core.options import parse_size
    from cstp_cli.data.cache import CacheReader

    size = parse_size(args.size)
    t0 = time.perf_counter()
    src = args.videos or ensure_sources(args.work / "h264", 20, 300, lossless=False)
    lossless = ensure_sources(args.work / "lossless", 2, 120, lossless=True)
    cache_path = build(src, args.work / f"bench-{src.name}-{args.size}.h5", size, args.workers)
    lossless_cache = build(lossless, args.work / f"bench-lossless-{args.size}.h5", size, args.workers)
    prep = time.perf_counter() - t0
    sample, plans_kind = make_sampler(args.numpy_plans)

    # identical frames on the lossless fixture: decode-on-the-fly == cache
    lr = CacheReader(lossless_cache)
    for v, _, idx in plan_list(sample, lr, 12, seed=1):
        a = decode_pair(str(Path(lr.attrs["source_root"]) / lr.paths[v]), idx, size)
        b = lr.read_pair(v, idx)
        assert np.array_equal(a, b), f"decode-on-the-fly and cache differ on {lr.paths[v]}"

    reader = CacheReader(cache_path)
    root = Path(reader.attrs["source_root"])
    files = [str(root / p) for p in reader.paths]
    frames_total = int(reader.num_frames.sum())
    cache_fetch = lambda v, idx, out: reader.read_pair(v, idx, out=out)  # noqa: E731

    def decode_fetch(v, idx, out):
        out[...] = decode_pair(files[v], idx, size)

    for f in [*files, str(cache_path)]:  # warm page cache: sources and cache read once
        with open(f, "rb") as fh:
            while fh.read(1 << 24):
                pass
    run_loader(cache_fetch, sample, reader, min(300, args.pairs_cache), args.batch, seed=2)  # warm-up
    keep = args.pairs_decode
    rate_b, cpu_b, batches_b = run_loader(cache_fetch, sample, reader, args.pairs_cache, args.batch, seed=3, keep=keep)
    rate_a, cpu_a, batches_a = run_loader(decode_fetch, sample, reader, args.pairs_decode, args.batch, seed=3, keep=keep)
    same = np.array_equal(np.concatenate(batches_a), np.concatenate(batches_b)[: args.pairs_decode])
    path_kind = "memory map of the uncompressed chunks" if reader._open()[1] is not None else "h5py runs/single frames"
    ratio = rate_b / rate_a

    lines = [
        f"machine: {machine()}",
        f"sources: {reader.num_videos} videos, {frames_total} frames, {'given: ' + str(args.videos) if args.videos else 'rendered 320x240 H.264 (libx264 default keyframe interval)'}",
        f"cache: {args.size}, compression none, {cache_path.stat().st_size / 1e6:.0f} MB; preparation {prep:.1f} s",
        f"plans: {plans_kind}; T={T}, batch {args.batch}; one process, torch threads 1",
        "lossless fixture: decode-on-the-fly frames == cache frames (12 pairs): ok",
        f"same pairs, same frames on the lossy sources ({args.pairs_decode} pairs): {'yes' if same else 'NO'}",
        f"(a) decode on the fly (seek + threaded decode_span): {rate_a:8.1f} pairs/s wall, {cpu_a:8.1f} per CPU-s ({args.pairs_decode} pairs)",
        f"(b) HDF5 cache (plan + read_pair + collate):         {rate_b:8.1f} pairs/s wall, {cpu_b:8.1f} per CPU-s ({args.pairs_cache} pairs; {path_kind})",
        f"ratio (b)/(a): {ratio:.0f}x wall, {cpu_b / cpu_a:.0f}x CPU   targets (wall): (b) >= 500 pairs/s "
        f"{'met' if rate_b >= 500 else 'MISSED'}, >= 50x (a) {'met' if ratio >= 50 else 'MISSED'}",
    ]
    codecs = [c.strip() for c in args.codecs.split(",") if c.strip()]
    if codecs:
        from data_codecs import codec_rows, ensure_pan_sources

        sets = [("given" if args.videos else "rendered", src)]
        pan = ensure_pan_sources(args.work / "pan", args.pan_videos, 300) if args.pan_videos and not args.videos else None
        if pan is not None:
            sets.append(("photo pan", pan))
        t_c = time.perf_counter()
        table = codec_rows(sets, args.work, size, codecs, args.codec_pairs, args.batch, sample, run_loader)
        lines += [
            f"(c) cache codecs at {args.size}, T={T}, {args.codec_pairs} pairs a row, one process, torch threads 1; "
            "build with one decoder process; UCF-101/K400 sizes are bytes/frame x frames (extrapolated); "
            f"{time.perf_counter() - t_c:.0f} s:",
            "",
            *table,
        ]
    print("\n".join(lines))
    if not args.no_write:
        results = HERE / "results" / "data_pipeline.md"
        results.parent.mkdir(parents=True, exist_ok=True)
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        with open(results, "a", encoding="utf-8") as fh:
            if results.stat().st_size == 0:
                fh.write("# Data pipeline benchmark (bench/data_pipeline.py)\n")
            fh.write(f"\n## {stamp}\n\n" + "\n".join(line if line.startswith("|") or not line else f"- {line}" for line in lines) + "\n")
        print(f"appended to {results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
