#!/usr/bin/env bash
# test_train_dp_equivalence — data parallelism does not change the optimization: after 5
# fp32 steps on the same global batch of 8 rows, 2 ranks x micro-batch 4, 1 rank x 8 and
# 1 rank x 4 with 2 accumulation steps give the same parameters within 1e-6 relative.
# Dropout stays on: its masks are keyed by the global row, not by rank or micro-batch.
# English data only, so that blocks of 4 and of 8 rows read the same windows (the loader
# draws one language per block). The attention key biases are left out of the comparison:
# their gradient is exactly zero (softmax ignores a shift shared by all keys of a query), so
# Adam's m / sqrt(v) turns summation-order rounding noise into lr-sized random steps there.
# shellcheck source=tests/train/lib.sh
. "$(dirname "$0")/lib.sh" "$@"
make_vocab "$work/bpe"
mkdir -p "$work/data"
sed -n '1,120p' "$corpus/en.txt" >"$work/en.txt"
"$xlmc" prep --lang en --input "$work/en.txt" --codes "$work/bpe/codes" \
    --vocab "$work/bpe/vocab" --out "$work/data" --valid-every 10 >"$work/prep.log" 2>&1 ||
    fail "prep: $(cat "$work/prep.log")"
common=(batch_tokens=256 max_steps=5 log_every=1 eval_every=0 checkpoint_every=0 warmup=2)
write_config "$work/mb4.ini" "${common[@]}" micro_batch=4
write_config "$work/mb8.ini" "${common[@]}" micro_batch=8
mpi 2 train --config "$work/mb4.ini" --data "$work/data" --run-dir "$work/r2x4" >"$work/r2x4.log" 2>&1 ||
    fail "2 ranks x 4: $(tail -5 "$work/r2x4.log")"
mpi 1 train --config "$work/mb8.ini" --data "$work/data" --run-dir "$work/r1x8" >"$work/r1x8.log" 2>&1 ||
    fail "1 rank x 8: $(tail -5 "$work/r1x8.log")"
mpi 1 train --config "$work/mb4.ini" --data "$work/data" --run-dir "$work/r1x4x2" >"$work/r1x4x2.log" 2>&1 ||
    fail "1 rank x 4 x 2 accumulation steps: $(tail -5 "$work/r1x4x2.log")"
grep -q "2 micro-batches of 4 rows per rank" "$work/r1x4x2.log" ||
    fail "1 rank x micro_batch 4 did not accumulate 2 micro-batches: $(grep 'global batch' "$work/r1x4x2.log")"
ck=checkpoints/step-0000005.h5
for run in r1x8 r1x4x2; do
    python3 "$src/tests/train/compare_ckpt.py" "$work/r2x4/$ck" "$work/$run/$ck" --rtol 1e-6 \
        --exclude k_lin.bias ||
        fail "2 ranks x 4 and $run end with different parameters"
done
echo "losses (2x4 | 1x8):"
paste <(train_losses "$work/r2x4/metrics.jsonl") <(train_losses "$work/r1x8/metrics.jsonl")
echo "PASS"
