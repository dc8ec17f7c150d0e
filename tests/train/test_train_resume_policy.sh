#!/usr/bin/env bash
# test_train_resume_policy — resume refuses silent changes, and a run with only invalid
# checkpoints does not start afresh silently:
#  1. a run to step 4 (checkpoint); resuming it with a --config that changes one setting that
#     changes the trajectory (each of the list below, one at a time) exits 1 naming the setting
#     and its two values, and writes nothing: no new checkpoint, metrics.jsonl unchanged.
#  2. a bookkeeping change (log_every) resumes without a word of refusal.
#  3. dropout 0.1 -> 0 with --accept-changes: accepted, recorded in metrics.jsonl's start line,
#     written into the next checkpoint's config, and it takes effect: the step-6 loss differs
#     from that of the same resume without the change.
#  4. every checkpoint truncated: the start is refused (exit 1, files untouched); with
#     --fresh-start they are moved to checkpoints.invalid-1 and training starts at step 0.
# shellcheck source=tests/train/lib.sh
. "$(dirname "$0")/lib.sh" "$@"
make_vocab "$work/bpe"
make_data "$work/data" "$work/bpe" 1 120
base=(batch_tokens=256 micro_batch=8 max_steps=30 log_every=1 eval_every=0 checkpoint_every=2
    keep_last=5)
write_config "$work/c.ini" "${base[@]}"
run=$work/run
args=(train --data "$work/data" --run-dir "$run")
"$xlmc" "${args[@]}" --config "$work/c.ini" --max-steps 4 >"$work/a.log" 2>&1 ||
    fail "first run: $(tail -5 "$work/a.log")"
ls "$run/checkpoints" >"$work/ck.before"
cp "$run/metrics.jsonl" "$work/metrics.before"

# 1. key=new-value: one trajectory-changing setting each (old values from configs/tiny.ini)
n=0
for kv in seed=2 seq_len=16 batch_tokens=512 micro_batch=4 precision=fp16 dropout=0.2 \
    attention_dropout=0 lr=0.001 max_steps=40 warmup=10 schedule=cosine clip_norm=1; do
    key=${kv%%=*}
    write_config "$work/x.ini" "${base[@]}" "$kv"
    status=0
    "$xlmc" "${args[@]}" --config "$work/x.ini" --max-steps 5 >"$work/x.log" 2>&1 || status=$?
    [ "$status" = 1 ] || fail "$kv: resume exited $status, not 1 (refused): $(tail -3 "$work/x.log")"
    grep -q "resume: \[[a-z]*\] $key changes from .* to .* (changes the run: refused)" \
        "$work/x.log" || fail "$kv: the change is not named: $(head -3 "$work/x.log")"
    grep -q -- "--accept-changes" "$work/x.log" || fail "$kv: the way out is not named"
    ls "$run/checkpoints" | cmp -s - "$work/ck.before" || fail "$kv: the checkpoints changed"
    cmp -s "$run/metrics.jsonl" "$work/metrics.before" || fail "$kv: metrics.jsonl changed"
    # the same with --accept-changes, on a copy: resumed, and the change recorded
    rm -rf "$work/acc" && cp -a "$run" "$work/acc"
    "$xlmc" train --data "$work/data" --run-dir "$work/acc" --config "$work/x.ini" \
        --max-steps 5 --accept-changes >"$work/acc.log" 2>&1 ||
        fail "$kv with --accept-changes: $(tail -3 "$work/acc.log")"
    python3 - "$work/acc/metrics.jsonl" "$key" <<'PY' || fail "$kv: not recorded in metrics.jsonl"
import json, sys
start = [json.loads(l) for l in open(sys.argv[1]) if '"start"' in l][-1]
assert any(c["key"].endswith("." + sys.argv[2]) and c["kind"] == "trajectory"
           for c in start.get("changes", [])), start
PY
    n=$((n + 1))
done
echo "$n trajectory-changing settings refused on resume, accepted and recorded with --accept-changes"

