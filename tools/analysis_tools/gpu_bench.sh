#!/usr/bin/env bash
# GPU speed of InceptionNeXt-T (fast path and plain) against timm's InceptionNeXt-T, ConvNeXt-T and ResNet-50:
#
#   tools/analysis_tools/gpu_bench.sh [--out DIR] [--dry-run] [--smoke] [--seg] [--tf32 on|off] [--models A,B]
#
# On one H100 / H200 with the stack installed it writes, within 8 minutes, DIR/rows.csv (every row as soon as it
# is measured), then DIR/gpu_bench.md (tables), DIR/gpu_bench.csv and DIR/*.png (default DIR:
# work_dirs/gpu_bench_<date>). Sections, each its own process under its time limit, train rows first:
#   train-eager     ours fast / plain, timm inception_next_tiny, convnext_tiny, resnet50: train step (AdamW,
#                   GradScaler), fp16 autocast then fp32, batch 128 at 224, channels-last, peak memory
#   train-compiled  ours fast / plain and ConvNeXt-T under torch.compile, fp16 autocast
#   infer-eager     the same plus ours deploy form, inference, fp16 autocast then fp32
#   infer-compiled  ours deploy form and ConvNeXt-T compiled, fp16 autocast
#   seg             (--seg only, beyond the 8 minutes) UperNet on ours vs on ConvNeXt-T at 512
# --dry-run prints the plan with its time budget and exits; --smoke runs the same code on CPU at tiny sizes (no
# time limits); --models runs only the named rows. fp32 rows use TF32 for matmuls and convolutions alike (--tf32,
# default on).
# Plan, method and columns: backbones/analysis/gpu_bench.py. Environment: PYTHON (default: python), and
# whatever torch reads (CUDA_VISIBLE_DEVICES, ...).
set -uo pipefail
cd "$(dirname "$0")/../.."

OUT="work_dirs/gpu_bench_$(date +%Y%m%d_%H%M%S)"
SMOKE=""
DRY=""
SEG=""
TF32="on"
MODELS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --out) OUT="$2"; shift 2 ;;
        --dry-run) DRY=1; shift ;;
        --smoke) SMOKE="--smoke"; shift ;;
        --seg) SEG="--seg"; shift ;;
        --tf32) TF32="$2"; shift 2 ;;
        --models) MODELS=(--models "$2"); shift 2 ;;
        -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "error: gpu_bench.sh: unknown argument '$1' (use --out DIR, --dry-run, --smoke, --seg, --tf32 on|off, --models A,B)" >&2; exit 2 ;;
    esac
done
case "$TF32" in on|off) ;; *) echo "error: gpu_bench.sh: --tf32 must be on or off, got '$TF32'" >&2; exit 2 ;; esac
PY="${PYTHON:-python}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if [ -n "$DRY" ]; then
    exec "$PY" -m backbones.analysis.gpu_bench --dry-run $SEG "${MODELS[@]}"
fi
if [ -z "$SMOKE" ] && ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "error: gpu_bench.sh: no CUDA GPU available to torch (torch.cuda.is_available() is false): run it on a GPU machine, or use --smoke for the CPU run (--dry-run prints the plan)" >&2
    exit 2
fi
SECTIONS=$("$PY" -m backbones.analysis.gpu_bench --sections $SEG "${MODELS[@]}") || exit 2
mkdir -p "$OUT" || exit 2
rm -f "$OUT/rows.csv"
"$PY" -m backbones.analysis.gpu_bench --header --out "$OUT" --tf32 "$TF32" $SMOKE || exit 1

status=0
start=$(date +%s)
while read -r name limit; do
    if [ -n "$SMOKE" ]; then
        "$PY" -u -m backbones.analysis.gpu_bench --section "$name" --out "$OUT" --tf32 "$TF32" $SMOKE "${MODELS[@]}" </dev/null 2>&1 | tee "$OUT/$name.log"
        rc=${PIPESTATUS[0]}
    else
        timeout --signal=INT --kill-after=5 "$limit" \
            "$PY" -u -m backbones.analysis.gpu_bench --section "$name" --out "$OUT" --tf32 "$TF32" "${MODELS[@]}" </dev/null 2>&1 | tee "$OUT/$name.log"
        rc=${PIPESTATUS[0]}
    fi
    case $rc in
        0) ;;
        124|130|137) echo "gpu_bench.sh: section $name stopped at its ${limit} s limit; its finished rows are kept" >&2; status=1 ;;
        *) echo "gpu_bench.sh: section $name exited with $rc (see $OUT/$name.log); its finished rows are kept" >&2; status=1 ;;
    esac
done <<< "$SECTIONS"
"$PY" -m backbones.analysis.gpu_bench --report --out "$OUT" $SEG "${MODELS[@]}" || status=1
echo "gpu_bench.sh: $(( $(date +%s) - start )) s; results in $OUT (rows.csv, gpu_bench.md, gpu_bench.csv, *.png)"
exit $status
