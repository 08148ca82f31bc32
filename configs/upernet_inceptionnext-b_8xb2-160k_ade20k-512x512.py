_base_ = ['upernet_inceptionnext-t_8xb2-160k_ade20k-512x512.py']
# base: channels 128/256/512/1024; drop path 0.4 as ConvNeXt-B's UperNet.
model = dict(
    backbone=dict(arch='base', drop_path_rate=0.4,
                  init_cfg=dict(checkpoint='checkpoints/inceptionnext_base_backbone.pth')),
    decode_head=dict(in_channels=[128, 256, 512, 1024]),
    auxiliary_head=dict(in_channels=512))
