# Mask R-CNN, InceptionNeXt-S + FPN, COCO, 3x multi-scale + crop: 12 decay layers, drop path 0.6.
_base_ = ['./mask-rcnn_inceptionnext-t_fpn_ms-crop-3x_coco.py']
model = dict(backbone=dict(arch='small', drop_path_rate=0.6,
                           init_cfg=dict(checkpoint='checkpoints/inceptionnext_small_backbone.pth')))
optim_wrapper = dict(paramwise_cfg=dict(num_layers=12))
