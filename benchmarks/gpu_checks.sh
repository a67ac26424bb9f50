#!/bin/bash
# Every GPU check of issue #18 in one run, for a session lent a GPU (device `run`, carrying the
# built extension python/s2ssm/_core.abi3.so): the GPU tests, the kernel benchmark and the
# training-step scaling, each writing under $OUT (default ./gpu_out). About 6-8 minutes on an
# H200; the sizes are the issue's. Usage: bash benchmarks/gpu_checks.sh
set -uo pipefail
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
export PYTHONPATH=$PWD/python${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" \
  | tee -a "$OUT/gpu.txt"
timeout 240 python -m pytest -q -m gpu tests/test_selective_scan.py tests/test_slot_attention.py \
  2>&1 | tee "$OUT/pytest_gpu.log"
timeout 240 python benchmarks/bench_kernels.py --json "$OUT/bench_kernels.json" \
  2>&1 | tee "$OUT/bench_kernels.log"
timeout 180 python benchmarks/bench_train.py --device cuda --lengths 32,128,512,2048,8192 \
  --json "$OUT/bench_train.json" 2>&1 | tee "$OUT/bench_train.log"
