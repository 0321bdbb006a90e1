#!/usr/bin/env bash
# The prepared GPU run: CUDA checks, then the pretraining and export throughput benchmarks.
# Needs no network and no PyAV (frames are rendered with NumPy, caches written with h5py).
#   OUT=/tmp/gpu bash bench/gpu_run.sh
set -uo pipefail
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-$(mktemp -d)}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import sys, torch, onnxruntime as o; print('python', sys.version.split()[0], 'torch', torch.__version__, 'onnxruntime', o.__version__, o.get_available_providers())" | tee -a "$OUT/gpu.txt"
timeout 180 python3 bench/cuda_checks.py 2>&1 | tee "$OUT/cuda_checks.log"
for bb in r21d r2plus1d18; do
  timeout 170 python3 bench/pretrain_throughput.py --backbone "$bb" --batch 60 --precision bf16 --steps 20 --warmup 5 \
    --workers 12 --results "$OUT/pretrain_throughput.md" 2>&1 | tee -a "$OUT/pretrain.log"
done
# issue 14: nvJPEG decode parity and the side-stream prefetch, then the jpeg cache's rate (target >= 0.9x raw)
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/cstp_cli/engine/test_prefetch.py -k cuda 2>&1 | tee "$OUT/jpeg_cuda_tests.log"
timeout 170 python3 bench/pretrain_throughput.py --backbone r21d --batch 60 --precision bf16 --steps 20 --warmup 5 \
  --workers 12 --codec jpeg --results "$OUT/pretrain_throughput.md" 2>&1 | tee -a "$OUT/pretrain.log"
timeout 120 python3 bench/export_throughput.py --backbone r21d --batch 16 --iters 20 --results "$OUT/export_throughput.md" 2>&1 | tee "$OUT/export.log"
