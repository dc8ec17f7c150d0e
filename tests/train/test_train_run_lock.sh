#!/usr/bin/env bash
# test_train_run_lock — two runs cannot share a run directory:
#  1. run A trains (200 steps); run B, started on the same --run-dir with another lr while A lives,
#     exits 1 at once naming A's PID; A finishes unharmed: exit 0, every step logged once, its final
#     checkpoint holds A's lr. A is held with SIGSTOP while B is tried (and let go after), so a
#     fast machine cannot finish A's 200 steps before B gets to the lock.
#  2. the lock dies with its holder: after kill -9 of a run, the next one starts (and resumes).
# shellcheck source=tests/train/lib.sh
. "$(dirname "$0")/lib.sh" "$@"
make_vocab "$work/bpe"
make_data "$work/data" "$work/bpe" 1 120
write_config "$work/a.ini" batch_tokens=256 micro_batch=8 max_steps=200 log_every=1 \
    eval_every=0 checkpoint_every=20 lr=0.002
write_config "$work/b.ini" batch_tokens=256 micro_batch=8 max_steps=200 log_every=1 \
    eval_every=0 checkpoint_every=20 lr=0.001
args=(train --data "$work/data" --run-dir "$work/run")
pids=()
trap 'for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT

"$xlmc" "${args[@]}" --config "$work/a.ini" >"$work/a.log" 2>&1 &
a=$!
pids+=("$a")
for _ in $(seq 600); do
    grep -q '^step *3/' "$work/a.log" && break
    kill -0 $a 2>/dev/null || fail "run A ended early: $(tail -3 "$work/a.log")"
    sleep 0.05
done
kill -STOP $a 2>/dev/null || fail "run A ended before B was tried: the test proves nothing"
status=0
"$xlmc" "${args[@]}" --config "$work/b.ini" >"$work/b.log" 2>&1 || status=$?
kill -0 $a 2>/dev/null || fail "run A ended before B was tried: the test proves nothing"
kill -CONT $a
[ "$status" = 1 ] || fail "run B on A's directory exited $status, not 1: $(tail -3 "$work/b.log")"
grep -q "run directory .* is in use by another xlmc train (host .* pid $a " "$work/b.log" ||
    fail "B's message does not name A: $(cat "$work/b.log")"
wait $a || fail "run A failed after B was refused: $(tail -3 "$work/a.log")"
python3 - "$work/run" <<'PY' || fail "run A was harmed"
import json, sys, h5py
run = sys.argv[1]
steps = [json.loads(l)["step"] for l in open(run + "/metrics.jsonl") if '"train"' in l]
assert steps == list(range(1, 201)), f"train steps logged: {steps[:5]}... ({len(steps)})"
starts = [l for l in open(run + "/metrics.jsonl") if '"start"' in l]
assert len(starts) == 1, f"{len(starts)} start lines"
with h5py.File(run + "/checkpoints/step-0000200.h5", "r") as f:
    cfg = bytes(f["config"][...]).decode()
assert "\nlr = 0.00200000009\n" in cfg, "the final checkpoint does not hold A's lr"
PY
echo "B refused while A ran; A: 200 steps logged once, its lr in the final checkpoint"

# 2. kill -9 of the holder releases the lock
write_config "$work/c.ini" batch_tokens=256 micro_batch=8 max_steps=100000 log_every=1 \
    eval_every=0 checkpoint_every=20 lr=0.002
"$xlmc" train --data "$work/data" --run-dir "$work/run2" --config "$work/c.ini" >"$work/c.log" 2>&1 &
c=$!
pids+=("$c")
for _ in $(seq 600); do
    grep -q '^step *2/' "$work/c.log" && break
    sleep 0.05
done
grep -q "^host .* pid $c " "$work/run2/lock" || fail "R/lock does not name its holder: $(cat "$work/run2/lock")"
kill -9 $c
wait $c 2>/dev/null || true
"$xlmc" train --data "$work/data" --run-dir "$work/run2" --config "$work/c.ini" --max-steps 3 \
    >"$work/d.log" 2>&1 || fail "the run after kill -9 was refused: $(tail -3 "$work/d.log")"
echo PASS
