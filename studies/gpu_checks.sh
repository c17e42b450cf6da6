#!/usr/bin/env bash
# The GPU checks of optnas, in parts that each fit one device call: the CUDA tests, the
# throughput benchmark (both networks, torch.compile) and the pool-search benchmark.
# Results (logs, JSON, the README's tables) go to OUT_DIR (default ./gpu-out).
# Usage: bash studies/gpu_checks.sh [OUT_DIR] [PART ...]
#   PART: tests (about 2 min), throughput (about 3 min), pool (about 4 min), or all (default).
# On a lent GPU with 15 minutes in all, run `tests throughput` in one call (at most 400 s
# here), then `pool` (at most 280 s) while the machine is warm.
set -uo pipefail
out="${1:-gpu-out}"
shift || true
parts="${*:-all}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD"
want() { [[ " $parts " == *" $1 "* || " $parts " == *" all "* ]]; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import torch, optuna; print('torch', torch.__version__, 'optuna', optuna.__version__)" \
  | tee -a "$out/gpu.txt"
if want tests; then
  # The GPU tests' file alone: no collection (nor doctests) of the rest of the suite.
  timeout 170 python3 -m pytest tests/test_gpu.py -m gpu -q -p no:cacheprovider 2>&1 \
    | tee "$out/gpu_tests.log"
fi
if want throughput; then
  # A pool after every conv: a quarter of the multiply-adds of the network measured first.
  timeout 130 python3 studies/gpu_throughput.py --pool-each --out "$out/throughput_pool_each.txt" \
    2>&1 | tee "$out/throughput_pool_each.log"
  # torch.compile's break-even, against (b) measured again in the same process; (a) and
  # (c) of the full-resolution network are in the README already (H200, H100).
  timeout 100 python3 studies/gpu_throughput.py --parts b --compile \
    --out "$out/throughput_compile.txt" 2>&1 | tee "$out/throughput_compile.log"
fi
if want pool; then
  timeout 280 python3 studies/pool_search.py --out "$out/pool_search.json" 2>&1 \
    | tee "$out/pool_search.log"
fi
