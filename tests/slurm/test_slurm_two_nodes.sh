#!/usr/bin/env bash
# tests/slurm/test_slurm_two_nodes.sh XLMC_BIN XLMC_SRC — pretrain.sbatch on a two-node Slurm
# cluster (tests/slurm/cluster2.sh: two network namespaces, MPI between them over TCP),
# 2 nodes x 1 rank:
#   1. --time=1 --signal=B:USR1@50: the job checkpoints on the signal, requeues itself and
#      resumes; its logged losses are bit-identical to an uninterrupted run's;
#   2. node failure: every process of node n2 killed (slurmd and slurmstepd included) mid-run,
#      its slurmd started again. Nothing is left to report the rank's death, and Open MPI's TCP
#      transport only warns of the peer hangup: rank 0 waits in the all-reduce until its
#      watchdog (watchdog_seconds = 10) ends the job with exit 76; job-lib.sh requeues it, it
#      resumes from its last checkpoint and completes with the uninterrupted run's losses;
#   3. a hung rank: the xlmc of n2 gets SIGSTOP mid-run: the watchdog (watchdog_seconds = 5)
#      ends the job with exit 76, job-lib.sh requeues it, it resumes and completes;
#   4. a crash at start-up: in the job's first step rank 0 dies of SIGSEGV before MPI_Init
#      (seen in CI inside Open MPI's MPI_Init) and leaves rank 1 waiting in MPI_Init: job-lib.sh
#      ends the step at once (status 78), launches it again in the allocation, and the job
#      completes.
# Needs root (daemons, namespaces, apt-get); exits 77 (skipped) without it. Cancels its jobs,
# stops the daemons it started and deletes its namespaces on every exit.
set -uo pipefail
xlmc=$(realpath "$1")
src=$(realpath "$2")
here=$src/tests/slurm

say() { printf '== %s\n' "$*"; }
skip() { echo "SKIP: $*"; exit 77; }
fail() {
    echo "FAIL: $*"
    failed=1
    exit 1
}
[ "$(id -u)" = 0 ] || skip "network namespaces and the Slurm daemons need root"
command -v ip >/dev/null || skip "iproute2 (ip) is not installed"
if ! command -v nsenter >/dev/null || ! command -v unshare >/dev/null; then
    skip "util-linux nsenter/unshare missing"
fi
"$xlmc" --help 2>/dev/null | grep -q "^  train " || skip "$xlmc has no train command"

