_base_ = ['upernet_inceptionnext-t_8xb2-160k_ade20k-512x512.py']
# small: the same channels as tiny, 27 blocks in stage 3; drop path 0.3 as ConvNeXt-S's UperNet.
# the official ImageNet-1k release: downloaded once into $TORCH_HOME/hub/checkpoints (a local path works too)
pretrained = 'https://github.com/sail-sg/inceptionnext/releases/download/model/inceptionnext_small.pth'
model = dict(backbone=dict(arch='small', drop_path_rate=0.3,
                           init_cfg=dict(checkpoint=pretrained)))
