#!/usr/bin/env bash
# train/demo_xlm.sh — the objectives of Lample & Conneau (2019) on one machine: a tiny model
# trained on a mix of causal LM (clm:de, clm:en), masked LM (mlm:de, mlm:en) and translation
# LM (tlm:de-en, MLM on aligned German-English paragraph pairs) from the Debian
# Administrator's Handbook, which is a parallel corpus: its en-US and de-DE paragraph files
# align one to one. Prints every objective's validation perplexity before and after training.
# usage: train/demo_xlm.sh [WORK_DIR]   (default ./demo-xlm; a few minutes on 2 cores)
# needs: the packages of train/demo.sh (run it once, or install the debs of tests/run.sh).
# environment: DEMO_STEPS (training steps, 300), DEMO_CODES (BPE merges, 3000),
#   DEMO_RANKS (CPU ranks, 2), DEMO_BUILD (build dir, build), DEMO_EVAL (valid windows or
#   pairs per language for the before/after table, 0 = all; default 0), DEMO_XLMC (an xlmc
#   binary to use instead of building one).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(realpath -m "${1:-$PWD/demo-xlm}")
build=$root/${DEMO_BUILD:-build}
ranks=${DEMO_RANKS:-2}
steps=${DEMO_STEPS:-300}
say() { printf '\n== %s ==\n' "$*"; }
t0=$(date +%s)
mkdir -p "$work"

xlmc=${DEMO_XLMC:-$build/xlmc}
if [ -z "${DEMO_XLMC:-}" ] && [ ! -x "$build/xlmc" ]; then
    say "building xlmc in $build"
    cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DXLMC_CUDA=OFF >"$work/cmake.log" 2>&1 ||
        { cat "$work/cmake.log"; exit 1; }
    cmake --build "$build" -j "$(nproc)" --target xlmc >/dev/null
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

# ---- data: handbook -> BPE -> monolingual shards and the en-de pair shards ----
if [ ! -s "$work/text/handbook.de.txt" ]; then
    say "extracting the Debian Administrator's Handbook"
    "$root/data/handbook.sh" "$work/text"
fi
if [ ! -s "$work/bpe/vocab" ]; then
    say "learning ${DEMO_CODES:-3000} BPE merges"
    "$xlmc" bpe-learn --codes "${DEMO_CODES:-3000}" --lang en --out "$work/bpe" \
        "$work/text/handbook.en.txt" "$work/text/handbook.de.txt"
fi
if [ ! -e "$work/data/.done" ]; then
    say "preparing monolingual shards and the en-de pairs"
    rm -rf "$work/data"
    for lang in en de; do
        "$xlmc" prep --lang $lang --input "$work/text/handbook.$lang.txt" \
            --codes "$work/bpe/codes" --vocab "$work/bpe/vocab" --out "$work/data"
    done
    # line i of the English file is the translation of line i of the German one
    "$xlmc" prep --pair en-de --input "$work/text/handbook.en.txt" "$work/text/handbook.de.txt" \
        --codes "$work/bpe/codes" --vocab "$work/bpe/vocab" --out "$work/data"
    touch "$work/data/.done"
fi

# ---- config: configs/tiny.ini with rows long enough for most paragraph pairs (a pair of
# about 90 + 100 words; longer ones are skipped, prep and the loader say how many) ----
cfg=$work/xlm-tiny.ini
sed -e 's/^seq_len = .*/seq_len = 256/' -e 's/^max_positions = .*/max_positions = 320/' \
    -e 's/^micro_batch = .*/micro_batch = 4/' -e "s/^max_steps = .*/max_steps = $steps/" \
    -e 's/^eval_every = .*/eval_every = 100/' -e 's/^log_every = .*/log_every = 25/' \
    "$root/configs/tiny.ini" >"$cfg"
echo "objectives = clm:de, clm:en, mlm:de, mlm:en, tlm:de-en" >>"$cfg"
train=(train --config "$cfg" --data "$work/data")

# the untrained model, for comparison: a run of 0 steps writes the initial weights
rm -rf "$work/init" "$work/run"
"$xlmc" "${train[@]}" --run-dir "$work/init" --max-steps 0 >/dev/null
say "training $steps steps of clm:de, clm:en, mlm:de, mlm:en, tlm:de-en on $ranks CPU rank(s)"
mpirun -np "$ranks" "$xlmc" "${train[@]}" --run-dir "$work/run"

# ---- per-objective validation perplexity, before and after ----
final=$(compgen -G "$work/run/checkpoints/step-*.h5" | sort | tail -n 1)
init=$(compgen -G "$work/init/checkpoints/step-*.h5" | sort | tail -n 1)
objective_ppl() { # objective_ppl CKPT: "name ppl" per objective row of xlmc eval
    "$xlmc" eval --ckpt "$1" --data "$work/data" --split valid --windows "${DEMO_EVAL:-0}" |
        awk '$1 ~ /^(clm|mlm|tlm)/ { for (i = 2; i < NF; i++) if ($i == "ppl") print $1, $(i + 1) }'
}
objective_ppl "$init" >"$work/ppl-before.txt"
objective_ppl "$final" >"$work/ppl-after.txt"
say "validation perplexity per objective (MLM/TLM: of the masked words, a fixed mask)"
printf '%-10s %12s %12s\n' objective untrained trained
paste -d' ' "$work/ppl-before.txt" "$work/ppl-after.txt" | while read -r name before _ after; do
    printf '%-10s %12.2f %12.2f\n' "$name" "$before" "$after"
done
echo "checkpoint: $final"
echo "demo took $(($(date +%s) - t0)) s"
