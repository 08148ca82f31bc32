# The paper's ImageNet schedule (official train.py defaults + README script): AdamW lr 4e-3 at total batch
# 4096, betas (0.9, 0.999), weight decay 0.05 except on biases, norms and other 1-d parameters (layer
# scale), as timm's optimizer factory does; 300 epochs, linear warmup from 1e-6 over 20 epochs, then
# cosine to 1e-5, stepped per iteration. Gradient accumulation 4 (OptimWrapper.accumulative_counts).
# auto_scale_lr rescales the lr linearly when world size x batch x accumulation differs from 4096.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=4e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05),
    accumulative_counts=4,
    clip_grad=None,
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6 / 4e-3, by_epoch=True, begin=0, end=20, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=20, end=300, convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=300, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
auto_scale_lr = dict(enable=True, base_batch_size=4096)
log_processor = dict(by_epoch=True, window_size=50)
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=100),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3, save_best='accuracy/top1',
                    rule='greater'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    # BN statistics averaged over the processes after each epoch (timm's --dist-bn reduce)
    sync_buffers=dict(type='SyncBuffersHook'))