# not under /tmp: each node has a /tmp of its own (cluster2.sh)
work=$(mktemp -d /var/tmp/xlmc-slurm2-test.XXXXXX)
chmod 0755 "$work"
failed=0
# shellcheck source-path=SCRIPTDIR source=cluster.sh
source "$here/cluster.sh"
# shellcheck source-path=SCRIPTDIR source=cluster2.sh
source "$here/cluster2.sh"
finish() {
    local rc=$?
    if [ "$rc" != 0 ] || [ "$failed" = 1 ]; then
        for f in "$work"/*.out "$work"/cluster/log/*.log; do
            [ -f "$f" ] && { echo "---- $f"; tail -n 30 "$f"; }
        done
    fi
    cluster2_stop
    cluster_stop
    rm -rf "$work"
    exit "$rc"
}
trap finish EXIT
trap 'exit 1' INT TERM

mkdir -p "$work/cluster"
cluster2_start "$work/cluster" || fail "the two-node cluster did not start"
sinfo -N

# data, made here (not through Slurm: that is test_slurm_requeue_resume's part)
"$xlmc" bpe-learn --codes 400 --lang en --out "$work/bpe" "$here/corpus/en.txt" \
    "$here/corpus/de.txt" >"$work/bpe.log" 2>&1 || fail "bpe-learn: $(cat "$work/bpe.log")"
for lang in en de; do
    "$xlmc" prep --lang "$lang" --input "$here/corpus/$lang.txt" --codes "$work/bpe/codes" \
        --vocab "$work/bpe/vocab" --out "$work/data" --valid-every 10 >"$work/prep.log" 2>&1 ||
        fail "prep $lang: $(cat "$work/prep.log")"
done

export XLMC_HOME=$src XLMC_BIN=$xlmc XLMC_DEVICE=cpu OMP_NUM_THREADS=1 XLMC_DATA=$work/data
# Open MPI between the namespaces: TCP on the nodes' own network only
export OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,tcp OMPI_MCA_btl_tcp_if_include=10.213.0.0/24 \
    OMPI_MCA_oob_tcp_if_include=10.213.0.0/24
shape=(--nodes=2 --ntasks=2 --ntasks-per-node=1 --gpus-per-node=0 --cpus-per-task=1)

job_state() {
    local line
    line=$(scontrol -o show job "$1" 2>/dev/null) || return 1
    [[ $line =~ JobState=([A-Z_]+) ]] && printf '%s ' "${BASH_REMATCH[1]}"
    [[ $line =~ Restarts=([0-9]+) ]] && printf '%s\n' "${BASH_REMATCH[1]}"
}
wait_jobs() {
    local limit=$1 t id st running
    shift
    for ((t = 0; t < limit; t++)); do
        running=0
        for id in "$@"; do
            st=$(job_state "$id")
            # only a final state ends the wait: an empty one (scontrol failed, slurmctld busy)
            # once ended it while a job was between its requeue and its next start
            case ${st%% *} in
            COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | PREEMPTED | BOOT_FAIL | DEADLINE | OUT_OF_MEMORY) ;;
            *) running=1 ;;
            esac
        done
        [ $running = 0 ] && return 0
        sleep 1
    done
    fail "jobs $* still running after $limit s"
}
# wait_step METRICS N SECONDS: until a train line with step >= N is in METRICS
wait_step() {
    local t
    for ((t = 0; t < $3 * 4; t++)); do
        [ -f "$1" ] && python3 -c '
import json, sys
s = [json.loads(l)["step"] for l in open(sys.argv[1]) if "\"train\"" in l]
sys.exit(0 if s and max(s) >= int(sys.argv[2]) else 1)' "$1" "$2" 2>/dev/null && return 0
        sleep 0.25
    done
    fail "$1 never reached step $2"
}
config() { # config OUT STEPS [EXTRA LINE]
    sed -e "s/^max_steps = .*/max_steps = $2/" -e 's/^log_every = .*/log_every = 10/' \
        -e "s/^eval_every = .*/eval_every = 0/" -e 's/^checkpoint_every = .*/checkpoint_every = 50/' \
        -e 's/^batch_tokens = .*/batch_tokens = 512/' -e 's/^micro_batch = .*/micro_batch = 8/' \
        "$src/configs/tiny.ini" >"$1"
    [ -z "${3:-}" ] || echo "$3" >>"$1"
}
# same_losses A B [subset]: every train loss of A (a run with restarts) equals B's (an
# uninterrupted run; with "subset", A may stop earlier: the schedule does not depend on
# max_steps), no step logged twice
same_losses() {
    python3 - "$1" "$2" "${3:-}" <<'PY'
import json, sys
def losses(p):
    out = {}
    for l in open(p):
        r = json.loads(l, parse_float=str)
        if r.get("type") == "train":
            if r["step"] in out:
                sys.exit(f"{p}: step {r['step']} logged twice")
            out[r["step"]] = r["loss"]
    return out
a, b = losses(sys.argv[1]), losses(sys.argv[2])
if sys.argv[3] == "subset":
    b = {s: v for s, v in b.items() if s <= max(a)}
bad = [s for s in b if a.get(s) != b[s]]
if bad or set(a) != set(b):
    sys.exit(f"{len(bad)} of {len(b)} losses differ (first: step {bad[:1]}), steps {len(a)} vs {len(b)}")
print(f"{len(b)} logged losses bit-identical to the uninterrupted run")
PY
}

# ---- 1. time limit -> checkpoint -> requeue -> resume, against an uninterrupted run ----
say "1. requeue by the time limit, 2 nodes"
steps=${XLMC_SLURM_TEST_STEPS:-1500}
config "$work/long.ini" "$steps"
requeued=$(XLMC_CONFIG=$work/long.ini XLMC_RUN_DIR=$work/run-requeued sbatch --parsable \
    "${shape[@]}" --time=1 --signal=B:USR1@50 --output="$work/requeued.out" \
    "$src/slurm/pretrain.sbatch") || fail "sbatch"
reference=$(XLMC_CONFIG=$work/long.ini XLMC_RUN_DIR=$work/run-reference sbatch --parsable \
    "${shape[@]}" --time=30 --output="$work/reference.out" \
    "$src/slurm/pretrain.sbatch") || fail "sbatch (reference)"
wait_jobs 500 "$requeued" "$reference"
read -r state restarts < <(job_state "$requeued")
echo "requeued job: $state after $restarts restart(s); reference: $(job_state "$reference")"
if [ "$state" != COMPLETED ] || [ "$restarts" -lt 1 ]; then
    fail "the job was not requeued and completed"
fi
grep -q 'xlmc exited with status 75 after SIGUSR1' "$work/requeued.out" || fail "no exit 75"
same_losses "$work/run-requeued/metrics.jsonl" "$work/run-reference/metrics.jsonl" ||
    fail "the requeued run's losses differ from the uninterrupted run's"

