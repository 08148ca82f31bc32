# InceptionNeXt-B fine-tuned at 384 from the 224 weights (85.2 top-1), per the official
# scripts/finetune_inceptionnext_base.sh: 30 epochs, AdamW lr 5e-5 at batch 1024 (8 GPUs x 32 x 4
# accumulation), constant lr, no mixup/cutmix (label smoothing 0.1 stays), EMA of the weights with decay
# 0.9999 (MMEngine's EMAHook, momentum 1 - 0.9999; it also averages the BN statistics, as timm's
# ModelEmaV2), drop path 0.7, head dropout 0.5; eval at crop_pct 1.0.
# The start: model.init_cfg.checkpoint, a classifier in our layout (tools/model_converters/extract_backbone.py CKPT OUT
# --with-head, from a run of inceptionnext-b_8xb128-300e_in1k.py) or an official / timm inceptionnext_base file.
_base_ = ['_base_/models/inceptionnext_cls.py', '_base_/datasets/imagenet.py',
          '_base_/schedules/imagenet_300e_adamw.py', '_base_/default_runtime.py']
# the official ImageNet-1k release: downloaded once into $TORCH_HOME/hub/checkpoints (a local path works too)
pretrained = 'https://github.com/sail-sg/inceptionnext/releases/download/model/inceptionnext_base.pth'
model = dict(
    backbone=dict(arch='base', drop_path_rate=0.7),
    head=dict(drop_rate=0.5),
    data_preprocessor=dict(mixup=None),
    init_cfg=dict(_delete_=True, type='Pretrained', checkpoint=pretrained))
randomness = dict(diff_rank_seed=True)
# the base's pipelines at 384 (eval crop_pct 1.0)
train_pipeline = [dict(t, input_size=384) if t.type == 'TimmTransform' else t for t in _base_.train_pipeline]
test_pipeline = [dict(t, input_size=384, crop_pct=1.0) if t.type == 'TimmTransform' else t
                 for t in _base_.test_pipeline]
train_dataloader = dict(batch_size=32, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=32, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
optim_wrapper = dict(optimizer=dict(lr=5e-5), accumulative_counts=4)
param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=True, begin=0, end=30)]
train_cfg = dict(max_epochs=30)
auto_scale_lr = dict(base_batch_size=1024)
# the base's hooks (exact resume, the MMEngine fixes) and the EMA of the weights
custom_hooks = _base_.custom_hooks + [
    dict(type='EMAHook', momentum=1e-4, update_buffers=True, priority='ABOVE_NORMAL')]
