#!/usr/bin/env bash
# The prepared GPU run (about 5 minutes on one H200): CUDA checks, nvJPEG decode parity, then
# pretraining throughput of r21d at B = 60, bf16 from a raw and from a jpeg cache (issue 14: jpeg
# >= 0.9x raw), with the host syncs of 3 steps counted, and the compiled step against a compiled
# bare loop, with recompiles and graph breaks counted. Needs no network and no PyAV (frames are
# rendered with NumPy, caches written with h5py).
#   OUT=/tmp/gpu bash bench/gpu_run.sh
set -uo pipefail
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-$(mktemp -d)}
R="$OUT/pretrain_throughput.md"
T0=$SECONDS
stamp() { echo "== $1 at +$((SECONDS - T0))s" | tee -a "$OUT/pretrain.log"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import sys, torch, torchvision, onnxruntime as o; print('python', sys.version.split()[0], 'torch', torch.__version__, 'torchvision', torchvision.__version__, 'onnxruntime', o.__version__, o.get_available_providers())" | tee -a "$OUT/gpu.txt"
nproc | tee -a "$OUT/gpu.txt"
if [ -z "${SKIP_CHECKS:-}" ]; then  # SKIP_CHECKS=1: throughput only (a rerun)
  stamp "cuda checks"
  timeout 150 python3 bench/cuda_checks.py 2>&1 | tee "$OUT/cuda_checks.log"
fi
stamp "cuda tests (nvJPEG parity, prefetch stream, sync-free augmentation)"
timeout 90 python3 -m pytest -q -p no:cacheprovider tests/cstp_cli/engine/test_prefetch.py tests/cstp_cli/test_augment.py -k "cuda or prefetch" 2>&1 | tee "$OUT/cuda_tests.log"
for codec in raw jpeg; do
  stamp "r21d $codec"
  timeout 150 python3 bench/pretrain_throughput.py --backbone r21d --batch 60 --precision bf16 --steps 30 --warmup 6 \
    --workers 12 --codec "$codec" --sync-report --results "$R" 2>&1 | tee -a "$OUT/pretrain.log"
done
stamp "r21d raw --compile"
TORCH_LOGS=recompiles,graph_breaks timeout 200 python3 bench/pretrain_throughput.py --backbone r21d --batch 60 --precision bf16 \
  --steps 30 --warmup 8 --workers 12 --compile --results "$R" > "$OUT/compile.log" 2>&1
tail -6 "$OUT/compile.log" | tee -a "$OUT/pretrain.log"
echo "recompile lines: $(grep -ci 'recompil' "$OUT/compile.log"), graph-break lines: $(grep -ci 'graph break' "$OUT/compile.log")" | tee -a "$OUT/pretrain.log"
stamp "done"
