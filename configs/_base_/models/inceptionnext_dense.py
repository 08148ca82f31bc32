# The InceptionNeXt backbone as every dense config uses it (the authors' advice for dense tasks): SyncBN
# (BN when run on CPU), a norm on each of the four stage outputs (strides 4/8/16/32), no classification
# head; the T weights converted with `tools/model_converters/convert_weights.py SRC DST --backbone-only`. The model
# bases take it as `backbone=_base_.backbone`; leaves change the arch, drop path and checkpoint.
norm_cfg = dict(type='SyncBN', requires_grad=True)
pretrained = 'https://github.com/sail-sg/inceptionnext/releases/download/model/inceptionnext_tiny.pth'
backbone = dict(
    type='InceptionNeXt', arch='tiny', out_indices=(0, 1, 2, 3), out_norm=True, drop_path_rate=0.4,
    frozen_stages=-1, norm_eval=False, with_cp=False, norm_cfg=norm_cfg,
    init_cfg=dict(type='Pretrained', checkpoint=pretrained))
