# Detection 3x (36 epochs, lr steps after epochs 27 and 33) with the ConvNeXt detection recipe's optimizer
# (mmdet's convnext/mask-rcnn_convnext-t-p4-w7_fpn_amp-ms-crop-3x_coco.py): AdamW lr 1e-4, wd 0.05 (none on
# norms, biases, layer scales), layer-wise lr decay 0.95 over 6 layers, linear warmup over 1000 iterations
# from 0.001x; total batch 16. Cascade leaves raise lr to 2e-4 and the decay to 0.7, as that recipe does.
# Use with the multi-scale + crop training data of datasets/coco_instance_ms-crop.py.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='InceptionNeXtLayerDecayConstructor',
    paramwise_cfg=dict(decay_rate=0.95, decay_type='layer_wise', num_layers=6))
max_epochs = 36
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[27, 33], gamma=0.1),
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
