#!/usr/bin/env bash
# tools/slurm_train.sh PARTITION JOB_NAME CONFIG [--requeue] [train.py options]
# env: GPUS (processes in all, default 8), GPUS_PER_NODE (default 8; 0 for CPU nodes: no --gres,
#      TASKS_PER_NODE processes per node, default GPUS), CPUS_PER_TASK (5), SRUN_ARGS, PORT (default 29500)
# MASTER_ADDR: the first host of the node list (scontrol show hostnames), found by each process on CPU nodes
# and by MMEngine on GPU nodes. A requeued job (SLURM_RESTART_COUNT > 0) resumes from the work dir's last
# checkpoint by itself (tools/train.py). --requeue, in an sbatch job: when the run stopped on SIGTERM or
# SIGUSR1 and saved a checkpoint (exit 143 / 138), the job requeues itself (scontrol requeue $SLURM_JOB_ID)
# and the requeued job continues from that checkpoint (docs/reliability.md: the sbatch --signal recipe).
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: $0 PARTITION JOB_NAME CONFIG [--requeue] [train.py options]" >&2
    echo "error: PARTITION, JOB_NAME and CONFIG are required" >&2; exit 2
fi
PARTITION=$1; JOB_NAME=$2; CONFIG=$3; shift 3
REQUEUE=0; ARGS=()
for a in "$@"; do
    if [ "$a" = --requeue ]; then REQUEUE=1; else ARGS+=("$a"); fi
done
GPUS=${GPUS:-8}; GPUS_PER_NODE=${GPUS_PER_NODE:-8}; CPUS_PER_TASK=${CPUS_PER_TASK:-5}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-$([ -x "$ROOT/.venv/bin/python" ] && echo "$ROOT/.venv/bin/python" || echo python)}
export MASTER_PORT=${PORT:-29500}
command -v srun >/dev/null || {
    echo "error: srun not found: $0 runs under Slurm (on one machine: tools/dist_train.sh)" >&2; exit 2; }
if [ "$REQUEUE" = 1 ] && [ -z "${SLURM_JOB_ID:-}" ]; then
    echo "error: --requeue needs a batch job to requeue (SLURM_JOB_ID is not set): run $0 in sbatch" >&2
    exit 2
fi
if [ "$GPUS_PER_NODE" = 0 ]; then
    NODE_ARGS=(--ntasks-per-node="${TASKS_PER_NODE:-$GPUS}")
else
    NODE_ARGS=(--gres=gpu:"$GPUS_PER_NODE" --ntasks-per-node="$GPUS_PER_NODE")
fi
rc=0
srun -p "$PARTITION" --job-name="$JOB_NAME" --ntasks="$GPUS" "${NODE_ARGS[@]}" \
    --cpus-per-task="$CPUS_PER_TASK" --kill-on-bad-exit=1 ${SRUN_ARGS:-} \
    "$PYTHON" -u "$ROOT/tools/train.py" "$CONFIG" --launcher slurm ${ARGS[@]+"${ARGS[@]}"} || rc=$?
if [ "$REQUEUE" = 1 ] && { [ "$rc" = 143 ] || [ "$rc" = 138 ]; }; then
    echo "slurm_train.sh: the run saved a checkpoint and stopped on a signal (exit $rc):" \
        "requeueing job $SLURM_JOB_ID" >&2
    scontrol requeue "$SLURM_JOB_ID"
fi
exit "$rc"
