# Cascade Mask R-CNN, InceptionNeXt-S + FPN, COCO, 3x: as the ConvNeXt-S cascade recipe (lr 2e-4, decay 0.7
# over 12 layers, drop path 0.6).
_base_ = ['./cascade-mask-rcnn_inceptionnext-t_fpn_4conv1fc-giou_ms-crop-3x_coco.py']
# the official ImageNet-1k release: downloaded once into $TORCH_HOME/hub/checkpoints (a local path works too)
pretrained = 'https://github.com/sail-sg/inceptionnext/releases/download/model/inceptionnext_small.pth'
model = dict(backbone=dict(arch='small', drop_path_rate=0.6,
                           init_cfg=dict(checkpoint=pretrained)))
optim_wrapper = dict(paramwise_cfg=dict(num_layers=12))
