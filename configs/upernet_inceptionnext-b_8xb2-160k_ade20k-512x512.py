_base_ = ['upernet_inceptionnext-t_8xb2-160k_ade20k-512x512.py']
# base: channels 128/256/512/1024; drop path 0.4 as ConvNeXt-B's UperNet.
# the official ImageNet-1k release: downloaded once into $TORCH_HOME/hub/checkpoints (a local path works too)
pretrained = 'https://github.com/sail-sg/inceptionnext/releases/download/model/inceptionnext_base.pth'
model = dict(
    backbone=dict(arch='base', drop_path_rate=0.4,
                  init_cfg=dict(checkpoint=pretrained)),
    decode_head=dict(in_channels=[128, 256, 512, 1024]),
    auxiliary_head=dict(in_channels=512))
