#!/usr/bin/env bash
# The GPU checks of optnas, in one go: the CUDA tests, then the throughput and pool-search
# benchmarks. Results (logs, JSON, the README's table) go to the folder given, or ./gpu-out.
# Usage: bash studies/gpu_checks.sh [OUT_DIR]
set -uo pipefail
out="${1:-gpu-out}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import torch, optuna; print('torch', torch.__version__, 'optuna', optuna.__version__)" \
  | tee -a "$out/gpu.txt"
timeout 150 python3 -m pytest -m gpu -q -p no:cacheprovider 2>&1 | tee "$out/gpu_tests.log"
timeout 150 python3 studies/gpu_throughput.py --compile --out "$out/throughput.txt" 2>&1 \
  | tee "$out/throughput.log"
timeout 250 python3 studies/pool_search.py --out "$out/pool_search.json" 2>&1 \
  | tee "$out/pool_search.log"
