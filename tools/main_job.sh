#!/usr/bin/env bash
# The README's main job on its small embedded default: UperNet on InceptionNeXt-atto, trained on a
# generated ADE20K-layout dataset by 2 processes (tools/dist_train.sh; gloo on CPU), evaluated with
# mmseg's IoUMetric (per-class IoU table), then one prediction overlay and the training curves as PNGs.
# The model is the real atto UperNet config; --cfg-options shrink the head and schedule for CPU minutes.
#   env: ITERS (default 400), WORK_DIR (default work_dirs/main_job), DATA (default data/synthetic_ade)
set -euo pipefail
if [ $# -gt 0 ]; then
    echo "error: $0 takes no arguments (got $1); its settings are ITERS, WORK_DIR and DATA in the environment" >&2
    exit 2
fi
cd "$(dirname "$0")/.."
PY=.venv/bin/python
ITERS=${ITERS:-400}
WORK_DIR=${WORK_DIR:-work_dirs/main_job}
DATA=${DATA:-data/synthetic_ade}
CONFIG=configs/upernet_inceptionnext-atto_1xb8-160k_synthetic-ade-128x128.py
t0=$SECONDS

if [ ! -f "$DATA/meta.json" ]; then
    echo "== generating the ADE20K-layout dataset in $DATA"
    $PY tools/misc/synthetic_data.py ade "$DATA" --train 200 --val 50 --size 160 128
fi
echo "== training UperNet-atto for $ITERS iterations on 2 CPU processes (log: $WORK_DIR/train.log)"
mkdir -p "$WORK_DIR"
: > "$WORK_DIR/train.log"
warm=$((ITERS / 8))
bash tools/dist_train.sh "$CONFIG" 2 --work-dir "$WORK_DIR" --cfg-options \
    train_dataloader.dataset.data_root="$DATA" val_dataloader.dataset.data_root="$DATA" \
    test_dataloader.dataset.data_root="$DATA" \
    model.backbone.init_cfg=None model.decode_head.channels=64 model.auxiliary_head.channels=32 \
    train_dataloader.batch_size=4 train_dataloader.num_workers=1 val_dataloader.num_workers=1 \
    optim_wrapper.optimizer.lr=2e-3 \
    param_scheduler.0.end=$warm param_scheduler.1.begin=$warm param_scheduler.1.end="$ITERS" \
    train_cfg.max_iters="$ITERS" train_cfg.val_interval=$((ITERS / 4)) \
    default_hooks.checkpoint.interval="$ITERS" default_hooks.logger.interval=25 \
    > "$WORK_DIR/train.log" 2>&1 &
pid=$!
# Progress: the training and evaluation lines (with ETA) and the final per-class table, as they come.
tail -n +1 -f "$WORK_DIR/train.log" --pid=$pid | grep --line-buffered -E 'Iter\(train\)|Iter\(val\).*mIoU|^\||^\+|per class|error|Error' \
    | sed -u -E 's/^[0-9/]+ [0-9:]+ - mmengine - INFO - //; s/  (data_time|time|base_lr|decode.acc_seg|aux.acc_seg): [0-9.e+-]+//g' || true
wait $pid || { echo "training failed: see $WORK_DIR/train.log" >&2; exit 1; }

echo "== one prediction overlay and the training curves"
# the validation image (of the first 20) whose annotation holds the most classes: the overlay shows most
img=$($PY -c "
import glob, os, sys, cv2, numpy as np
anns = sorted(glob.glob(os.path.join(sys.argv[1], 'annotations/validation/*.png')))[:20]
best = max(anns, key=lambda p: len(np.unique(cv2.imread(p, cv2.IMREAD_UNCHANGED))))
print(best.replace('annotations', 'images').replace('.png', '.jpg'))" "$DATA")
$PY tools/misc/demo_seg.py "$img" "$WORK_DIR/$(basename "$CONFIG")" "$WORK_DIR/iter_$ITERS.pth" --out "$WORK_DIR/overlay.png"
$PY tools/analysis_tools/plot_logs.py "$WORK_DIR" --out "$WORK_DIR/curves.png"
echo "== done in $((SECONDS - t0)) s: $WORK_DIR/{overlay.png,curves.png,iter_$ITERS.pth}"
