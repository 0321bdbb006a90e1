"""Cache codecs compared (issue 14 item 3): raw, lzf and jpeg rows of ``bench/data_pipeline.py``.

For each source set and codec: a cache is built from the same videos (one decoder process,
so the build time is per core), and the row reports the stored bytes per frame, the size a
UCF-101 (13,320 videos × ~7.2 s × 25 fps ≈ 2.40 M frames) and a Kinetics-400 (~240 k videos ×
10 s × 25 fps = 60 M frames) cache of that codec would take (bytes per frame × frames — an
extrapolation, not a measurement), the build time, clip pairs per CPU-second of one process
with torch threads 1 (T = 16, plan + read_pair (+ CPU decode) + collate: what one loader worker
core gives) and the PSNR of every cached frame vs the raw cache.

Two source sets: the rendered checkerboard-and-disc videos of ``data_pipeline.py`` (flat,
JPEG-friendly) and "photo pan" videos — a slow pan and zoom across a natural photograph
(matplotlib's sample ``grace_hopper.jpg``), H.264-encoded like the others — whose texture is
closer to real footage. Neither is UCF-101 or Kinetics: re-run with ``--videos DIR`` on real
videos for figures that transfer.

The CPU JPEG decoders are timed too (torchvision's batched ``decode_jpeg`` vs PIL) on the
jpeg cache's own frames.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np

UCF101_FRAMES = 13_320 * 7.2 * 25
K400_FRAMES = 240_000 * 10 * 25


def photo() -> np.ndarray | None:
    """uint8 [H, W, 3] natural photograph shipped with matplotlib, or None."""
    try:
        import matplotlib
        from PIL import Image

        path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
        return np.asarray(Image.open(path).convert("RGB"))
    except Exception:  # noqa: BLE001 - the photo set is skipped
        return None


def render_pan(img: np.ndarray, seed: int, frames: int = 300, size: tuple[int, int] = (320, 240)) -> np.ndarray:
    """uint8 [frames, H, W, 3]: a crop of ``img`` panning and zooming slowly (bilinear resize)."""
    from PIL import Image

    w, h = size
    ih, iw = img.shape[:2]
    rng = np.random.default_rng(seed)
    z0, z1 = rng.uniform(0.55, 0.95, 2)
    x0, y0 = rng.uniform(0, 1, 2)
    dx, dy = rng.uniform(-0.4, 0.4, 2)
    src = Image.fromarray(img)
    out = np.empty((frames, h, w, 3), np.uint8)
    for t in range(frames):
        a = t / max(frames - 1, 1)
        z = z0 + (z1 - z0) * a
        cw, ch = min(iw, int(iw * z)), min(ih, int(iw * z * h / w))
        cx = int(np.clip(x0 + dx * a, 0, 1) * (iw - cw))
        cy = int(np.clip(y0 + dy * a, 0, 1) * (ih - ch))
        out[t] = np.asarray(src.crop((cx, cy, cx + cw, cy + ch)).resize((w, h), Image.BILINEAR))
    return out


def ensure_pan_sources(folder: Path, count: int, frames: int) -> Path | None:
    from cstp_cli.data.video import write_video

    img = photo()
    if img is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(count):
        path = folder / f"pan_{k:02d}.mp4"
        if not path.exists():
            write_video(path, render_pan(img, k, frames), fps=25)
    return folder


def build_timed(folder: Path, out: Path, size, codec: str) -> tuple[Path, float]:
    """Build (never reused: the time is the point) with one decoder process."""
    from cstp_cli.data.cache import build_cache
    from cstp_cli.data.datasets import load_dataset

    out.unlink(missing_ok=True)
    index = load_dataset(folder, kind="unlabelled")
    compression, spec = ("lzf", "raw") if codec == "lzf" else ("none", codec)
    t0 = time.perf_counter()
    result = build_cache(folder, out=out, size=size, workers=1, compression=compression, codec=spec, progress=False, index=index)
    if result.path is None or result.failed:
        raise SystemExit(f"cache build failed: {result.failed}")
    return result.path, time.perf_counter() - t0


def stored_bytes(reader) -> int:
    """Bytes of the frame storage (the dataset on disk, compressed or not)."""
    import h5py

    with h5py.File(reader.path, "r") as f:
        ds = f["frames"] if reader.codec.is_raw else f["jpeg/data"]
        return int(ds.id.get_storage_size())


def all_frames(reader) -> np.ndarray:
    return np.concatenate([reader.read(v, np.arange(int(n))) for v, n in enumerate(reader.num_frames)])


def decoder_timing(reader, n: int = 600) -> str:
    """ms per frame of torchvision's batched CPU decode vs PIL on the cache's first n frames."""
    import torch
    from PIL import Image
    from torchvision.io import ImageReadMode, decode_jpeg

    blobs = [b.copy() for b in reader._open()[0].blobs(np.arange(min(n, reader.total_frames)))]
    tensors = [torch.from_numpy(b) for b in blobs]
    timings = {}
    for name, fn in (
        ("torchvision decode_jpeg(list)", lambda: decode_jpeg(tensors, mode=ImageReadMode.RGB)),
        ("PIL Image.open + asarray", lambda: [np.asarray(Image.open(io.BytesIO(b.tobytes())).convert("RGB")) for b in blobs]),
    ):
        fn()
        c0 = time.process_time()
        for _ in range(3):
            fn()
        timings[name] = (time.process_time() - c0) / 3 / len(blobs) * 1e3
    best = min(timings, key=timings.get)
    return "CPU JPEG decode per frame (CPU time): " + ", ".join(f"{k} {v:.3f} ms" for k, v in timings.items()) + f"; faster: {best}"


def codec_rows(sets: list[tuple[str, Path]], work: Path, size, codecs: list[str], pairs: int, batch: int, sample, run_loader) -> list[str]:
    """Markdown table lines (one row per source set × codec) plus the decoder timing line."""
    from cstp_cli.data.cache import CacheReader

    w, h = size
    lines = [
        "| sources | codec | bytes/frame | vs raw | UCF-101 (2.40 M frames) | K400 (60 M frames) | build s (1 core) | build ms/frame | pairs/s per CPU core | PSNR vs raw dB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for label, folder in sets:
        raw_frames = None
        raw_bpf = w * h * 3
        for codec in codecs:
            path, build_s = build_timed(folder, work / f"codec-{label}-{codec.replace(':', '')}.h5", size, codec)
            reader = CacheReader(path)
            frames_n = int(reader.total_frames)
            bpf = stored_bytes(reader) / frames_n
            fetch = lambda v, idx, out, r=reader: r.read_pair(v, idx, out=out)
            run_loader(fetch, sample, reader, min(100, pairs), batch, seed=2)  # warm-up
            _, per_cpu, _ = run_loader(fetch, sample, reader, pairs, batch, seed=3)
            decoded = all_frames(reader)
            if codec == "raw":
                raw_frames = decoded
            psnr = "exact" if raw_frames is None or np.array_equal(decoded, raw_frames) else f"{_psnr(raw_frames, decoded):.2f}"
            lines.append(
                f"| {label} | {reader.codec.spec if codec != 'lzf' else 'raw + lzf'} | {bpf / 1e3:.1f} kB | 1/{raw_bpf / bpf:.1f} | "
                f"{bpf * UCF101_FRAMES / 1e9:.0f} GB | {bpf * K400_FRAMES / 1e12:.2f} TB | {build_s:.1f} | {build_s / frames_n * 1e3:.2f} | "
                f"{per_cpu:.0f} | {psnr} |"
            )
            if not reader.codec.is_raw and not notes:
                notes.append(decoder_timing(reader))
    return lines + [""] + notes


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    from cstp_cli.data.cache.codec import psnr

    return psnr(a, b)
