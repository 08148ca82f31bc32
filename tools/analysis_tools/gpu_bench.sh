#!/usr/bin/env bash
# GPU speed of InceptionNeXt-T against timm's InceptionNeXt-T, ConvNeXt-T and ResNet-50, one command:
#
#   tools/analysis_tools/gpu_bench.sh [--out DIR] [--dry-run]
#
# On one H100 / H200 with the stack installed it prints and writes, within 8 minutes, DIR/gpu_bench.md (tables),
# DIR/gpu_bench.csv and DIR/*.png (default DIR: work_dirs/gpu_bench_<date>):
#   cls-eager     ours T (fast path, plain path, deploy form) vs inception_next_tiny, convnext_tiny, resnet50:
#                 inference and train step, fp32 and fp16 autocast, batch 128 at 224, channels-last, train-step
#                 peak memory                                                               (limit 140 s)
#   seg           UperNet-T (fast, plain, deploy) vs ConvNeXt-T UperNet at 512, batch 16: inference and train
#                 step, fp16 autocast and fp32                                               (limit 80 s)
#   cls-compiled  the cls models under torch.compile (inductor), fp16 autocast               (limit 230 s)
# Each section runs in its own process under a time limit; rows are written after each group, so a section that
# fails or runs out of time keeps what it finished and the others still run. Method and columns:
# backbones/analysis/gpu_bench.py. --dry-run runs the same code on CPU at tiny sizes (no time limits).
# Environment: PYTHON (default: python), and whatever torch reads (CUDA_VISIBLE_DEVICES, ...).
set -uo pipefail
cd "$(dirname "$0")/../.."

OUT="work_dirs/gpu_bench_$(date +%Y%m%d_%H%M%S)"
SMOKE=""
while [ $# -gt 0 ]; do
    case "$1" in
        --out) OUT="$2"; shift 2 ;;
        --dry-run|--smoke) SMOKE="--smoke"; shift ;;
        -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "error: gpu_bench.sh: unknown argument '$1' (use --out DIR, --dry-run)" >&2; exit 2 ;;
    esac
done
PY="${PYTHON:-python}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if [ -z "$SMOKE" ] && ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "error: gpu_bench.sh: no CUDA GPU available to torch (torch.cuda.is_available() is false): run it on a GPU machine, or use --dry-run for the CPU smoke run" >&2
    exit 2
fi
mkdir -p "$OUT" || exit 2
rm -f "$OUT/rows.csv"
"$PY" -m backbones.analysis.gpu_bench --header --out "$OUT" $SMOKE || exit 1

status=0
section() {  # section NAME LIMIT_S
    local name=$1 limit=$2 rc
    if [ -n "$SMOKE" ]; then
        "$PY" -u -m backbones.analysis.gpu_bench --section "$name" --out "$OUT" $SMOKE 2>&1 | tee "$OUT/$name.log"
        rc=${PIPESTATUS[0]}
    else
        timeout --signal=INT --kill-after=15 "$limit" \
            "$PY" -u -m backbones.analysis.gpu_bench --section "$name" --out "$OUT" 2>&1 | tee "$OUT/$name.log"
        rc=${PIPESTATUS[0]}
    fi
    case $rc in
        0) ;;
        124|130|137) echo "gpu_bench.sh: section $name stopped at its ${limit} s limit; its finished groups are kept" >&2; status=1 ;;
        *) echo "gpu_bench.sh: section $name exited with $rc (see $OUT/$name.log); its finished groups are kept" >&2; status=1 ;;
    esac
}
start=$(date +%s)
section cls-eager 140
section seg 80
section cls-compiled 230
"$PY" -m backbones.analysis.gpu_bench --report --out "$OUT" || status=1
echo "gpu_bench.sh: $(( $(date +%s) - start )) s; results in $OUT (gpu_bench.md, gpu_bench.csv, *.png)"
exit $status
