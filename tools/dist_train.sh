#!/usr/bin/env bash
# tools/dist_train.sh CONFIG GPUS [train.py options]
# GPUS processes on this node via torchrun (NCCL, one per GPU; without GPUs: CPU processes over gloo);
# tools/launch/dist_run.py is torchrun without its traceback when a process fails (it exits with that code).
# Multi-node: set NNODES, NODE_RANK, MASTER_ADDR and PORT the same way on every node.
# torchrun's elastic options go to torchrun, anywhere among the options: --max-restarts N,
# --monitor-interval S, --rdzv-backend B, --rdzv-endpoint HOST:PORT, --rdzv-id ID, --rdzv-conf K=V,...
# (also spelt with '_', or as --option=value);
# a restarted group resumes from the work dir's last checkpoint (tools/train.py; docs/reliability.md).
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 CONFIG GPUS [train.py options]" >&2
    echo "error: CONFIG and GPUS are required" >&2; exit 2
fi
CONFIG=$1; GPUS=$2; shift 2
if ! [[ "$GPUS" =~ ^[1-9][0-9]*$ ]]; then
    echo "error: GPUS must be a positive number of processes per node, got '$GPUS'" >&2; exit 2
fi
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-$([ -x "$ROOT/.venv/bin/python" ] && echo "$ROOT/.venv/bin/python" || echo python)}
TORCHRUN_ARGS=(); TRAIN_ARGS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --max[-_]restarts=*|--monitor[-_]interval=*|--rdzv[-_]*=*) TORCHRUN_ARGS+=("$1"); shift ;;
        --max[-_]restarts|--monitor[-_]interval|--rdzv[-_]*)
            if [ $# -lt 2 ]; then echo "error: $1 needs a value (a torchrun option)" >&2; exit 2; fi
            TORCHRUN_ARGS+=("$1=$2"); shift 2 ;;
        *) TRAIN_ARGS+=("$1"); shift ;;
    esac
done
exec "$PYTHON" "$ROOT/tools/launch/dist_run.py" \
    --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" --nproc_per_node="$GPUS" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="${PORT:-29500}" \
    ${TORCHRUN_ARGS[@]+"${TORCHRUN_ARGS[@]}"} \
    "$ROOT/tools/train.py" "$CONFIG" --launcher pytorch ${TRAIN_ARGS[@]+"${TRAIN_ARGS[@]}"}
