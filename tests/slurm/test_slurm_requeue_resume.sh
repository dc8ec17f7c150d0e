#!/usr/bin/env bash
# tests/slurm/test_slurm_requeue_resume.sh XLMC_BIN XLMC_SRC — the job scripts in slurm/ on a
# real single-node Slurm cluster (tests/slurm/cluster.sh; CPU, 2 tasks per job):
#   1. `sbatch --test-only --nodes=1` accepts every slurm/*.sbatch (8 GPUs x 8 tasks per node);
#   2. prep.sbatch turns the committed handbook corpus into shards (2 tasks, en and de);
#   3. pretrain.sbatch with --time=1 and --signal=B:USR1@50: the time-limit signal arrives
#      mid-run, xlmc checkpoints and exits 75, the job requeues itself and resumes; its logged
#      losses are bit-identical to an uninterrupted run's (the same script with a long --time);
#   4. finetune.sbatch --init-from the final checkpoint on a second corpus finishes, starting
#      from a lower loss than pretraining started from (it got the pretrained weights);
#   5. chain.sh queues dependent jobs.
# Needs root (daemons, apt-get); exits 77 (skipped) without it. Cancels its jobs and stops
# the daemons it started on every exit.
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

[ "$(id -u)" = 0 ] || skip "starting slurmctld/slurmd/munged needs root"
for cmd in train prep bpe-learn; do
    "$xlmc" --help 2>/dev/null | grep -q "^  $cmd " || skip "$xlmc has no $cmd command in this build"
done
command -v python3 >/dev/null || fail "python3 is needed to compare metrics.jsonl files"

