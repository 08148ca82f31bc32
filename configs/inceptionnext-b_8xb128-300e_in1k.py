# InceptionNeXt-B on ImageNet-1k, 224 (84.0 top-1): the T recipe with drop path 0.4; evaluated at
# crop_pct 0.95 (timm's inception_next_base).
_base_ = ['_base_/models/inceptionnext_cls.py', '_base_/datasets/imagenet.py',
          '_base_/schedules/imagenet_300e_adamw.py', '_base_/default_runtime.py']
model = dict(backbone=dict(arch='base', drop_path_rate=0.4))
randomness = dict(diff_rank_seed=True)
test_pipeline = [
    dict(type='LoadImagePIL'),
    dict(type='TimmTransform', input_size=224, is_training=False, crop_pct=0.95, interpolation='bicubic'),
    dict(type='PackClsInputs'),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
