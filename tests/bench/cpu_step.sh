#!/usr/bin/env bash
# cpu_step.sh — training tokens/s of xlmc (CPU, fp32) against PyTorch running transformers'
# XLMWithLMHeadModel (causal=True) on the same shapes with the same thread count, measured in
# one run; prints both and their ratio. It reports, it does not judge: exit 0 unless a side
# fails to run (77 = skipped when torch/transformers are missing).
#
# usage: tests/bench/cpu_step.sh [CPU_STEP_BINARY] [DIM LAYERS HEADS VOCAB B T WARMUP TIMED]
#   CPU_STEP_BINARY defaults to build/tests/bench/bench_cpu_step (cmake --build build).
# Threads: XLMC_BENCH_THREADS (default: every core, nproc), applied to OpenMP, OpenBLAS and
# torch alike; XLMC_BENCH_THREADS=1 compares single-threaded.
# Repeats: XLMC_BENCH_REPEAT (default 3) runs of each, alternating, best of each kept, so that
# other load on a shared machine penalizes both sides alike rather than whichever ran second.
# Where xlmc's step goes, op by op: XLMC_BENCH_OPS=1 build/tests/bench/bench_cpu_step
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-$here/../../build/tests/bench/bench_cpu_step}
shift || true
threads=${XLMC_BENCH_THREADS:-$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)}
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
repeat=${XLMC_BENCH_REPEAT:-3}
x=0 p=0
best() { awk -v a="$1" -v b="$2" 'BEGIN { print (b > a ? b : a) }'; }
for ((i = 1; i <= repeat; i++)); do
  xo=$("$bin" "$@")
  echo "$xo"
  po=$(python3 "$here/cpu_step.py" "$threads" "$@")
  echo "$po"
  x=$(best "$x" "$(awk '/^xlmc tokens\/s/ {print $3}' <<<"$xo")")
  p=$(best "$p" "$(awk '/^pytorch tokens\/s/ {print $3}' <<<"$po")")
done
echo "best of $repeat: xlmc tokens/s $x, pytorch tokens/s $p"
awk -v x="$x" -v p="$p" 'BEGIN { printf "ratio xlmc/pytorch %.2f (target >= 1.5)\n", x / p }'
