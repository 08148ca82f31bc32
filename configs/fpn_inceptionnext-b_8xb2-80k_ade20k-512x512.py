_base_ = ['fpn_inceptionnext-t_8xb2-80k_ade20k-512x512.py']
model = dict(
    backbone=dict(arch='base', drop_path_rate=0.3,
                  init_cfg=dict(checkpoint='checkpoints/inceptionnext_base_backbone.pth')),
    neck=dict(in_channels=[128, 256, 512, 1024]))
