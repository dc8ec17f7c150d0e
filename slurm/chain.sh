#!/bin/bash
# slurm/chain.sh — for clusters that forbid requeue: submit N jobs that run one after another.
#
#   slurm/chain.sh N [SCRIPT] [sbatch options...]
#   e.g.  slurm/chain.sh 10                      # 10 x the time limit of pretrain.sbatch
#         slurm/chain.sh 4 slurm/finetune.sbatch --time=06:00:00
# Each job starts when the previous one has ended, however it ended (afterany: `afterok` on a
# job that stopped at its time limit would wait forever), and resumes from the run directory's
# newest checkpoint. The jobs do not requeue themselves (XLMC_REQUEUE=0, --no-requeue); a job
# that finds the training finished exits at once. Cancel the rest with `scancel --name NAME`.
# What to edit: nothing here; the job script's #SBATCH lines and variables decide the run.
set -euo pipefail

usage() { echo "usage: slurm/chain.sh N [SCRIPT] [sbatch options...]" >&2; exit 2; }
[ $# -ge 1 ] || usage
n=$1
shift
[[ $n =~ ^[1-9][0-9]*$ ]] || usage
script=slurm/pretrain.sbatch
if [ $# -ge 1 ] && [[ $1 != -* ]]; then
    script=$1
    shift
fi
[ -f "$script" ] || { echo "chain.sh: error: no job script '$script'" >&2; exit 2; }

export XLMC_REQUEUE=0
prev=""
for ((i = 1; i <= n; i++)); do
    dep=()
    [ -n "$prev" ] && dep=(--dependency="afterany:$prev")
    prev=$(sbatch --parsable --no-requeue "${dep[@]}" "$@" "$script")
    prev=${prev%%;*} # "jobid;cluster" on federated sites
    echo "job $i/$n: $prev${dep[*]:+ (${dep[*]})}"
done
