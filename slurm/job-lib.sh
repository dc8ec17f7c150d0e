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
#   XLMC_REQUEUE  1: requeue after exit 75, 76 or 78; 0: just exit with it (chain.sh uses 0)
#   XLMC_HANG_RETRIES  requeues after a hung rank (76), relaunches after a crashed one (78),
#                 before giving up (default 3)
#   XLMC_ARGS     extra `xlmc train` options, e.g. "--max-steps 1000"

# The job's own exit code for "checkpointed, please requeue" (xlmc train --help).
XLMC_EXIT_REQUEUE=75
# ... and for "a rank hung, the watchdog ended the job": requeue and resume from the last
# checkpoint, at most XLMC_HANG_RETRIES times in a row (R/hang-requeues counts them).
XLMC_EXIT_HUNG=76
# job-lib.sh's own status for "a task crashed (SIGSEGV, SIGBUS, SIGABRT, SIGILL, SIGFPE)": the
# other ranks cannot finish without it (they would wait in MPI_Init or the next collective
# until srun's --wait or the watchdog), so the step is ended at once and launched again in the
# same allocation, at most XLMC_HANG_RETRIES times (after a stop signal: requeued like 76). A
# transient crash (seen: Open MPI's start-up under srun --mpi=pmix, inside MPI_Init) costs
# seconds instead of the job.
XLMC_EXIT_CRASHED=78
# srun's report of a task that died of one of those signals ("srun: error: n1: task 0:
# Segmentation fault (core dumped)"); exits ("...: Exited with exit code 75") and the SIGKILL
# and SIGTERM of MPI_Abort, scancel or an OOM killer are not crashes.
XLMC_CRASH_RE='^srun: error: [^ ]+: tasks? [0-9,-]+: (Segmentation fault|Bus error|Aborted|Illegal instruction|Floating point exception)'

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

job_steps() { # the job's steps now, batch and extern steps left out
    squeue -h --steps --jobs="$SLURM_JOB_ID" -o %i 2>/dev/null | grep -E "^$SLURM_JOB_ID\.[0-9]+$"
}

# Ends the job step now, before a requeue or a relaunch. Its tasks get SIGKILL (a rank still in
# MPI_Init holds SIGTERM back, so Slurm's own cancel would wait KillWait for it); srun then ends
# by itself once their slurmstepds have reported to it, which lets those finish cleanly (with
# srun gone first, a slurmstepd whose task sat in MPI_Init lingered, and the requeued job's
# step, which gets the same id, failed to launch beside it: "pmixp_usock_create_srv: Cannot
# bind() UNIX socket ...: Address already in use"). srun waiting for a task nobody reports (a
# lost node) gets SIGKILL after 10 s, so that it sends nothing more: left alive, it would answer
# the requeue's SIGTERM by killing its step KillWait+2 s later, when that step id belongs to the
# requeued job's new step. Then waits, at most 60 s, until Slurm lists no step of the job.
job_end_step() {
    local t
    for t in $(job_steps); do
        scancel --signal=KILL "$t" 2>/dev/null
    done
    for ((t = 0; t < 10; t++)); do
        kill -0 "$step_pid" 2>/dev/null || break
        sleep 1
    done
    kill -s KILL "$step_pid" 2>/dev/null
    wait "$step_pid" 2>/dev/null
    for ((t = 0; t < 60; t++)); do
        [ -n "$(job_steps)" ] || return 0
        sleep 1
    done
    job_log "warning: Slurm still lists a step of job $SLURM_JOB_ID 60 s after it was ended"
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
    local fired=${XLMC_RUN_DIR:-.}/watchdog-fired fired_at crashed crashes=0
    # srun's own error lines, copied here from its stderr (which still reaches the job's output)
    local srun_errors=${XLMC_RUN_DIR:-.}/srun-errors
    # A crashed task: the step is launched again in this allocation (a new step id), at most
    # XLMC_HANG_RETRIES times; it resumes from the last checkpoint.
    while :; do
        fired_at=""
        rm -f "$fired"
        : >"$srun_errors"
        "${launch[@]}" "$XLMC_BIN" train "$@" \
            2> >(tee >(grep --line-buffered '^srun: error: ' >>"$srun_errors") >&2) &
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
                job_end_step
                break
            fi
            # A crashed task, unless the watchdog has already spoken (its MPI_Abort is no crash).
            if [ -z "$fired_at" ] && crashed=$(grep -m1 -E "$XLMC_CRASH_RE" "$srun_errors"); then
                job_log "${crashed#srun: error: }: ending the job step (its other tasks cannot" \
                    "finish without that one)"
                status=$XLMC_EXIT_CRASHED
                job_end_step
                break
            fi
        done
        if [ -z "$status" ]; then
            wait "$step_pid"
            status=$?
            # a step that ended by itself after a crash (one task, or the last line came late)
            case $status in
            0 | "$XLMC_EXIT_REQUEUE" | "$XLMC_EXIT_HUNG") ;;
            *)
                sleep 1 # srun's last lines may still be on their way through tee and grep
                grep -q -E "$XLMC_CRASH_RE" "$srun_errors" && status=$XLMC_EXIT_CRASHED
                ;;
            esac
        fi
        step_pid=""
        if [ "$status" = "$XLMC_EXIT_CRASHED" ]; then
            job_log "a task of xlmc crashed (status $status)${stop_signal:+ after SIG$stop_signal}"
        else
            job_log "xlmc exited with status $status${stop_signal:+ after SIG$stop_signal}"
        fi
        [ "$status" = "$XLMC_EXIT_CRASHED" ] || break
        [ -z "$stop_signal" ] || break # the job is ending anyway: requeued below
        crashes=$((crashes + 1))
        if [ "$crashes" -gt "${XLMC_HANG_RETRIES:-3}" ]; then
            job_log "error: a rank crashed $crashes times in this job (XLMC_HANG_RETRIES=" \
                "${XLMC_HANG_RETRIES:-3}): giving up; look at the nodes named above"
            return "$status"
        fi
        job_log "a rank crashed ($crashes of ${XLMC_HANG_RETRIES:-3}): launching the step again" \
            "in this allocation (it resumes from the last checkpoint)"
    done
    local hangs_file=${XLMC_RUN_DIR:-.}/hang-requeues hangs=0 what
    if [ "$status" = "$XLMC_EXIT_HUNG" ] || [ "$status" = "$XLMC_EXIT_CRASHED" ]; then
        what="hung (watchdog, exit $status"
        [ "$status" = "$XLMC_EXIT_HUNG" ] || what="crashed (status $status"
        hangs=$(($(cat "$hangs_file" 2>/dev/null || echo 0) + 1))
        echo "$hangs" >"$hangs_file"
        if [ "$hangs" -gt "${XLMC_HANG_RETRIES:-3}" ]; then
            job_log "error: a rank hung or crashed $hangs times in a row (XLMC_HANG_RETRIES=" \
                "${XLMC_HANG_RETRIES:-3}): not requeueing; look at the nodes named above"
            return "$status"
        fi
        job_log "a rank $what, $hangs of ${XLMC_HANG_RETRIES:-3}):" \
            "requeueing to resume from the last checkpoint"
    else
        rm -f "$hangs_file" # a run that got anywhere resets the count
    fi
    if { [ "$status" = "$XLMC_EXIT_REQUEUE" ] || [ "$status" = "$XLMC_EXIT_HUNG" ] ||
        [ "$status" = "$XLMC_EXIT_CRASHED" ]; } && [ "${XLMC_REQUEUE:-1}" = 1 ]; then
        [ "$status" != "$XLMC_EXIT_REQUEUE" ] ||
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
