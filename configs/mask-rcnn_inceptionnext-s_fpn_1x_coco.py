# Mask R-CNN, InceptionNeXt-S + FPN, COCO, 1x: as T, with S's 27-block stage 2 split into 12 decay layers and
# the ConvNeXt-S detection recipe's drop path 0.6.
_base_ = ['./mask-rcnn_inceptionnext-t_fpn_1x_coco.py']
model = dict(backbone=dict(arch='small', drop_path_rate=0.6,
                           init_cfg=dict(checkpoint='checkpoints/inceptionnext_small_backbone.pth')))
optim_wrapper = dict(paramwise_cfg=dict(num_layers=12))
