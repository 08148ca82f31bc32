# Mask R-CNN, InceptionNeXt-S + FPN, COCO, 1x: as T, with S's 27-block stage 2 split into 12 decay layers and
# the ConvNeXt-S detection recipe's drop path 0.6.
_base_ = ['./mask-rcnn_inceptionnext-t_fpn_1x_coco.py']
# the official ImageNet-1k release: downloaded once into $TORCH_HOME/hub/checkpoints (a local path works too)
pretrained = 'https://github.com/sail-sg/inceptionnext/releases/download/model/inceptionnext_small.pth'
model = dict(backbone=dict(arch='small', drop_path_rate=0.6,
                           init_cfg=dict(checkpoint=pretrained)))
optim_wrapper = dict(paramwise_cfg=dict(num_layers=12))
