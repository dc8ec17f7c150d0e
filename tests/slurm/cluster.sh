#!/usr/bin/env bash
# tests/slurm/cluster.sh — a throw-away single-node Slurm cluster on localhost (CPU only).
#
#   source tests/slurm/cluster.sh
#   cluster_start DIR     # installs slurm-wlm + munge when missing, writes DIR/slurm.conf
#                         # (one node: 64 CPUs, 8 fake GPUs, on a machine of any size),
#                         # starts munged (unless one answers), slurmctld and slurmd, waits
#                         # for an idle node; exports SLURM_CONF
#   cluster_stop          # cancels every job, then stops the daemons it started, by PID
#
# Needs root (the daemons, apt-get). Ports: XLMC_SLURM_PORT (slurmctld, default 16817) and the
# next one (slurmd), away from a real cluster's 6817/6818. Facts behind the choices below are
# in ../shared/ENVIRONMENT.md (Slurm section).

cluster_dir=""
cluster_pids=()          # daemons this shell started, stopped in reverse order

cluster_log() { printf 'cluster: %s\n' "$*" >&2; }

cluster_install() {
    local need=() p
    for p in slurm-wlm munge; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || need+=("$p")
    done
    ((${#need[@]})) || return 0
    cluster_log "installing ${need[*]}"
    apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" \
            >/dev/null
}

# munged refuses to run as root and wants its directories owned by munge.
cluster_start_munge() {
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        cluster_log "using the munged already running"
        return 0
    fi
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge /etc/munge
    if [ ! -s /etc/munge/munge.key ]; then
        runuser -u munge -- mungekey --create --keyfile=/etc/munge/munge.key || return 1
    fi
    runuser -u munge -- /usr/sbin/munged || return 1
    local i
    for i in $(seq 50); do
        if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
            cluster_pids+=("$(cat /run/munge/munged.pid)")
            return 0
        fi
        sleep 0.1
    done
    cluster_log "munged did not answer (see /var/log/munge/munged.log)"
    return 1
}

cluster_write_conf() {
    local dir=$1 port=${XLMC_SLURM_PORT:-16817}
    cat >"$dir/slurm.conf" <<CONF
# Written by tests/slurm/cluster.sh: one CPU node, no accounting.
ClusterName=xlmctest
SlurmctldHost=localhost
SlurmctldPort=$port
SlurmdPort=$((port + 1))
AuthType=auth/munge
CredType=cred/munge
# Requeued jobs wait for their credential to expire before they start again (default 120 s).
AuthInfo=cred_expire=5
SlurmUser=slurm
SlurmdUser=root
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=pmix
SchedulerParameters=sched_interval=1,bf_interval=1
KillWait=5
MinJobAge=600
MailProg=/bin/true
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
# The node claims what one node of the 8 x 8-GPU default job has (64 CPUs, 8 GPUs), so that
# sbatch --test-only checks the job scripts' real requests; config_overrides lets slurmd run
# with more than the machine has. The "GPUs" are /dev/null: jobs here ask for none.
SlurmdParameters=config_overrides
GresTypes=gpu
NodeName=localhost NodeAddr=127.0.0.1 CPUs=64 RealMemory=4000 Gres=gpu:8 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
    local k
    for k in 0 1 2 3 4 5 6 7; do ln -sf /dev/null "$dir/gpu$k"; done
    echo "NodeName=localhost Name=gpu File=$dir/gpu[0-7]" >"$dir/gres.conf"
}

cluster_start() {
    cluster_dir=$1
    cluster_install || { cluster_log "could not install slurm-wlm and munge"; return 1; }
    cluster_start_munge || return 1
    chmod 0755 "$cluster_dir"
    if ! runuser -u slurm -- test -x "$cluster_dir"; then
        cluster_log "user slurm cannot enter $cluster_dir: make its parents world-searchable"
        return 1
    fi
    install -d -o slurm -g slurm "$cluster_dir/state" "$cluster_dir/log" "$cluster_dir/run"
    install -d "$cluster_dir/spool"
    cluster_write_conf "$cluster_dir"
    local port=${XLMC_SLURM_PORT:-16817}
    if ss -Hltn "( sport = :$port or sport = :$((port + 1)) )" 2>/dev/null | grep -q .; then
        cluster_log "port $port or $((port + 1)) is taken (a test cluster left running?):" \
            "stop it, or set XLMC_SLURM_PORT"
        return 1
    fi
    export SLURM_CONF=$cluster_dir/slurm.conf
    # Foreground daemons in the background: $! is the daemon itself.
    slurmctld -D -i >"$cluster_dir/log/slurmctld.out" 2>&1 &
    cluster_pids+=("$!")
    slurmd -D -N localhost >"$cluster_dir/log/slurmd.out" 2>&1 &
    cluster_pids+=("$!")
    # slurmctld can start and die later: trust only an answering controller and an idle node.
    local i pid state
    for i in $(seq 120); do
        for pid in "${cluster_pids[@]: -2}"; do
            kill -0 "$pid" 2>/dev/null || { i=120; break; }
        done
        ((i < 120)) || break
        if scontrol ping 2>/dev/null | grep -q 'is UP'; then
            state=$(sinfo -h -o %T 2>/dev/null)
            [ "$state" = idle ] && { cluster_log "node idle after $((i / 4)) s"; return 0; }
        fi
        sleep 0.25
    done
    cluster_log "no idle node (a daemon died, or 30 s passed); logs:"
    tail -n 20 "$cluster_dir"/log/*.log >&2
    return 1
}

cluster_stop() {
    [ -n "$cluster_dir" ] || return 0
    # slurmstepd ignores SIGTERM and outlives slurmd: cancel the jobs first.
    if [ -n "${SLURM_CONF:-}" ] && scontrol ping >/dev/null 2>&1; then
        scancel --full --signal=KILL --user=root 2>/dev/null
        local i
        for i in $(seq 40); do
            [ -z "$(squeue -h -t RUNNING,COMPLETING -o %i 2>/dev/null)" ] && break
            sleep 0.25
        done
    fi
    local k pid
    for ((k = ${#cluster_pids[@]} - 1; k >= 0; k--)); do
        pid=${cluster_pids[k]}
        kill "$pid" 2>/dev/null || continue
        for i in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
        kill -9 "$pid" 2>/dev/null
    done
    cluster_pids=()
    cluster_dir=""
}
