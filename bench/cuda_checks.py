"""CUDA checks that need a GPU (run by bench/gpu_run.sh on a lent GPU machine; no PyAV).

Each check prints one ``PASS``/``FAIL``/``SKIP`` line with its figures:

1. device augmentation: ``augment_batch`` on CUDA equals the CPU result on the same plans;
2. pretraining on CUDA (bf16 autocast, channels_last_3d): a few real steps of the full
   objective with the full-width r21d, finite losses, and a checkpoint that loads on the CPU
   with ``weights_only=True``;
3. evaluation on CUDA: retrieval features of the checkpoint on CUDA equal the CPU ones;
4. onnxruntime on the GPU: export the checkpoint, run it with the CUDA provider and through
   IO binding of a CUDA tensor, compare with PyTorch (SKIP when this onnxruntime has no
   CUDA provider).

    PYTHONPATH=. python bench/cuda_checks.py
"""

from __future__ import annotations

import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import os

RESULTS: list[str] = []
#: A dry run on a machine without a GPU: CSTP_CHECK_DEVICE=cpu CSTP_CHECK_WIDTH=tiny.
DEV = os.environ.get("CSTP_CHECK_DEVICE", "cuda")
WIDTH = os.environ.get("CSTP_CHECK_WIDTH", "full")


def report(status: str, name: str, detail: str) -> None:
    line = f"{status} {name}: {detail}"
    RESULTS.append(line)
    print(line, flush=True)


def check_augment() -> None:
    from cstp_cli.api import collate_plans
    from cstp_cli.augment import augment_batch
    from cstp_cli.plugins import get_registry
    from cstp_cli.plans.sampling import PairSampler, plan_rng

    reg = get_registry()
    tasks = [reg.pretext(n).build() for n in ("pace", "stor", "rot")]
    sampler = PairSampler(tasks, T=16)
    plans = [sampler.plan(i, 200, (171, 128), plan_rng(0, 0, i)) for i in range(8)]
    batch = collate_plans(plans)
    frames = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (8, 2, 16, 128, 171, 3), dtype=np.uint8))
    cpu = augment_batch(frames, batch, tasks, out_size=112)
    gpu = augment_batch(frames.to(DEV), batch.to(DEV), tasks, out_size=112).cpu()
    diff = (cpu - gpu).abs()
    ok = diff.max().item() < 2e-2 and diff.mean().item() < 1e-4
    report("PASS" if ok else "FAIL", "augment cuda==cpu", f"max|diff| {diff.max().item():.2e}, mean {diff.mean().item():.2e} (range [-1, 1])")


def check_pretrain(tmp: Path) -> Path:
    from cstp_cli.core.checkpoint import load_encoder
    from cstp_cli.engine import loop
    from cstp_cli.engine.config import build_config
    from cstp_cli.data.memcache import render_videos, write_cache

    labels = np.repeat(np.arange(4), 6)
    train = np.tile([True, True, True, True, False, False], 4)
    cache = write_cache(render_videos(24, 40, (171, 128), seed=1), tmp / "c.h5", labels=labels, train=train)
    cfg = build_config(data_given=True, flags=dict(
        data=str(cache), backbone="r21d", width=WIDTH, batch_size=8, frames=16, clip_size=112, workers=2,
        device=DEV, precision="bf16", out=str(tmp / "run"), epochs=2, max_steps=4,
    ))
    cfg.pretext = {"pace": {"rates": [1, 2]}}
    losses: list[float] = []
    t0 = time.perf_counter()
    loop.pretrain(cfg, progress=False, on_step=lambda run, step, f, b, values: losses.append(float(values["loss"])))
    ckpt = tmp / "run" / "checkpoint.pt"
    enc = load_encoder(ckpt)
    ok = len(losses) >= 3 and all(np.isfinite(losses)) and ckpt.exists() and next(enc.parameters()).device.type == "cpu"
    report("PASS" if ok else "FAIL", "pretrain cuda bf16", f"{len(losses)} steps, losses {[round(v, 3) for v in losses]}, {time.perf_counter() - t0:.1f}s, checkpoint loads on CPU")
    return ckpt


def check_features(ckpt: Path, tmp: Path) -> None:
    from cstp_cli.data.cache import CacheReader
    from cstp_cli.core.checkpoint import load_encoder
    from cstp_cli.evaluation.features import torch_encoder, video_features

    reader = CacheReader(tmp / "c.h5")
    videos = np.arange(6)
    out = {}
    for key, dev in (("cpu", "cpu"), ("dev", DEV)):
        enc = load_encoder(ckpt)
        out[key] = video_features(torch_encoder(enc, torch.device(dev)), reader, videos, T=16, stride=1, num_clips=10,
                                  size=112, batch_videos=2, workers=0, progress=None)
    diff = np.abs(out["cpu"] - out["dev"]).max()
    report("PASS" if diff < 2e-3 else "FAIL", "retrieval features cuda==cpu", f"max|diff| {diff:.2e} (L2-normalised features, fp32)")


def check_onnx(ckpt: Path, tmp: Path) -> None:
    from cstp_cli.deploy import ort
    from cstp_cli.core.checkpoint import load_encoder
    from cstp_cli.deploy.export import export_onnx

    providers = ort.available_providers()
    if DEV != "cuda" or "CUDAExecutionProvider" not in providers:
        report("SKIP", "onnxruntime CUDA provider", f"this onnxruntime offers {providers}")
        return
    export_onnx(ckpt, tmp / "m.onnx", provider="cuda")
    enc = ort.OnnxEncoder(tmp / "m.onnx", provider="cuda")
    x = torch.randn(3, 3, 16, 112, 112)
    ref = load_encoder(ckpt)(x).detach().numpy()
    got = enc(x.numpy())
    bound = enc(x.to(DEV))
    d1, d2 = np.abs(got - ref).max(), np.abs(bound - ref).max()
    scale = np.abs(ref).max()
    ok = d1 <= 1e-3 * scale + 1e-6 and d2 <= 1e-3 * scale + 1e-6
    report("PASS" if ok else "FAIL", "onnxruntime cuda + io binding", f"provider {enc.provider}; max|diff| {d1:.2e} (numpy), {d2:.2e} (IO-bound CUDA tensor), max|ref| {scale:.2e}")


def main() -> int:
    name = torch.cuda.get_device_name(0) if DEV == "cuda" else "CPU (dry run)"
    print(f"torch {torch.__version__}, cuda {torch.version.cuda}, device {name}", flush=True)
    with tempfile.TemporaryDirectory(prefix="cstp-cuda-") as name:
        tmp = Path(name)
        ckpt = None
        for check in ("augment", "pretrain", "features", "onnx"):
            try:
                if check == "augment":
                    check_augment()
                elif check == "pretrain":
                    ckpt = check_pretrain(tmp)
                elif ckpt is not None and check == "features":
                    check_features(ckpt, tmp)
                elif ckpt is not None and check == "onnx":
                    check_onnx(ckpt, tmp)
            except Exception as exc:  # report and go on with the next check
                traceback.print_exc()
                report("FAIL", check, f"{type(exc).__name__}: {exc}")
    print("\n".join(RESULTS))
    return 0 if all(not r.startswith("FAIL") for r in RESULTS) else 1


if __name__ == "__main__":
    sys.exit(main())
