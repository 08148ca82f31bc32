_base_ = ['fpn_inceptionnext-t_8xb2-80k_ade20k-512x512.py']
model = dict(backbone=dict(arch='small', drop_path_rate=0.2,
                           init_cfg=dict(checkpoint='checkpoints/inceptionnext_small_backbone.pth')))
