"""Throughput of a full-width encoder: PyTorch eager vs its ONNX export on onnxruntime.

Same machine, same backbone (full width, random weights), same batch and clip shape, in one
run: builds the encoder, writes a checkpoint, exports it with ``cstp_cli.deploy.export.export_onnx``
(parity verified), then times ``--iters`` batches of each path after ``--warmup`` batches and
prints clips/s, the ratio onnxruntime / PyTorch and the provider that ran. A row is appended
to ``bench/results/export_throughput.md``.

Runs without PyAV (it is blocked on purpose) and without network. Examples::

    python bench/export_throughput.py                              # r21d, batch 8, 16×112², auto device
    python bench/export_throughput.py --device cpu --batch 2 --iters 3 --warmup 1
    python bench/export_throughput.py --backbone c3d --device cuda --provider tensorrt
    python bench/export_throughput.py --backbone all --iters 10   # every backbone, ~1 min each on a GPU

On CUDA both paths take a float32 input already on the GPU (onnxruntime through IO binding);
PyTorch runs eager fp32 with torch's default TF32 setting, onnxruntime with its defaults.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.modules.setdefault("av", None)  # prove the benchmark needs no PyAV: `import av` now fails

import numpy as np  # noqa: E402
import torch  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "export_throughput.md"
HEADER = (
    "# Export throughput: PyTorch eager vs onnxruntime (full width, random weights)\n\n"
    "Written by `bench/export_throughput.py`; one row per run. clips/s counts clips of "
    "3×T×S×S; ratio = onnxruntime / PyTorch.\n\n"
    "| date (UTC) | machine | device | backbone | batch | T×S² | exporter | provider | torch clips/s | ort clips/s | ratio | max parity diff / tol | note |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="r21d", help="a backbone, a comma-separated list, or 'all'")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--provider", choices=("auto", "cpu", "cuda", "tensorrt"), default=None,
                   help="onnxruntime provider (default: cuda on a CUDA device, else cpu)")
    p.add_argument("--exporter", choices=("dynamo", "legacy"), default="dynamo")
    p.add_argument("--threads", type=int, default=None, help="CPU threads of both torch and onnxruntime (default: each one's own)")
    p.add_argument("--note", default="", help="free text for the results row (e.g. machine load)")
    p.add_argument("--results", type=Path, default=RESULTS, help="markdown file to append the row to ('-' for none)")
    return p.parse_args(argv)


def machine(device: str) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    text = f"{cpu}, {os.cpu_count()} cores"
    if device == "cuda":
        text = f"{torch.cuda.get_device_name(0)}; {text}"
    return text


def time_it(fn, x, iters: int, warmup: int, sync) -> float:
    """Seconds per call of ``fn(x)`` over ``iters`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn(x)
    sync()
    start = time.perf_counter()
    for _ in range(iters):
        fn(x)
    sync()
    return (time.perf_counter() - start) / iters


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from cstp_cli.plugins import get_registry

    names = get_registry().names("backbone") if args.backbone == "all" else args.backbone.split(",")
    for name in names:
        run_one(args, name.strip())
    return 0


def run_one(args: argparse.Namespace, backbone: str) -> None:
    """Export ``backbone`` (full width), time both paths, print and record one row."""
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    provider = args.provider or ("cuda" if device == "cuda" else "cpu")

    from cstp_cli.core.checkpoint import atomic_save, encoder_checkpoint
    from cstp_cli.deploy.export import export_onnx
    from cstp_cli.deploy.ort import OnnxEncoder
    from cstp_cli.plugins import get_registry

    torch.manual_seed(0)
    model = get_registry().backbone(backbone).build(width="full").eval()
    with tempfile.TemporaryDirectory() as folder:
        ckpt = encoder_checkpoint(
            kind="pretrain", backbone=backbone, width="full", feature_dim=model.feature_dim,
            encoder_state=model.state_dict(), frames=args.frames, size=args.size, frame_wh=(171, 128),
        )
        atomic_save(ckpt, Path(folder) / "enc.pt")
        t0 = time.perf_counter()
        result = export_onnx(Path(folder) / "enc.pt", Path(folder) / "enc.onnx", exporter=args.exporter, provider=provider)
        export_s = time.perf_counter() - t0
        worst = max(p.max_abs_diff / p.tolerance for p in result.parity)
        encoder = OnnxEncoder(Path(folder) / "enc.onnx", provider=provider, threads=args.threads)

        shape = (args.batch, 3, args.frames, args.size, args.size)
        x = (torch.rand(shape, generator=torch.Generator().manual_seed(0)) * 2 - 1).to(device)
        model = model.to(device)
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        x_ort = x if device == "cuda" else x.numpy()

        @torch.inference_mode()
        def eager(inp):
            return model(inp)

        t_torch = time_it(eager, x, args.iters, args.warmup, sync)
        t_ort = time_it(encoder, x_ort, args.iters, args.warmup, sync)
        with torch.inference_mode():
            diff = float(np.abs(encoder(x_ort) - model(x).float().cpu().numpy()).max())

    torch_cps, ort_cps = args.batch / t_torch, args.batch / t_ort
    ratio = ort_cps / torch_cps
    where = machine(device)
    print(f"machine: {where}")
    print(f"torch {torch.__version__}, backbone {backbone} (full), batch {args.batch}, clip 3×{args.frames}×{args.size}², device {device}")
    print(f"export: {args.exporter}, {export_s:.1f} s, parity worst diff/tol {worst:.3g}")
    print(f"PyTorch eager : {torch_cps:9.1f} clips/s")
    print(f"onnxruntime   : {ort_cps:9.1f} clips/s  (provider {encoder.provider})")
    print(f"ratio ort/torch: {ratio:.2f}  (max|diff| on the timed batch {diff:.2e})")
    if str(args.results) != "-":
        args.results.parent.mkdir(parents=True, exist_ok=True)
        new = not args.results.exists()
        with open(args.results, "a") as fh:
            if new:
                fh.write(HEADER)
            stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
            fh.write(
                f"| {stamp} | {where} | {device} | {backbone} | {args.batch} | {args.frames}×{args.size}² | "
                f"{args.exporter} | {encoder.provider} | {torch_cps:.1f} | {ort_cps:.1f} | {ratio:.2f} | {worst:.3g} | {args.note} |\n"
            )
        print(f"appended to {args.results}")


if __name__ == "__main__":
    sys.exit(main())
