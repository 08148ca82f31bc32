# UperNet 160k as in the ConvNeXt baseline the paper follows: AdamW lr 1e-4, wd 0.05, stage-wise lr decay
# 0.9 over 6 layers, linear warmup 1500 iterations, then poly (power 1) to 0; total batch 16 (8 GPUs x 2).
_base_ = ['./seg_iter_based.py']
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='InceptionNeXtLayerDecayConstructor',
    paramwise_cfg=dict(decay_rate=0.9, decay_type='stage_wise', num_layers=6))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=1500, end=160000),
]
