# slurm/job-lib.sh — shared by pretrain.sbatch and finetune.sbatch (sourced, not submitted).
# shellcheck shell=bash
#
# Runs one `xlmc train` job step and turns Slurm's warning signal into a requeue:
#   1. the batch shell traps USR1 (sent by --signal=B:USR1@SECONDS before the time limit) and
#      TERM (preemption, scancel), and forwards the signal to every task of the step;
#   2. xlmc finishes its step, writes a checkpoint and exits 75 ("checkpointed, please
#      requeue");
#   3. the shell runs `scontrol requeue $SLURM_JOB_ID`: the same job id starts again later with
#      SLURM_RESTART_COUNT+1 and xlmc resumes from the run directory's newest checkpoint.
# Environment (all optional; the submitting shell's values reach the job via --export=ALL):
#   XLMC_HOME     checkout with build/xlmc        (default: the directory sbatch ran in)
#   XLMC_BIN      the xlmc binary                 (default: $XLMC_HOME/build/xlmc)
#   XLMC_DEVICE   cuda or cpu                     (default: cuda)
#   XLMC_LAUNCH   srun-pmix, srun-pmi2 or mpirun  (default: srun-pmix; see slurm/README)
#   XLMC_REQUEUE  1: requeue after exit 75 or 76; 0: just exit with it (chain.sh uses 0)
#   XLMC_HANG_RETRIES  requeues after a hung rank (exit 76) before giving up (default 3)
#   XLMC_ARGS     extra `xlmc train` options, e.g. "--max-steps 1000"

# The job's own exit code for "checkpointed, please requeue" (xlmc train --help).
XLMC_EXIT_REQUEUE=75
# ... and for "a rank hung, the watchdog ended the job": requeue and resume from the last
# checkpoint, at most XLMC_HANG_RETRIES times in a row (R/hang-requeues counts them).
XLMC_EXIT_HUNG=76

job_log() { printf '%s xlmc-job %s: %s\n' "$(date '+%F %T')" "${SLURM_JOB_ID:-?}" "$*"; }

# Fills the launch array: the command that starts one xlmc per task.
job_launcher() {
    # Ranks leave one by one after a checkpoint (exit 75): a non-zero exit must not make srun
    # kill the others (--kill-on-bad-exit=0), but a rank that dies alone must not leave the
    # rest hanging for days (--wait: the others get that long to follow, in seconds).
    local srun_opts=(--kill-on-bad-exit=0 --wait=600)
    case ${XLMC_LAUNCH:-srun-pmix} in
    srun-pmix) launch=(srun --mpi=pmix "${srun_opts[@]}") ;;
    srun-pmi2) launch=(srun --mpi=pmi2 "${srun_opts[@]}") ;;
    # Open MPI's mpirun; by default it kills all ranks when one exits non-zero (75 included).
    mpirun) launch=(mpirun --mca orte_abort_on_non_zero_status 0 -np "${SLURM_NTASKS:-1}") ;;
    *)
        job_log "error: XLMC_LAUNCH='$XLMC_LAUNCH' is not srun-pmix, srun-pmi2 or mpirun"
        return 2
        ;;
    esac
}

step_pid=""
stop_signal=""

# Forward the signal to the tasks, not to srun/mpirun themselves, so that none of them is
# killed before it has written its checkpoint.
job_forward() {
    stop_signal=$1
    job_log "received SIG$1: asking xlmc to checkpoint and stop"
    [ -n "$step_pid" ] || return 0
    if [ "${XLMC_LAUNCH:-srun-pmix}" = mpirun ]; then
        # mpirun forwards USR1 to its ranks but answers TERM by killing them: always USR1.
        kill -s USR1 "$step_pid" 2>/dev/null
    else
        # Without --batch, scancel signals the job's steps but not this shell.
        scancel --signal="$1" "$SLURM_JOB_ID" 2>/dev/null ||
            kill -s "$1" "$step_pid" 2>/dev/null
    fi
}

