_base_ = ['upernet_inceptionnext-t_8xb2-160k_ade20k-512x512.py']
# atto: channels 40/80/160/320, drop path 0.1 as in its classification recipe; a 256-channel head.
# the official ImageNet-1k release: downloaded once into $TORCH_HOME/hub/checkpoints (a local path works too)
pretrained = 'https://github.com/sail-sg/inceptionnext/releases/download/model/inceptionnext_atto.pth'
model = dict(
    backbone=dict(arch='atto', drop_path_rate=0.1,
                  init_cfg=dict(checkpoint=pretrained)),
    decode_head=dict(in_channels=[40, 80, 160, 320], channels=256),
    auxiliary_head=dict(in_channels=160, channels=128))
