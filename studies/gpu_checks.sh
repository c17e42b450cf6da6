#!/usr/bin/env bash
# The GPU checks of optnas, in parts that each fit one device call: the CUDA tests, the
# throughput benchmark (both networks, torch.compile) and the pool-search benchmark.
# Results (logs, JSON, the README's tables) go to OUT_DIR (default ./gpu-out).
# Usage: bash studies/gpu_checks.sh [OUT_DIR] [PART ...]
#   PART: tests (at most 150 s), throughput (at most 180 s), pool (at most 240 s), or all.
# On a lent GPU with 15 minutes in all (machine start included): first, here,
# `bash studies/gpu_wheels.sh` (the image has no optuna); then one device call, carrying
# .whl, of `tests throughput` (timeout_s 360), and while the machine is warm (within 30 s)
# one of `pool` (timeout_s 260); then give it back. Each call's command starts with
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
#     --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit;
# and its OUT_DIR is $OUT. Every part writes its results as it goes: a part cut off by its
# time limit keeps what it measured.
set -uo pipefail
out="${1:-gpu-out}"
shift || true
parts="${*:-all}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD"
want() { [[ " $parts " == *" $1 "* || " $parts " == *" all "* ]]; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
df -h /dev/shm | tee -a "$out/gpu.txt"  # The pool shares the splits through it.
python3 -c "import torch, optuna; print('torch', torch.__version__, 'optuna', optuna.__version__)" \
  | tee -a "$out/gpu.txt"
if want tests; then
  # The GPU tests' file alone: no collection (nor doctests) of the rest of the suite.
  timeout 150 python3 -m pytest tests/test_gpu.py -m gpu -q -p no:cacheprovider 2>&1 \
    | tee "$out/gpu_tests.log"
fi
if want throughput; then
  # A pool after every conv: a quarter of the multiply-adds of the network measured first.
  timeout 70 python3 studies/gpu_throughput.py --pool-each --out "$out/throughput_pool_each.txt" \
    2>&1 | tee "$out/throughput_pool_each.log"
  # torch.compile's break-even, against (b) measured again in the same process; (a) and
  # (c) of the full-resolution network are in the README already (H200, H100).
  timeout 110 python3 studies/gpu_throughput.py --parts b --compile \
    --out "$out/throughput_compile.txt" 2>&1 | tee "$out/throughput_compile.log"
fi
if want pool; then
  timeout 240 python3 studies/pool_search.py --out "$out/pool_search.json" 2>&1 \
    | tee "$out/pool_search.log"
fi
