#!/usr/bin/env bash
# test_train_objectives_resume — a run alternating clm, mlm and tlm objectives resumes exactly: 20 steps on 2 ranks straight through against the same
# run stopped by SIGUSR1 at step 7 (mid-cycle: every stream's position is in the checkpoint)
# and resumed; every logged loss (its text), objective and predicted-position count, and the
# final weights and Adam moments are bit-identical. The step-7 checkpoint also resumes on 1
# rank (the world-size change): the same objectives, the same predicted counts (the masks do
# not depend on the ranks) and losses within 1e-4 (only the summation order differs). The pairs are the
# test corpus cut into sentences. fp32
# and fp16 (PRECISION=fp16|fp32 selects one). Before that, objectives the data cannot feed are
# refused with a message naming [train] objectives and the data directory.
# shellcheck source=tests/train/lib.sh
. "$(dirname "$0")/lib.sh" "$@"
make_vocab "$work/bpe"
make_data "$work/data" "$work/bpe" 1 120
objectives="clm:de, clm:en, mlm:de, tlm:de-en, mlm:en, mlm"
n_obj=6
# pairs for tlm: the corpus paragraphs cut into sentences, so that pairs fit rows of 64
# (alignment does not matter here: the test is about resuming, not translation)
for lang in en de; do
    sed 's/\([.!?]\) /\1\n/g' "$corpus/$lang.txt" | sed -n 1,400p >"$work/$lang.sent"
done
"$xlmc" prep --pair en-de --input "$work/en.sent" "$work/de.sent" --codes "$work/bpe/codes" \
    --vocab "$work/bpe/vocab" --out "$work/data" --valid-every 10 >"$work/prep-pair.log" 2>&1 ||
    fail "prep --pair: $(cat "$work/prep-pair.log")"

# --- refused: a language without shards, a tlm without pair shards ---
mkdir -p "$work/en-only"
"$xlmc" prep --lang en --input "$work/text-data/en.txt" --codes "$work/bpe/codes" \
    --vocab "$work/bpe/vocab" --out "$work/en-only" --valid-every 10 >"$work/prep-en.log" 2>&1 ||
    fail "prep en: $(cat "$work/prep-en.log")"
write_config "$work/bad.ini" batch_tokens=256 micro_batch=4 max_steps=2 eval_every=0
echo "objectives = clm:en, mlm:de" >>"$work/bad.ini"
status=0
mpi 1 train --config "$work/bad.ini" --data "$work/en-only" --run-dir "$work/bad1" \
    >"$work/bad1.log" 2>&1 || status=$?
[ "$status" = 1 ] || fail "mlm:de without de shards: exit $status, not 1"
grep -q "objectives: mlm:de .*$work/en-only" "$work/bad1.log" ||
    fail "mlm:de without de shards: message names neither the option nor the data: $(cat "$work/bad1.log")"
sed -i 's/^objectives = .*/objectives = clm:en, tlm:de-en/' "$work/bad.ini"
status=0
mpi 1 train --config "$work/bad.ini" --data "$work/data" --run-dir "$work/bad2" \
    >"$work/bad2.log" 2>&1 || status=$?
[ "$status" = 1 ] || fail "tlm without pair shards: exit $status, not 1"
grep -q "objectives: tlm:de-en .*$work/data" "$work/bad2.log" ||
    fail "tlm without pair shards: message names neither the option nor the data: $(cat "$work/bad2.log")"
echo "refused: $(grep -o 'objectives: mlm:de.*' "$work/bad1.log" | cut -c1-60)..."

# step objective predicted loss, as logged (text)
records() {
    python3 -c '
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line, parse_float=str)
    if r.get("type") == "train":
        print(r["step"], r["objective"], r["predicted"], r["loss"])' "$1"
}

