_base_ = ['fpn_inceptionnext-t_8xb2-80k_ade20k-512x512.py']
# the official ImageNet-1k release: downloaded once into $TORCH_HOME/hub/checkpoints (a local path works too)
pretrained = 'https://github.com/sail-sg/inceptionnext/releases/download/model/inceptionnext_base.pth'
model = dict(
    backbone=dict(arch='base', drop_path_rate=0.3,
                  init_cfg=dict(checkpoint=pretrained)),
    neck=dict(in_channels=[128, 256, 512, 1024]))
