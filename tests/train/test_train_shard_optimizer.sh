#!/usr/bin/env bash
# test_train_shard_optimizer — train.shard_optimizer (each rank sums, updates and then
# broadcasts its 1/world of the arena) changes nothing but rounding:
#  1. 2 ranks, fp32, clipping off: 10 steps sharded and replicated end with bit-identical
#     weights and Adam moments and log the same training and validation losses (a sum of two
#     is the same in any order, and without clipping the shards' norm sum is not used); the
#     sharded run's weights arrive layer by layer during the next forward (the evaluations
#     every 5 steps wait for them too);
#  2. 3 ranks, fp16, clipping on, one micro-batch per rank: sharded and replicated agree
#     within 1e-5 relative (the norm is summed in another order; the sharded run sends its
#     fp16 gradients to their owners, who add them in fp32 in rank order);
#  3. the sharded 3-rank run stopped at step 10 (SIGUSR1) and resumed to 20 is bit-identical
#     to the uninterrupted one (losses, weights, moments: the checkpoint gathers the shards);
#     its checkpoint also resumes on one rank (unsharded: it holds the whole state).
# shellcheck source=tests/train/lib.sh
. "$(dirname "$0")/lib.sh" "$@"
make_vocab "$work/bpe"
make_data "$work/data" "$work/bpe" 1 120
run() { # run NAME RANKS CONFIG [ARGS...]
    local name=$1 n=$2 cfg=$3
    shift 3
    mpi "$n" train --config "$cfg" --data "$work/data" --run-dir "$work/$name" "$@" \
        >>"$work/$name.log" 2>&1
}
common=(batch_tokens=384 micro_batch=4 log_every=1 eval_every=0 warmup=2)

# 1. two ranks, fp32, no clipping: bit-identical
for s in true false; do
    write_config "$work/p1-$s.ini" "${common[@]}" batch_tokens=256 max_steps=10 \
        checkpoint_every=0 clip_norm=0 shard_optimizer=$s eval_every=5
    run "p1-$s" 2 "$work/p1-$s.ini" || fail "part 1, shard_optimizer=$s: $(tail -5 "$work/p1-$s.log")"
done
grep -q "optimizer sharded over 2 ranks.*arrive layer by layer" "$work/p1-true.log" ||
    fail "part 1: the sharded run does not say it shards: $(head -20 "$work/p1-true.log")"
grep -q "optimizer sharded" "$work/p1-false.log" && fail "part 1: the replicated run says it shards"
ck=checkpoints/step-0000010.h5
python3 "$src/tests/train/compare_ckpt.py" "$work/p1-true/$ck" "$work/p1-false/$ck" \
    --groups weights,adam_m,adam_v || fail "part 1: sharded and replicated states differ"
diff <(train_losses "$work/p1-true/metrics.jsonl") <(train_losses "$work/p1-false/metrics.jsonl") ||
    fail "part 1: the logged losses differ (above)"
valid() { grep -o 'valid step .*' "$1"; }
[ "$(valid "$work/p1-true.log" | wc -l)" = 2 ] || fail "part 1: not 2 evaluations: $(valid "$work/p1-true.log")"
diff <(valid "$work/p1-true.log") <(valid "$work/p1-false.log") ||
    fail "part 1: the validation losses differ (above)"

# 2. three ranks, fp16, clipping on: within rounding
for s in true false; do
    write_config "$work/p2-$s.ini" "${common[@]}" max_steps=20 checkpoint_every=10 \
        precision=fp16 shard_optimizer=$s
    run "p2-$s" 3 "$work/p2-$s.ini" || fail "part 2, shard_optimizer=$s: $(tail -5 "$work/p2-$s.log")"
done
grep -q "optimizer sharded over 3 ranks.*the fp16 gradients go to their owners" "$work/p2-true.log" ||
    fail "part 2: the sharded fp16 run does not send its gradients to their owners: $(grep sharded "$work/p2-true.log")"
ck=checkpoints/step-0000020.h5
python3 "$src/tests/train/compare_ckpt.py" "$work/p2-true/$ck" "$work/p2-false/$ck" --rtol 1e-5 \
    --exclude k_lin.bias || fail "part 2: sharded and replicated weights differ beyond rounding"

# 3. stopped and resumed, sharded: bit-identical to part 2's sharded run
status=0
run p3 3 "$work/p2-true.ini" --debug-signal-at 10 || status=$?
[ "$status" = 75 ] || fail "part 3: the signalled run exited $status, not 75: $(tail -5 "$work/p3.log")"
run p3 3 "$work/p2-true.ini" || fail "part 3, resumed: $(tail -5 "$work/p3.log")"
grep -q "resuming from .*step-0000010.h5 at step 10" "$work/p3.log" ||
    fail "part 3: the second run did not resume from step 10"
diff <(train_losses "$work/p2-true/metrics.jsonl") <(train_losses "$work/p3/metrics.jsonl") ||
    fail "part 3: the resumed run's losses differ (above)"
python3 "$src/tests/train/compare_ckpt.py" "$work/p2-true/$ck" "$work/p3/$ck" \
    --groups weights,adam_m,adam_v || fail "part 3: the resumed run's final state differs"
mkdir -p "$work/p4/checkpoints"
cp "$work/p2-true/checkpoints/step-0000010.h5" "$work/p4/checkpoints/"
run p4 1 "$work/p2-true.ini" --max-steps 12 || fail "part 3, on one rank: $(tail -5 "$work/p4.log")"
grep -q "resuming from .*step-0000010.h5 at step 10" "$work/p4.log" ||
    fail "part 3: the one-rank run did not resume from the 3-rank checkpoint"
[ -f "$work/p4/checkpoints/step-0000012.h5" ] || fail "part 3: the one-rank run wrote no step 12"
echo PASS
