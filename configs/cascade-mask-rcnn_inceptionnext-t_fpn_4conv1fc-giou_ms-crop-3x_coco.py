# Cascade Mask R-CNN, InceptionNeXt-T + FPN, COCO, 3x multi-scale + crop: the ConvNeXt-T cascade recipe of
# mmdet's convnext/cascade-mask-rcnn_convnext-t-p4-w7_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py (4conv1fc
# GIoU heads, AdamW lr 2e-4, layer-wise decay 0.7 over 6 layers, drop path 0.4, batch 16).
_base_ = ['_base_/models/cascade-mask-rcnn_inceptionnext_fpn.py', '_base_/datasets/coco_instance_ms-crop.py',
          '_base_/schedules/det_3x_adamw.py', '_base_/default_runtime.py']
# the official ImageNet-1k release: downloaded once into $TORCH_HOME/hub/checkpoints (a local path works too)
pretrained = 'https://github.com/sail-sg/inceptionnext/releases/download/model/inceptionnext_tiny.pth'
model = dict(backbone=dict(init_cfg=dict(checkpoint=pretrained)))
optim_wrapper = dict(optimizer=dict(lr=2e-4), paramwise_cfg=dict(decay_rate=0.7))
