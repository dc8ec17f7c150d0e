#!/usr/bin/env bash
# test_train_watchdog — a hung rank ends the job instead of hanging it forever:
#  kill -STOP of rank 1 of a 2-rank run, some steps after a checkpoint; rank 0's watchdog
#  (train.watchdog_seconds = 5) must end the job on all ranks within the deadline + 30 s with
#  exit 76 and a message naming the step and rank 1 as the one that did not arrive. The last
#  checkpoint must be intact: the restart resumes from it and its losses equal those the hung
#  run logged for the same steps (bit-identical text).
#  2. kill -9 of rank 1: the job ends within 30 s with a non-zero status and the restart
#     resumes from the newest checkpoint.
# shellcheck source=tests/train/lib.sh
. "$(dirname "$0")/lib.sh" "$@"
make_vocab "$work/bpe"
make_data "$work/data" "$work/bpe" 1 120
write_config "$work/c.ini" batch_tokens=256 micro_batch=4 max_steps=100000 log_every=1 \
    eval_every=0 checkpoint_every=10 keep_last=5
echo "watchdog_seconds = 5" >>"$work/c.ini"
args=(train --config "$work/c.ini" --data "$work/data" --run-dir "$work/run")
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# start_2ranks LOG ARGS...: mpirun of 2 ranks in the background; sets mpirun_pid and rank1
# (mpirun's child whose environment says OMPI_COMM_WORLD_RANK=1)
start_2ranks() {
    local log=$1 p
    shift
    "$mpiexec" -np 2 "$xlmc" "$@" >"$log" 2>&1 &
    mpirun_pid=$!
    pids+=("$mpirun_pid")
    rank1=""
    for _ in $(seq 300); do
        for p in $(pgrep -P $mpirun_pid); do
            tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx OMPI_COMM_WORLD_RANK=1 &&
                rank1=$p
            pids+=("$p")
        done
        [ -n "$rank1" ] && return 0
        sleep 0.1
    done
    fail "no rank-1 process under mpirun: $(tail -5 "$log")"
}
# wait_step LOG REGEX: until the progress output shows a step matching REGEX
wait_step() {
    for _ in $(seq 1200); do
        grep -q "^step *$2/" "$1" && return 0
        kill -0 $mpirun_pid 2>/dev/null || fail "the run ended early: $(tail -5 "$1")"
        sleep 0.05
    done
    fail "step $2 never came: $(tail -3 "$1")"
}
# wait_end SECONDS: until mpirun exits; sets elapsed and status
wait_end() {
    local t0
    t0=$(date +%s)
    for _ in $(seq $(($1 * 10))); do
        kill -0 $mpirun_pid 2>/dev/null || break
        sleep 0.1
    done
    kill -0 $mpirun_pid 2>/dev/null && fail "the job still runs $1 s after the fault"
    elapsed=$(($(date +%s) - t0))
    status=0
    wait $mpirun_pid || status=$?
}

start_2ranks "$work/a.log" "${args[@]}"
wait_step "$work/a.log" '1[3-9]' # a few steps past the step-10 checkpoint
kill -STOP "$rank1"
wait_end 120
grep "watchdog" "$work/a.log" | head -3
# the deadline is max(5 s, 20 median steps): slower builds (sanitizers) get a longer one
deadline=$(grep -o 'deadline [0-9]* s' "$work/a.log" | head -1 | cut -d' ' -f2)
[ -n "$deadline" ] || fail "no deadline in the message: $(tail -8 "$work/a.log")"
echo "hung run: exit $status after ${elapsed}s (deadline $deadline s + 30 s)"
[ "$status" = 76 ] || fail "exit $status, not 76: $(tail -8 "$work/a.log")"
[ "$elapsed" -le $((deadline + 30)) ] || fail "the job took ${elapsed}s to end"
grep -q "watchdog: rank 0 made no progress for .* at step [0-9]*, in " "$work/a.log" ||
    fail "no watchdog message naming the step: $(tail -8 "$work/a.log")"
grep -q "watchdog: rank 1 did not arrive" "$work/a.log" ||
    fail "the message does not name rank 1: $(tail -8 "$work/a.log")"
# gone, or dead and waiting to be reaped by whoever inherited it (Z)
sleep 1
state=$(awk '/^State:/ {print $2}' "/proc/$rank1/status" 2>/dev/null || true)
[ -z "$state" ] || [ "$state" = Z ] || fail "the stopped rank is still alive (state $state)"
last=$(find "$work/run/checkpoints" -name 'step-*.h5' | sort | tail -1)
[ -n "$last" ] || fail "no checkpoint"
step=$((10#$(basename "$last" .h5 | cut -d- -f2)))
cp "$work/run/metrics.jsonl" "$work/hung.jsonl"
train_losses "$work/hung.jsonl" >"$work/hung.txt"
hung_last=$(tail -1 "$work/hung.txt" | cut -d' ' -f1)
[ "$hung_last" -gt "$step" ] || fail "the hang came before any step past the checkpoint"

mpi 2 "${args[@]}" --max-steps "$hung_last" >"$work/b.log" 2>&1 || fail "restart: $(tail -5 "$work/b.log")"
grep -q "resuming from .*step-0*$step.h5 at step $step" "$work/b.log" ||
    fail "did not resume from the last checkpoint (step $step): $(head -5 "$work/b.log")"
train_losses "$work/run/metrics.jsonl" >"$work/resumed.txt"
cmp "$work/hung.txt" "$work/resumed.txt" ||
    fail "the resumed losses differ from those of the hung run: $(diff "$work/hung.txt" "$work/resumed.txt" | head -4)"
echo "resumed from step $step to $hung_last, losses identical"

# 2. kill -9 of rank 1, past the step-20 checkpoint
start_2ranks "$work/c.log" "${args[@]}"
wait_step "$work/c.log" '2[3-9]'
kill -9 "$rank1"
wait_end 30
echo "rank 1 killed: the job ended after ${elapsed}s with exit $status"
[ "$status" != 0 ] || fail "the job with a killed rank exited 0"
last=$(find "$work/run/checkpoints" -name 'step-*.h5' | sort | tail -1)
step=$((10#$(basename "$last" .h5 | cut -d- -f2)))
[ "$step" -ge 20 ] || fail "no checkpoint at step 20 or later"
mpi 2 "${args[@]}" --max-steps $((step + 2)) >"$work/d.log" 2>&1 ||
    fail "restart after kill -9: $(tail -5 "$work/d.log")"
grep -q "resuming from .*step-0*$step.h5 at step $step" "$work/d.log" ||
    fail "did not resume from step $step: $(head -5 "$work/d.log")"
echo PASS
