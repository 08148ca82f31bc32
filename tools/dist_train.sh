#!/usr/bin/env bash
# tools/dist_train.sh CONFIG GPUS [train.py options]
# GPUS processes on this node via torchrun (NCCL, one per GPU; without GPUs: CPU processes over gloo);
# tools/dist_run.py is torchrun without its traceback when a process fails (it exits with that code).
# Multi-node: set NNODES, NODE_RANK, MASTER_ADDR and PORT the same way on every node.
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
exec "$PYTHON" "$ROOT/tools/dist_run.py" \
    --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" --nproc_per_node="$GPUS" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="${PORT:-29500}" \
    "$ROOT/tools/train.py" "$CONFIG" --launcher pytorch "$@"
