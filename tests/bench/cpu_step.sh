#!/usr/bin/env bash
# cpu_step.sh — training tokens/s of xlmc (CPU, fp32) against PyTorch running transformers'
# XLMWithLMHeadModel (causal=True) on the same shapes with the same thread count, measured in
# one run; prints both and their ratio. It reports, it does not judge: exit 0 unless a side
# fails to run (77 = skipped when torch/transformers are missing).
#
# usage: tests/bench/cpu_step.sh [CPU_STEP_BINARY] [DIM LAYERS HEADS VOCAB B T WARMUP TIMED]
#   CPU_STEP_BINARY defaults to build/tests/bench/bench_cpu_step (cmake --build build).
# Threads: XLMC_BENCH_THREADS (default 1), applied to OpenMP, OpenBLAS and torch alike.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-$here/../../build/tests/bench/bench_cpu_step}
shift || true
threads=${XLMC_BENCH_THREADS:-1}
if [ ! -x "$bin" ]; then
  echo "cpu_step.sh: $bin is not built (cmake --build build)" >&2
  exit 1
fi
if ! python3 -c 'import torch, transformers' 2>/dev/null; then
  echo "cpu_step.sh: skipped, python3 lacks torch or transformers (pip install torch transformers)"
  exit 77
fi
cores=$(nproc --all)
export OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads MKL_NUM_THREADS=$threads
echo "threads: $threads ($cores cores on this machine)"
xo=$("$bin" "$@")
echo "$xo"
po=$(python3 "$here/cpu_step.py" "$threads" "$@")
echo "$po"
x=$(awk '/^xlmc tokens\/s/ {print $3}' <<<"$xo")
p=$(awk '/^pytorch tokens\/s/ {print $3}' <<<"$po")
awk -v x="$x" -v p="$p" 'BEGIN { printf "ratio xlmc/pytorch %.2f (target >= 1.5)\n", x / p }'