# 2. bookkeeping only: accepted as is
write_config "$work/b.ini" "${base[@]}" log_every=2
"$xlmc" "${args[@]}" --config "$work/b.ini" --max-steps 5 >"$work/b.log" 2>&1 ||
    fail "a log_every change was refused: $(tail -3 "$work/b.log")"
grep -q "log_every changes from 1 to 2 (bookkeeping, accepted)" "$work/b.log" ||
    fail "the bookkeeping change was not reported"

# 3. dropout 0.1 -> 0, accepted; and the same resume without it, for the loss comparison
cp -a "$run" "$work/same"
write_config "$work/d.ini" "${base[@]}" dropout=0.0
"$xlmc" "${args[@]}" --config "$work/d.ini" --max-steps 6 --accept-changes >"$work/d.log" 2>&1 ||
    fail "--accept-changes: $(tail -3 "$work/d.log")"
grep -q "dropout changes from 0.100000001 to 0 (changes the run, accepted by --accept-changes)" \
    "$work/d.log" || fail "the accepted change was not printed: $(head -3 "$work/d.log")"
"$xlmc" train --data "$work/data" --run-dir "$work/same" --config "$work/c.ini" --max-steps 6 \
    >"$work/s.log" 2>&1 || fail "resume without change: $(tail -3 "$work/s.log")"
python3 - "$run" "$work/same" <<'PY' || fail "dropout change not recorded or without effect"
import json, sys, h5py
run, same = sys.argv[1], sys.argv[2]
starts = [json.loads(l) for l in open(run + "/metrics.jsonl") if '"start"' in l]
ch = starts[-1].get("changes", [])
assert any(c["key"] == "model.dropout" and c["to"] == "0" and c["kind"] == "trajectory"
           for c in ch), f"no dropout change in the start line: {starts[-1]}"
with h5py.File(run + "/checkpoints/step-0000006.h5", "r") as f:
    cfg = bytes(f["config"][...]).decode()
assert "\ndropout = 0\n" in cfg, "the step-6 checkpoint does not say dropout = 0"
def loss6(d):
    return [json.loads(l, parse_float=str)["loss"] for l in open(d + "/metrics.jsonl")
            if '"train"' in l and json.loads(l)["step"] == 6][-1]
a, b = loss6(run), loss6(same)
assert a != b, f"step-6 loss {a} equals the one with dropout 0.1: the change had no effect"
print(f"dropout 0: step-6 loss {a}, with 0.1: {b}")
PY

# 4. every checkpoint truncated to half its size
for f in "$run"/checkpoints/step-*.h5; do truncate -s $(($(stat -c %s "$f") / 2)) "$f"; done
ls -l "$run/checkpoints" >"$work/ls.before"
status=0
"$xlmc" "${args[@]}" --config "$work/c.ini" --max-steps 8 >"$work/e.log" 2>&1 || status=$?
[ "$status" = 1 ] || fail "all-corrupt run dir: exit $status, not 1: $(tail -3 "$work/e.log")"
grep -q "none is valid.*refusing a silent fresh start" "$work/e.log" ||
    fail "no refusal message: $(tail -3 "$work/e.log")"
ls -l "$run/checkpoints" | cmp -s - "$work/ls.before" || fail "the invalid checkpoints were touched"
"$xlmc" "${args[@]}" --config "$work/c.ini" --max-steps 2 --fresh-start >"$work/f.log" 2>&1 ||
    fail "--fresh-start: $(tail -3 "$work/f.log")"
[ -d "$run/checkpoints.invalid-1" ] || fail "the invalid checkpoints were not moved aside"
[ -f "$run/checkpoints/step-0000002.h5" ] || fail "no new checkpoint from step 0"
[ "$(train_losses "$run/metrics.jsonl" | head -1 | cut -d' ' -f1)" = 1 ] ||
    fail "metrics.jsonl does not start at step 1 after --fresh-start"
echo PASS