# ---- 2. node failure: n2 loses every process, its slurmd comes back ----
say "2. node failure"
config "$work/nf.ini" 600 "watchdog_seconds = 10"
nf=$(XLMC_CONFIG=$work/nf.ini XLMC_RUN_DIR=$work/run-nf sbatch --parsable "${shape[@]}" \
    --time=30 --output="$work/nodefail.out" "$src/slurm/pretrain.sbatch") || fail "sbatch"
wait_step "$work/run-nf/metrics.jsonl" 120 120
cluster2_kill_node 2
echo "killed every process of n2 at $(date +%T)"
sleep 3
cluster2_start_slurmd 2
wait_jobs 400 "$nf"
read -r state restarts < <(job_state "$nf")
echo "node-failure job: $state after $restarts restart(s)"
if [ "$state" != COMPLETED ] || [ "$restarts" -lt 1 ]; then
    fail "the job was not requeued and completed"
fi
grep -q "xlmc exited with status 76" "$work/nodefail.out" || fail "the job step did not exit 76"
grep -q "resuming from .*step-0*[1-9][0-9]*.h5" "$work/nodefail.out" ||
    fail "the requeued job did not resume from a checkpoint"
same_losses "$work/run-nf/metrics.jsonl" "$work/run-reference/metrics.jsonl" subset ||
    fail "the losses after the node failure differ from the uninterrupted run's"

# ---- 3. hung rank: SIGSTOP of n2's xlmc -> watchdog -> exit 76 -> requeue -> resume ----
say "3. hung rank"
cluster2_wait_idle || fail "n2 did not come back"
config "$work/hang.ini" 600 "watchdog_seconds = 5"
hang=$(XLMC_CONFIG=$work/hang.ini XLMC_RUN_DIR=$work/run-hang sbatch --parsable "${shape[@]}" \
    --time=30 --output="$work/hang.out" "$src/slurm/pretrain.sbatch") || fail "sbatch"
wait_step "$work/run-hang/metrics.jsonl" 120 120
rank=""
for p in $(ip netns pids "${cluster2_ns[1]}"); do
    [ "$(cat "/proc/$p/comm" 2>/dev/null)" = xlmc ] && rank=$p
done
[ -n "$rank" ] || fail "no xlmc process on n2"
kill -STOP "$rank"
echo "stopped the xlmc of n2 (pid $rank) at $(date +%T)"
wait_jobs 400 "$hang"
read -r state restarts < <(job_state "$hang")
echo "hung-rank job: $state after $restarts restart(s)"
grep -q "watchdog: rank 0 made no progress" "$work/hang.out" || fail "the watchdog did not fire"
grep -q "xlmc exited with status 76" "$work/hang.out" || fail "the job step did not exit 76"
grep -q "a rank hung (watchdog, exit 76" "$work/hang.out" || fail "job-lib.sh did not requeue"
if [ "$state" != COMPLETED ] || [ "$restarts" -lt 1 ]; then
    fail "the job was not requeued and completed"
fi
same_losses "$work/run-hang/metrics.jsonl" "$work/run-reference/metrics.jsonl" subset ||
    fail "the losses after the hang differ from the uninterrupted run's"
# ---- 4. a task crashes at start-up: the step is ended at once and launched again ----
say "4. crash at start-up"
cat >"$work/crash-at-start" <<EOF
#!/bin/bash
# the first step's rank 0 dies of SIGSEGV before it reaches MPI_Init; then the real xlmc
if [ "\${SLURM_PROCID:-0}" = 0 ] && mkdir "$work/crashed-once" 2>/dev/null; then kill -SEGV \$\$; fi
exec "$xlmc" "\$@"
EOF
chmod +x "$work/crash-at-start"
config "$work/crash.ini" 300
crash=$(XLMC_BIN=$work/crash-at-start XLMC_CONFIG=$work/crash.ini XLMC_RUN_DIR=$work/run-crash \
    sbatch --parsable "${shape[@]}" --time=30 --output="$work/crash.out" \
    "$src/slurm/pretrain.sbatch") || fail "sbatch"
wait_jobs 200 "$crash"
read -r state restarts < <(job_state "$crash")
echo "crash-at-start job: $state after $restarts restart(s)"
grep -q "task 0: Segmentation fault.*: ending the job step" "$work/crash.out" ||
    fail "job-lib.sh did not end the step after the crash"
grep -q "a rank crashed (1 of 3): launching the step again" "$work/crash.out" ||
    fail "job-lib.sh did not launch the step again after the crash"
[ "$state" = COMPLETED ] || fail "the job did not complete"
grep -q "xlmc exited with status 0" "$work/crash.out" || fail "the second step did not end well"
same_losses "$work/run-crash/metrics.jsonl" "$work/run-reference/metrics.jsonl" subset ||
    fail "the losses after the crash differ from the uninterrupted run's"
say "all two-node checks passed"
