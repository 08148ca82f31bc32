# Mask R-CNN, InceptionNeXt-T + FPN, COCO, 3x (36 epochs) with multi-scale + crop training: the ConvNeXt-T
# recipe of mmdet's convnext/mask-rcnn_convnext-t-p4-w7_fpn_amp-ms-crop-3x_coco.py (AdamW 1e-4, layer-wise
# decay 0.95 over 6 layers, drop path 0.4, batch 16; add --amp on GPUs as that config does).
_base_ = ['_base_/models/mask-rcnn_inceptionnext_fpn.py', '_base_/datasets/coco_instance_ms-crop.py',
          '_base_/schedules/det_3x_adamw.py', '_base_/default_runtime.py']
# the official ImageNet-1k release: downloaded once into $TORCH_HOME/hub/checkpoints (a local path works too)
pretrained = 'https://github.com/sail-sg/inceptionnext/releases/download/model/inceptionnext_tiny.pth'
model = dict(backbone=dict(init_cfg=dict(checkpoint=pretrained)))