work=$(mktemp -d /tmp/xlmc-slurm-test.XXXXXX)
chmod 0755 "$work" # slurmctld runs as user slurm and keeps its state below
failed=0
# shellcheck source-path=SCRIPTDIR source=cluster.sh
source "$here/cluster.sh"
finish() {
    local rc=$?
    if [ "$rc" != 0 ] || [ "$failed" = 1 ]; then
        for f in "$work"/*.out; do
            [ -f "$f" ] && { echo "---- $f"; tail -n 40 "$f"; }
        done
        for f in "$work"/cluster/log/*.log; do
            [ -f "$f" ] && { echo "---- $f"; tail -n 15 "$f"; }
        done
    fi
    cluster_stop
    rm -rf "$work"
    exit "$rc"
}
trap finish EXIT
trap 'exit 1' INT TERM

mkdir -p "$work/cluster"
cluster_start "$work/cluster" || fail "the Slurm cluster did not start"

export XLMC_HOME=$src XLMC_BIN=$xlmc XLMC_DEVICE=cpu OMP_NUM_THREADS=1
# The jobs' shape here: 2 tasks on the one node, no GPUs.
shape=(--nodes=1 --ntasks=2 --ntasks-per-node=2 --gpus-per-node=0 --cpus-per-task=1)

# job_state ID: the job's state (COMPLETED, PENDING, ...) and restart count as "STATE RESTARTS".
job_state() {
    local line
    line=$(scontrol -o show job "$1" 2>/dev/null) || return 1
    [[ $line =~ JobState=([A-Z_]+) ]] && printf '%s ' "${BASH_REMATCH[1]}"
    [[ $line =~ Restarts=([0-9]+) ]] && printf '%s\n' "${BASH_REMATCH[1]}"
}

# wait_jobs SECONDS ID...: until every job has ended (COMPLETED, FAILED, ...).
wait_jobs() {
    local limit=$1 t id st
    shift
    for ((t = 0; t < limit; t++)); do
        local running=0
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

# ---- 1. every job script passes sbatch --test-only ----
# As written (GPUs, tasks and CPUs per node), but on this cluster's single node.
say "sbatch --test-only"
for script in "$src"/slurm/*.sbatch; do
    out=$(sbatch --test-only --nodes=1 "$script" 2>&1)
    grep -q 'to start at' <<<"$out" || fail "sbatch --test-only rejected $script: $out"
    echo "${script#"$src"/}: $out"
done

# ---- 2. BPE codes, then shards with prep.sbatch (2 tasks, 2 files per language) ----
say "prep.sbatch"
mkdir -p "$work/text"
for lang in en de; do
    head -n 120 "$here/corpus/$lang.txt" >"$work/text/pretrain-$lang.txt"
    tail -n +121 "$here/corpus/$lang.txt" >"$work/text/finetune-$lang.txt"
    split -n l/2 -d "$work/text/pretrain-$lang.txt" "$work/text/pretrain-$lang-part"
done
"$xlmc" bpe-learn --codes 600 --lang en --out "$work/bpe" "$work"/text/pretrain-??.txt \
    >"$work/bpe.log" 2>&1 || fail "xlmc bpe-learn: $(cat "$work/bpe.log")"
# Every 10th line to valid: the corpus is small, and training evaluates on it.
export XLMC_CODES=$work/bpe/codes XLMC_VOCAB=$work/bpe/vocab XLMC_PREP_ARGS="--valid-every 10"
prep() { # prep DATA_DIR INPUTS
    XLMC_DATA=$1 XLMC_PREP_INPUTS=$2 sbatch --wait --parsable "${shape[@]}" \
        --output="$work/prep-%j.out" "$src/slurm/prep.sbatch" >/dev/null ||
        fail "prep.sbatch for $1 failed"
}
prep "$work/data-pretrain" "en=$work/text/pretrain-en-part* de=$work/text/pretrain-de-part*"
prep "$work/data-finetune" "en=$work/text/finetune-en.txt de=$work/text/finetune-de.txt"

# ---- 3. pretrain: time limit mid-run -> checkpoint -> requeue -> resume ----
say "pretrain.sbatch: requeued run and uninterrupted run"
# Long enough that the signal (10-40 s in) always lands mid-run, even on a fast, quiet machine
# (about 25 steps/s there); a slower machine just requeues more often.
steps=${XLMC_SLURM_TEST_STEPS:-1500}
sed -e "s/^max_steps = .*/max_steps = $steps/" -e 's/^log_every = .*/log_every = 10/' \
    -e "s/^eval_every = .*/eval_every = $steps/" -e 's/^checkpoint_every = .*/checkpoint_every = 100/' \
    "$src/configs/tiny.ini" >"$work/pretrain.ini"
export XLMC_CONFIG=$work/pretrain.ini XLMC_DATA=$work/data-pretrain
# Slurm's time-limit check runs about every 30 s: USR1@50 with --time=1 arrives 10-40 s in.
requeued=$(XLMC_RUN_DIR=$work/run-requeued sbatch --parsable "${shape[@]}" --time=1 \
    --signal=B:USR1@50 --output="$work/pretrain-requeued.out" "$src/slurm/pretrain.sbatch") ||
    fail "sbatch pretrain.sbatch"
reference=$(XLMC_RUN_DIR=$work/run-reference sbatch --parsable "${shape[@]}" --time=30 \
    --no-requeue --output="$work/pretrain-reference.out" "$src/slurm/pretrain.sbatch") ||
    fail "sbatch pretrain.sbatch (reference)"
wait_jobs 400 "$requeued" "$reference"
read -r state restarts < <(job_state "$requeued")
echo "requeued job $requeued: $state after $restarts restart(s)"
read -r rstate rrestarts < <(job_state "$reference")
echo "reference job $reference: $rstate after $rrestarts restart(s)"
if [ "$rstate" != COMPLETED ] || [ "$rrestarts" != 0 ]; then
    fail "the uninterrupted run did not complete on its own"
fi
[ "$state" = COMPLETED ] || fail "the requeued job ended $state"
[ "$restarts" -ge 1 ] ||
    fail "the job was never requeued: training ended before the time-limit signal (raise XLMC_SLURM_TEST_STEPS)"
log=$work/pretrain-requeued.out
grep -q 'received SIGUSR1' "$log" || fail "the batch script never got the time-limit signal"
grep -q 'xlmc exited with status 75 after SIGUSR1' "$log" ||
    fail "xlmc did not checkpoint and exit 75 on the signal"
grep -q 'start (restart 1)' "$log" || fail "no restart in the job log"
grep -q 'xlmc exited with status 0' "$log" || fail "the last run did not finish training"

# Bit-identical: every logged loss (the text of the number) of the requeued run equals the
# uninterrupted run's; no step logged twice (a restart from scratch would repeat steps).
python3 - "$work/run-requeued/metrics.jsonl" "$work/run-reference/metrics.jsonl" "$steps" <<'PY' ||
import json, sys
def losses(path):
    seen = {}
    for line in open(path):
        rec = json.loads(line, parse_float=str, parse_int=str)
        if "step" not in rec or "loss" not in rec:
            continue
        kind = rec.get("type", "train")  # "train" and "valid" lines
        key = (kind, int(rec["step"]))
        if key in seen:
            sys.exit(f"{path}: step {key[1]} logged twice: the run restarted instead of resuming")
        seen[key] = rec["loss"]
    return seen
got, want = losses(sys.argv[1]), losses(sys.argv[2])
# xlmc writes a "start" line per launch; after a requeue it names the checkpoint it resumed.
starts = [json.loads(l) for l in open(sys.argv[1]) if '"start"' in l]
starts = [r for r in starts if r.get("type") == "start"]
if starts and not any(r.get("resumed_from") and r.get("start_step", 0) > 0 for r in starts[1:]):
    sys.exit(f"no launch after the first resumed from a checkpoint: {starts}")
if starts:
    print("launches: " + ", ".join(
        f"step {r.get('start_step')} ({r['resumed_from'].rsplit('/', 1)[-1]})"
        if r.get("resumed_from") else "step 0 (new run)" for r in starts))
last = max(s for _, s in want)
if last != int(sys.argv[3]):
    sys.exit(f"the uninterrupted run logged up to step {last}, not {sys.argv[3]}")
diff = [(k, got.get(k), v) for k, v in sorted(want.items()) if got.get(k) != v]
extra = sorted(set(got) - set(want))
for k, g, w in diff[:5]:
    print(f"step {k[1]} {k[0]}: requeued run {g}, uninterrupted {w}")
if diff or extra:
    sys.exit(f"{len(diff)} losses differ, {len(extra)} extra lines")
print(f"{len(want)} logged losses bit-identical; final step {last} loss {want[max(want, key=lambda k: k[1])]}")
PY
    fail "the requeued run's losses differ from the uninterrupted run's"

# ---- 4. fine-tune from the final checkpoint on the second corpus ----
say "finetune.sbatch"
final=$(compgen -G "$work/run-requeued/checkpoints/step-*.h5" | sort | tail -n 1)
[ -n "$final" ] || fail "no checkpoint in $work/run-requeued/checkpoints"
sed -e 's/^max_steps = .*/max_steps = 20/' -e 's/^warmup = .*/warmup = 5/' \
    -e 's/^lr = .*/lr = 0.0005/' -e 's/^log_every = .*/log_every = 10/' \
    -e 's/^eval_every = .*/eval_every = 20/' -e 's/^checkpoint_every = .*/checkpoint_every = 20/' \
    "$src/configs/tiny.ini" >"$work/finetune.ini"
XLMC_CONFIG=$work/finetune.ini XLMC_DATA=$work/data-finetune XLMC_RUN_DIR=$work/run-finetune \
    XLMC_INIT_FROM=$final sbatch --wait "${shape[@]}" --time=10 \
    --output="$work/finetune.out" "$src/slurm/finetune.sbatch" >/dev/null ||
    fail "finetune.sbatch failed"
python3 - "$work/run-finetune/metrics.jsonl" "$work/run-reference/metrics.jsonl" <<'PY' ||
import json, sys
def first_train_loss(path):
    for line in open(path):
        rec = json.loads(line)
        if "step" in rec and "loss" in rec and rec.get("type", "train") == "train":
            return rec["step"], rec["loss"]
    sys.exit(f"{path}: no loss logged")
(fs, fl), (ps, pl) = first_train_loss(sys.argv[1]), first_train_loss(sys.argv[2])
print(f"fine-tune step {fs} loss {fl:.4f}; pretraining from scratch step {ps} loss {pl:.4f}")
if not fl < pl:
    sys.exit("fine-tuning did not start from the pretrained weights")
PY
    fail "fine-tuning did not start from the checkpoint"

# ---- 5. chain.sh: N jobs, each after the previous one ----
say "chain.sh"
out=$(cd "$src" && XLMC_RUN_DIR=$work/run-chain slurm/chain.sh 3 "${shape[@]}" --hold) ||
    fail "chain.sh: $out"
echo "$out"
mapfile -t ids < <(sed -n 's/^job [0-9]*\/3: \([0-9]*\).*/\1/p' <<<"$out")
[ ${#ids[@]} = 3 ] || fail "chain.sh did not submit 3 jobs"
for k in 1 2; do
    scontrol -o show job "${ids[k]}" | grep -q "Dependency=afterany:${ids[k - 1]}" ||
        fail "job ${ids[k]} does not depend on ${ids[k - 1]}"
done
scancel "${ids[@]}"
say "all Slurm checks passed"
