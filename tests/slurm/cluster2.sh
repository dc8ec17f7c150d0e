#!/usr/bin/env bash
# tests/slurm/cluster2.sh — a throw-away two-node Slurm cluster on one machine (CPU only):
# two network namespaces (the nodes n1 = 10.213.0.1 and n2 = 10.213.0.2) joined through veth
# pairs to a bridge that holds the controller's address (10.213.0.254) in the root namespace;
# a slurmd in each namespace with its own node name, spool and log; slurmctld and munge shared
# (the file system and Unix sockets are common to all namespaces).
#
#   source tests/slurm/cluster.sh; source tests/slurm/cluster2.sh
#   cluster2_start DIR      # namespaces, bridge, daemons; waits for 2 idle nodes; exports
#                           # SLURM_CONF
#   cluster2_kill_node N    # kill -9 every process of node N's namespace (slurmd included)
#   cluster2_start_slurmd N # start node N's slurmd again
#   cluster2_stop           # cancels jobs, stops the daemons by PID, deletes the namespaces
#
# DIR must not be under /tmp: every node has a /tmp of its own.
# Needs root, iproute2 and the packages of cluster.sh. Ports: XLMC_SLURM2_PORT (slurmctld,
# default 16917) and the next one (slurmd, once per namespace).

cluster2_dir=""
cluster2_ctld=""
declare -A cluster2_slurmd=()
cluster2_ns=(xlmc-n1 xlmc-n2)
cluster2_bridge=xlmcbr0

cluster2_log() { printf 'cluster2: %s\n' "$*" >&2; }

cluster2_net_up() {
    ip link add "$cluster2_bridge" type bridge || return 1
    ip addr add 10.213.0.254/24 dev "$cluster2_bridge" || return 1
    ip link set "$cluster2_bridge" up || return 1
    local k ns
    for k in 1 2; do
        ns=${cluster2_ns[k - 1]}
        ip netns add "$ns" || return 1
        ip link add "xlmc-v$k" type veth peer name "xlmc-b$k" || return 1
        ip link set "xlmc-v$k" netns "$ns" || return 1
        ip link set "xlmc-b$k" master "$cluster2_bridge" || return 1
        ip link set "xlmc-b$k" up || return 1
        ip -n "$ns" addr add "10.213.0.$k/24" dev "xlmc-v$k" || return 1
        ip -n "$ns" link set lo up || return 1
        ip -n "$ns" link set "xlmc-v$k" up || return 1
    done
}

cluster2_net_down() {
    local k
    for k in 1 2; do
        ip netns del "${cluster2_ns[k - 1]}" 2>/dev/null
        ip link del "xlmc-b$k" 2>/dev/null
    done
    ip link del "$cluster2_bridge" 2>/dev/null
    return 0
}

cluster2_write_conf() {
    local dir=$1 port=${XLMC_SLURM2_PORT:-16917}
    cat >"$dir/slurm.conf" <<CONF
# Written by tests/slurm/cluster2.sh: two CPU nodes in network namespaces, no accounting.
ClusterName=xlmctest2
SlurmctldHost=localhost(10.213.0.254)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
AuthType=auth/munge
CredType=cred/munge
AuthInfo=cred_expire=5
SlurmUser=slurm
SlurmdUser=root
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool-%n
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd-%n.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd-%n.log
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
# A node whose slurmd is gone is DOWN after this long, and its job requeued.
SlurmdTimeout=10
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
SlurmdParameters=config_overrides
NodeName=n1 NodeAddr=10.213.0.1 CPUs=4 RealMemory=4000 State=UNKNOWN
NodeName=n2 NodeAddr=10.213.0.2 CPUs=4 RealMemory=4000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
}

cluster2_start_slurmd() {
    local k=$1
    # nsenter, not `ip netns exec`: only the network namespace changes, so slurmd still sees
    # /sys/fs/cgroup (ip netns exec remounts /sys, and slurmd's cgroup setup then fails).
    # Each node gets its own /tmp, as real nodes have: PMIx keeps per-step directories there
    # under names that would collide (so the cluster's own files must live outside /tmp).
    # shellcheck disable=SC2016 # $1 and $2 are the inner shell's
    unshare --mount --propagation private sh -c \
        'mount -t tmpfs -o mode=1777 xlmc-tmp /tmp && exec nsenter --net="$1" slurmd -D -N "$2"' \
        sh "/run/netns/${cluster2_ns[k - 1]}" "n$k" \
        >"$cluster2_dir/log/slurmd-n$k.out" 2>&1 &
    cluster2_slurmd[$k]=$!
}

# Both nodes idle within 60 s.
cluster2_wait_idle() {
    for _ in $(seq 240); do
        if scontrol ping 2>/dev/null | grep -q 'is UP' &&
            [ "$(sinfo -h -N -o '%N %T' 2>/dev/null | sort | tr '\n' ' ')" = "n1 idle n2 idle " ]; then
            return 0
        fi
        sleep 0.25
    done
    cluster2_log "the nodes are not idle: $(sinfo -h -N -o '%N %T' 2>&1 | tr '\n' ' ')"
    return 1
}

cluster2_start() {
    cluster2_dir=$1
    command -v ip >/dev/null || { cluster2_log "iproute2 (ip) is missing"; return 1; }
    cluster_install || return 1
    cluster_start_munge || return 1
    chmod 0755 "$cluster2_dir"
    install -d -o slurm -g slurm "$cluster2_dir/state" "$cluster2_dir/log" "$cluster2_dir/run"
    install -d "$cluster2_dir/spool-n1" "$cluster2_dir/spool-n2"
    cluster2_write_conf "$cluster2_dir"
    export SLURM_CONF=$cluster2_dir/slurm.conf
    cluster2_net_up || { cluster2_log "could not set up the namespaces"; return 1; }
    slurmctld -D -i >"$cluster2_dir/log/slurmctld.out" 2>&1 &
    cluster2_ctld=$!
    cluster2_start_slurmd 1
    cluster2_start_slurmd 2
    cluster2_wait_idle
}

# kill -9 of every process in node K's namespace: its slurmd, slurmstepd and tasks
cluster2_kill_node() {
    local pids
    pids=$(ip netns pids "${cluster2_ns[$1 - 1]}")
    # shellcheck disable=SC2086 # one PID per word
    [ -z "$pids" ] || kill -9 $pids 2>/dev/null
    wait "${cluster2_slurmd[$1]}" 2>/dev/null
    cluster2_slurmd[$1]=""
    # A killed slurmstepd leaves its PMIx socket and directory in the spool; the requeued job
    # keeps its id, so its step could not create them again. A rebooted node has none.
    rm -rf "$cluster2_dir/spool-n$1"/*pmix*
}

cluster2_stop() {
    [ -n "$cluster2_dir" ] || return 0
    if [ -n "${SLURM_CONF:-}" ] && scontrol ping >/dev/null 2>&1; then
        scancel --full --signal=KILL --user=root 2>/dev/null
        for _ in $(seq 40); do
            [ -z "$(squeue -h -t RUNNING,COMPLETING -o %i 2>/dev/null)" ] && break
            sleep 0.25
        done
    fi
    local k
    for k in 1 2; do cluster2_kill_node "$k"; done
    if [ -n "$cluster2_ctld" ] && kill "$cluster2_ctld" 2>/dev/null; then
        for _ in $(seq 40); do kill -0 "$cluster2_ctld" 2>/dev/null || break; sleep 0.25; done
        kill -9 "$cluster2_ctld" 2>/dev/null
    fi
    cluster2_ctld=""
    cluster2_net_down
    cluster2_dir=""
}
