# RetinaNet, InceptionNeXt-T + FPN, COCO boxes, 1x at total batch 16, with the same AdamW recipe as the
# Mask R-CNN 1x (lr 1e-4, wd 0.05, layer-wise decay 0.95 over 6 layers, drop path 0.4).
_base_ = ['_base_/models/retinanet_inceptionnext_fpn.py', '_base_/datasets/coco_detection.py',
          '_base_/schedules/det_1x_adamw.py', '_base_/default_runtime.py']
# the official ImageNet-1k release: downloaded once into $TORCH_HOME/hub/checkpoints (a local path works too)
pretrained = 'https://github.com/sail-sg/inceptionnext/releases/download/model/inceptionnext_tiny.pth'
model = dict(backbone=dict(init_cfg=dict(checkpoint=pretrained)))
