#!/usr/bin/env bash
# train/demo.sh — xlmc end to end on one machine, from a fresh clone (Debian 12):
#   installs the missing Debian packages, builds, extracts the Debian Administrator's
#   Handbook (en + de), learns BPE codes on it, prepares shards, trains configs/tiny.ini with
#   2 ranks on the CPU (one rank per GPU with --device cuda when nvidia-smi lists any),
#   interrupts the run once with SIGUSR1 and resumes it, evaluates German perplexity before
#   and after training, samples a German and an English sentence and plots the losses.
# usage: train/demo.sh [WORK_DIR]     (default: ./demo-run; about 10 minutes on 2 cores)
# environment: DEMO_STEPS (training steps, 1000), DEMO_CODES (BPE merges, 3000),
#   DEMO_RANKS (CPU ranks, 2), DEMO_BUILD (build dir, build).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(realpath -m "${1:-$PWD/demo-run}")
build=$root/${DEMO_BUILD:-build}
say() { printf '\n== %s ==\n' "$*"; }
t0=$(date +%s)

# ---- 1. packages (the list of tests/run.sh, less what only the test suite needs) ----
debs=(build-essential cmake pkg-config libopenmpi-dev openmpi-bin libhdf5-dev hdf5-tools
      libopenblas-dev libinih-dev libjansson-dev libxxhash-dev zlib1g-dev gnuplot-nox
      debian-handbook)
missing=()
for p in "${debs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
    say "installing Debian packages: ${missing[*]}"
    sudo_=""
    [ "$(id -u)" = 0 ] || sudo_=sudo
    $sudo_ apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# ---- 2. devices: all GPUs when nvidia-smi lists any, else 2 CPU ranks ----
device=cpu
ranks=${DEMO_RANKS:-2}
if command -v nvidia-smi >/dev/null && gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU') &&
    [ "$gpus" -gt 0 ]; then
    device=cuda
    ranks=$gpus
fi

# ---- 3. build (the CUDA backend only when there is a GPU to run it) ----
say "building xlmc in $build"
mkdir -p "$work"
cuda=OFF
[ "$device" = cpu ] || cuda=ON
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DXLMC_CUDA=$cuda >"$work/cmake.log" 2>&1 ||
    { cat "$work/cmake.log"; exit 1; }
rm -f "$work/cmake.log"
cmake --build "$build" -j "$(nproc)" --target xlmc >/dev/null
xlmc=$build/xlmc
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

# ---- 4. data: handbook -> BPE -> shards ----
if [ ! -s "$work/text/handbook.de.txt" ]; then
    say "extracting the Debian Administrator's Handbook"
    "$root/data/handbook.sh" "$work/text"
fi
wc -w "$work"/text/handbook.{en,de}.txt
if [ ! -s "$work/bpe/vocab" ]; then
    say "learning ${DEMO_CODES:-3000} BPE merges"
    "$xlmc" bpe-learn --codes "${DEMO_CODES:-3000}" --lang en --out "$work/bpe" \
        "$work/text/handbook.en.txt" "$work/text/handbook.de.txt"
fi
if ! ls "$work"/data/train-*.h5 >/dev/null 2>&1; then
    say "preparing shards"
    for lang in en de; do
        "$xlmc" prep --lang $lang --input "$work/text/handbook.$lang.txt" --codes "$work/bpe/codes" \
            --vocab "$work/bpe/vocab" --out "$work/data"
    done
    "$xlmc" data-info "$work/data" || true
fi

say "training configs/tiny.ini on $ranks rank(s), device $device"
max_steps=${DEMO_STEPS:-1000}
steps_args=(--max-steps "$max_steps")
train=(train --config "$root/configs/tiny.ini" --data "$work/data" --device "$device")

# the untrained model, for comparison: a run of 0 steps writes the initial weights
rm -rf "$work/init" "$work/run"
"$xlmc" "${train[@]}" --run-dir "$work/init" --max-steps 0 >/dev/null

# ---- 5. train, interrupt once half way, resume ----
mpirun -np "$ranks" "$xlmc" "${train[@]}" "${steps_args[@]}" --run-dir "$work/run" &
pid=$!
half=$((max_steps / 2))
while kill -0 $pid 2>/dev/null; do
    if grep -q "\"type\":\"train\",\"step\":$half," "$work/run/metrics.jsonl" 2>/dev/null; then
        say "sending SIGUSR1 to mpirun at step $half (what Slurm sends before a time limit)"
        kill -USR1 $pid
        break
    fi
    sleep 0.5
done
status=0
wait $pid || status=$?
[ "$status" = 75 ] || { echo "demo: expected exit status 75 (checkpointed), got $status" >&2; exit 1; }
say "exit status 75 = checkpointed, please requeue: resuming"
mpirun -np "$ranks" "$xlmc" "${train[@]}" "${steps_args[@]}" --run-dir "$work/run"

# ---- 6. evaluate, sample, plot ----
final=$(compgen -G "$work/run/checkpoints/step-*.h5" | sort | tail -n 1)
init=$(compgen -G "$work/init/checkpoints/step-*.h5" | sort | tail -n 1)
ppl_de() { "$xlmc" eval --ckpt "$1" --data "$work/data" --split valid | awk '$1 == "de" { for (i = 2; i < NF; i++) if ($i == "ppl") print $(i + 1) }'; }
say "evaluating on the German valid split"
before=$(ppl_de "$init")
after=$(ppl_de "$final")
"$xlmc" eval --ckpt "$final" --data "$work/data" --split valid
say "samples"
printf 'de: '
"$xlmc" generate --ckpt "$final" --codes "$work/bpe/codes" --vocab "$work/bpe/vocab" --lang de \
    --prompt "Das Paket" --tokens 30 --temperature 0.8 --seed 1
printf 'en: '
"$xlmc" generate --ckpt "$final" --codes "$work/bpe/codes" --vocab "$work/bpe/vocab" --lang en \
    --prompt "The package" --tokens 30 --temperature 0.8 --seed 1
plot=$("$xlmc" plot "$work/run")
say "summary"
echo "German valid perplexity: untrained $before, after training $after"
echo "loss plot: $plot"
echo "checkpoint: $final"
echo "demo took $(($(date +%s) - t0)) s"
