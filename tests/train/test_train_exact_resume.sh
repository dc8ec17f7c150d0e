#!/usr/bin/env bash
# test_train_exact_resume — a run stopped by SIGUSR1 and resumed equals an uninterrupted one:
# 40 steps on 2 ranks straight through, and the same run stopped at step 20 (rank 0 gets
# SIGUSR1; both ranks must agree, checkpoint and exit 75) then resumed to 40: every logged
# loss (its text) and the final weights and Adam moments are bit-identical. In fp32 and fp16
# (PRECISION=fp16|fp32 selects one; both by default).
# shellcheck source=tests/train/lib.sh
. "$(dirname "$0")/lib.sh" "$@"
make_vocab "$work/bpe"
make_data "$work/data" "$work/bpe" 1 120
for prec in ${PRECISION:-fp32 fp16}; do
    write_config "$work/$prec.ini" batch_tokens=256 micro_batch=4 max_steps=40 log_every=1 \
        eval_every=0 checkpoint_every=15 precision="$prec"
    args=(train --config "$work/$prec.ini" --data "$work/data")
    mpi 2 "${args[@]}" --run-dir "$work/ref-$prec" >"$work/ref-$prec.log" 2>&1 ||
        fail "$prec uninterrupted run: $(tail -5 "$work/ref-$prec.log")"
    status=0
    mpi 2 "${args[@]}" --run-dir "$work/cut-$prec" --debug-signal-at 20 \
        >"$work/cut1-$prec.log" 2>&1 || status=$?
    # mpirun reports the first non-zero exit status of its ranks
    [ "$status" = 75 ] || fail "$prec: the signalled run exited $status, not 75: $(tail -5 "$work/cut1-$prec.log")"
    grep -q "stopped by SIGUSR1 at step 20" "$work/cut1-$prec.log" ||
        fail "$prec: no stop message at step 20: $(tail -5 "$work/cut1-$prec.log")"
    [ -f "$work/cut-$prec/checkpoints/step-0000020.h5" ] || fail "$prec: no checkpoint at step 20"
    mpi 2 "${args[@]}" --run-dir "$work/cut-$prec" >"$work/cut2-$prec.log" 2>&1 ||
        fail "$prec resumed run: $(tail -5 "$work/cut2-$prec.log")"
    grep -q "resuming from .*step-0000020.h5 at step 20" "$work/cut2-$prec.log" ||
        fail "$prec: the second run did not resume from step 20"
    train_losses "$work/ref-$prec/metrics.jsonl" >"$work/ref-$prec.losses"
    train_losses "$work/cut-$prec/metrics.jsonl" >"$work/cut-$prec.losses"
    [ "$(wc -l <"$work/ref-$prec.losses")" = 40 ] || fail "$prec: the reference logged $(wc -l <"$work/ref-$prec.losses") steps, not 40"
    diff "$work/ref-$prec.losses" "$work/cut-$prec.losses" ||
        fail "$prec: the logged losses of the resumed run differ (above)"
    python3 "$src/tests/train/compare_ckpt.py" "$work/ref-$prec/checkpoints/step-0000040.h5" \
        "$work/cut-$prec/checkpoints/step-0000040.h5" --groups weights,adam_m,adam_v ||
        fail "$prec: the final weights differ"
    echo "$prec: 40 losses and final state bit-identical (step 40 loss $(tail -1 "$work/ref-$prec.losses" | cut -d' ' -f2))"
done
echo PASS
