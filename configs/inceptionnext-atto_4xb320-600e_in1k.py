# InceptionNeXt-atto on ImageNet-1k, 224 (75.3 top-1), per the official scripts/train_inceptionnext_atto.sh:
# lr 1e-3 at batch 1280 (4 GPUs x 320, no accumulation), 600 epochs, warmup 5 from 5e-7, cosine to 5e-7,
# RandAugment rand-m5-inc1-mstd101, no colour jitter, mixup 0.2 (cutmix stays 1.0), random erasing 0.1,
# drop path 0.1. tools/dist_train.sh configs/inceptionnext-atto_4xb320-600e_in1k.py 4
_base_ = ['_base_/models/inceptionnext_cls.py', '_base_/datasets/imagenet.py',
          '_base_/schedules/imagenet_300e_adamw.py', '_base_/default_runtime.py']
model = dict(
    backbone=dict(arch='atto', drop_path_rate=0.1),
    data_preprocessor=dict(random_erasing=dict(probability=0.1), mixup=dict(mixup_alpha=0.2)))
randomness = dict(diff_rank_seed=True)
train_pipeline = [
    dict(type='LoadImagePIL'),
    dict(type='TimmTransform', input_size=224, is_training=True, scale=(0.08, 1.0), ratio=(3. / 4., 4. / 3.),
         hflip=0.5, vflip=0.0, color_jitter=0.0, auto_augment='rand-m5-inc1-mstd101', interpolation='bicubic'),
    dict(type='PackClsInputs'),
]
train_dataloader = dict(batch_size=320, dataset=dict(pipeline=train_pipeline))
optim_wrapper = dict(optimizer=dict(lr=1e-3), accumulative_counts=1)
param_scheduler = [
    dict(type='LinearLR', start_factor=5e-7 / 1e-3, by_epoch=True, begin=0, end=5, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=5e-7, by_epoch=True, begin=5, end=600, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=600)
auto_scale_lr = dict(base_batch_size=1280)