for prec in ${PRECISION:-fp32 fp16}; do
    write_config "$work/$prec.ini" batch_tokens=256 seq_len=64 micro_batch=2 max_steps=20 \
        log_every=1 eval_every=10 checkpoint_every=10 precision="$prec"
    echo "objectives = $objectives" >>"$work/$prec.ini"
    args=(train --config "$work/$prec.ini" --data "$work/data")
    mpi 2 "${args[@]}" --run-dir "$work/ref-$prec" >"$work/ref-$prec.log" 2>&1 ||
        fail "$prec uninterrupted run: $(tail -5 "$work/ref-$prec.log")"
    status=0
    mpi 2 "${args[@]}" --run-dir "$work/cut-$prec" --debug-signal-at 7 \
        >"$work/cut1-$prec.log" 2>&1 || status=$?
    [ "$status" = 75 ] || fail "$prec: the signalled run exited $status, not 75: $(tail -5 "$work/cut1-$prec.log")"
    [ -f "$work/cut-$prec/checkpoints/step-0000007.h5" ] || fail "$prec: no checkpoint at step 7"
    cp -r "$work/cut-$prec" "$work/one-$prec"
    mpi 2 "${args[@]}" --run-dir "$work/cut-$prec" >"$work/cut2-$prec.log" 2>&1 ||
        fail "$prec resumed run: $(tail -5 "$work/cut2-$prec.log")"
    grep -q "resuming from .*step-0000007.h5 at step 7" "$work/cut2-$prec.log" ||
        fail "$prec: the second run did not resume from step 7"
    records "$work/ref-$prec/metrics.jsonl" >"$work/ref-$prec.rec"
    records "$work/cut-$prec/metrics.jsonl" >"$work/cut-$prec.rec"
    [ "$(wc -l <"$work/ref-$prec.rec")" = 20 ] || fail "$prec: the reference logged $(wc -l <"$work/ref-$prec.rec") steps, not 20"
    diff "$work/ref-$prec.rec" "$work/cut-$prec.rec" ||
        fail "$prec: the resumed run's steps differ (above)"
    python3 "$src/tests/train/compare_ckpt.py" "$work/ref-$prec/checkpoints/step-0000020.h5" \
        "$work/cut-$prec/checkpoints/step-0000020.h5" --groups weights,adam_m,adam_v ||
        fail "$prec: the final weights differ"
    # the schedule: step s trains objective (s-1) % n; MLM steps predict a fraction of 256
    python3 - "$work/ref-$prec.rec" "$objectives" "$n_obj" <<'PY' || fail "$prec: schedule"
import sys
objs = [o.strip() for o in sys.argv[2].split(",")]
for line in open(sys.argv[1]):
    step, obj, pred, loss = line.split()
    step, pred = int(step), int(pred)
    want = objs[(step - 1) % int(sys.argv[3])]
    assert obj == want, f"step {step} trained {obj}, the schedule says {want}"
    if obj.startswith("clm"):
        assert pred == 256, f"step {step} ({obj}) predicted {pred} positions, not all 256"
    elif obj.startswith("mlm"):  # 15% of 256 = 38.4, sd 5.7: 5 sigma either side
        assert 10 <= pred <= 67, f"step {step} ({obj}) predicted {pred} of 256 positions"
    else:  # tlm: 15% of the pairs' real positions, fewer than 256
        assert 1 <= pred <= 67, f"step {step} ({obj}) predicted {pred} of 256 positions"
PY
    for o in mlm:de tlm:de-en; do
        grep -q "\"type\":\"valid\".*\"objective\":\"$o\"" "$work/ref-$prec/metrics.jsonl" ||
            fail "$prec: no $o validation record"
    done
    # world-size change: the step-7 checkpoint of 2 ranks continues on 1
    mpi 1 "${args[@]}" --run-dir "$work/one-$prec" >"$work/one-$prec.log" 2>&1 ||
        fail "$prec 1-rank resume: $(tail -5 "$work/one-$prec.log")"
    grep -q "resuming from .*step-0000007.h5 at step 7" "$work/one-$prec.log" ||
        fail "$prec: the 1-rank run did not resume from step 7"
    records "$work/one-$prec/metrics.jsonl" >"$work/one-$prec.rec"
    python3 - "$work/ref-$prec.rec" "$work/one-$prec.rec" <<'PY' || fail "$prec: 2 -> 1 rank resume"
import sys
ref = [l.split() for l in open(sys.argv[1])]
got = [l.split() for l in open(sys.argv[2])]
assert len(ref) == len(got) == 20, f"{len(ref)} and {len(got)} steps logged"
worst = 0
for (s, o, p, l), (s2, o2, p2, l2) in zip(ref, got):
    assert (s, o, p) == (s2, o2, p2), f"step {s}: {o2} with {p2} predicted, expected {o} with {p}"
    rel = abs(float(l) - float(l2)) / abs(float(l))
    assert rel <= 1e-4, f"step {s} ({o}): loss {l2} vs 2-rank run {l}"
    worst = max(worst, rel)
print(f"1-rank resume: same objectives and masks, losses within {worst:.2e} of the 2-rank run")
PY
    echo "$prec: 20 steps of $objectives resumed bit-identical (step 20 loss $(tail -1 "$work/ref-$prec.rec" | cut -d' ' -f4))"
done
echo PASS