# job_run ARGS...: runs `xlmc train ARGS` on every task; returns xlmc's exit status, or requeues.
job_run() {
    local launch=() status
    job_launcher || return 2
    export HDF5_USE_FILE_LOCKING=FALSE # flock is missing or slow on Lustre/GPFS/NFS
    job_log "start (restart ${SLURM_RESTART_COUNT:-0}) on ${SLURM_JOB_NUM_NODES:-1} node(s)," \
        "${SLURM_NTASKS:-1} task(s): ${launch[*]} $XLMC_BIN train $*"
    trap 'job_forward USR1' USR1
    trap 'job_forward TERM' TERM
    # xlmc's watchdog writes this before it ends a hung job (xlmc train --help, exit 76)
    local fired=${XLMC_RUN_DIR:-.}/watchdog-fired fired_at=""
    rm -f "$fired"
    "${launch[@]}" "$XLMC_BIN" train "$@" &
    step_pid=$!
    # A signal that came before the step existed is passed on now.
    [ -z "$stop_signal" ] || job_forward "$stop_signal"
    # Poll rather than `wait` alone: when the watchdog fired because a node died, srun waits
    # (--wait) for a task nobody will ever report; 20 s after the watchdog's note the step
    # counts as ended with 76, and the requeue below cancels what is left of it.
    status=""
    while kill -0 "$step_pid" 2>/dev/null; do
        sleep 1 &
        wait $! # returns early when a trapped signal arrives
        if [ -z "$fired_at" ] && [ -f "$fired" ]; then
            fired_at=$SECONDS
            job_log "$(head -c 300 "$fired")"
        fi
        if [ -n "$fired_at" ] && ((SECONDS - fired_at > 20)); then
            job_log "the job step has not ended 20 s after the watchdog: taking it as exit 76"
            status=$XLMC_EXIT_HUNG
            # End the launcher now, with SIGKILL so that it sends nothing more. Left alive, srun
            # answers the requeue's SIGTERM by killing its step KillWait+2 s later, and by then
            # that step id belongs to the requeued job's new step.
            kill -s KILL "$step_pid" 2>/dev/null
            wait "$step_pid" 2>/dev/null
            break
        fi
    done
    if [ -z "$status" ]; then
        wait "$step_pid"
        status=$?
    fi
    step_pid=""
    job_log "xlmc exited with status $status${stop_signal:+ after SIG$stop_signal}"
    local hangs_file=${XLMC_RUN_DIR:-.}/hang-requeues hangs=0
    if [ "$status" = "$XLMC_EXIT_HUNG" ]; then
        hangs=$(($(cat "$hangs_file" 2>/dev/null || echo 0) + 1))
        echo "$hangs" >"$hangs_file"
        if [ "$hangs" -gt "${XLMC_HANG_RETRIES:-3}" ]; then
            job_log "error: a rank hung $hangs times in a row (XLMC_HANG_RETRIES=" \
                "${XLMC_HANG_RETRIES:-3}): not requeueing; look at the nodes named above"
            return "$status"
        fi
        job_log "a rank hung (watchdog, exit $status, $hangs of ${XLMC_HANG_RETRIES:-3}):" \
            "requeueing to resume from the last checkpoint"
    else
        rm -f "$hangs_file" # a run that got anywhere resets the count
    fi
    if { [ "$status" = "$XLMC_EXIT_REQUEUE" ] || [ "$status" = "$XLMC_EXIT_HUNG" ]; } &&
        [ "${XLMC_REQUEUE:-1}" = 1 ]; then
        [ "$status" = "$XLMC_EXIT_HUNG" ] ||
            job_log "checkpoint written: requeueing job $SLURM_JOB_ID (it resumes from it)"
        trap - USR1 TERM # Slurm ends this script with SIGTERM as part of the requeue
        if scontrol requeue "$SLURM_JOB_ID"; then
            job_log "requeued"
        else
            job_log "error: scontrol requeue $SLURM_JOB_ID failed; resubmit this script to resume"
        fi
    fi
    return "$status"
}

# Common defaults; the caller sets XLMC_CONFIG, XLMC_DATA and XLMC_RUN_DIR before.
job_setup() {
    XLMC_HOME=${XLMC_HOME:-${SLURM_SUBMIT_DIR:-$PWD}}
    XLMC_BIN=${XLMC_BIN:-$XLMC_HOME/build/xlmc}
    XLMC_DEVICE=${XLMC_DEVICE:-cuda}
    cd "$XLMC_HOME" || return 2
    if [ ! -x "$XLMC_BIN" ]; then
        job_log "error: $XLMC_BIN is not an executable: build xlmc first or set XLMC_BIN"
        return 2
    fi
    mkdir -p "$XLMC_RUN_DIR" || return 2
}
