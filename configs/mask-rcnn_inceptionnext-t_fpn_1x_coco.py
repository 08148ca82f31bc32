# Mask R-CNN, InceptionNeXt-T + FPN, COCO, 1x (12 epochs) at total batch 16 (tools/dist_train.sh ... 8),
# AdamW 1e-4 with layer-wise lr decay 0.95 over 6 layers, drop path 0.4 (the ConvNeXt-T recipe).
_base_ = ['_base_/models/mask-rcnn_inceptionnext_fpn.py', '_base_/datasets/coco_instance.py',
          '_base_/schedules/det_1x_adamw.py', '_base_/default_runtime.py']
# the official ImageNet-1k release: downloaded once into $TORCH_HOME/hub/checkpoints (a local path works too)
pretrained = 'https://github.com/sail-sg/inceptionnext/releases/download/model/inceptionnext_tiny.pth'
model = dict(backbone=dict(init_cfg=dict(checkpoint=pretrained)))
