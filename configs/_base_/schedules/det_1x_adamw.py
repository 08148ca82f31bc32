# Detection 1x (12 epochs, lr steps after epochs 8 and 11) with the ConvNeXt detection recipe's
# optimizer: AdamW lr 1e-4, betas (0.9, 0.999), wd 0.05 (none on norms, biases and layer scales),
# layer-wise lr decay 0.95 over 6 layers (12 for the 27-block stage 2 of S and B: the leaf sets num_layers),
# linear warmup over 1000 iterations from 0.001x; total batch 16 (8 GPUs x 2; auto_scale_lr rescales when
# enabled). The ConvNeXt recipe trains with mixed precision: add --amp to tools/train.py on GPUs.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='InceptionNeXtLayerDecayConstructor',
    paramwise_cfg=dict(decay_rate=0.95, decay_type='layer_wise', num_layers=6))
max_epochs = 12
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[8, 11], gamma=0.1),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
auto_scale_lr = dict(enable=False, base_batch_size=16)
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=True)
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='DetVisualizationHook'))
