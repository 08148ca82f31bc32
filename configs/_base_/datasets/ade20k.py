# ADE20K (mmseg's ADE20KDataset: images/{training,validation}/*.jpg, annotations/.../*.png, 150 classes
# after reduce_zero_label). Train at 512x512 crops of images resized to the 2048x512 scale.
default_scope = 'mmseg'
dataset_type = 'ADE20KDataset'
data_root = 'data/ade/ADEChallengeData2016'
crop_size = (512, 512)
num_classes = 150
# LoadImageFromFile of the backbones scope: the checked loader (it names the file it cannot read), under the name
# that mmseg's / mmdet's inferencers look for and replace (docs/ecosystem.md). LoadAnnotations of the backbones
# scope: mmseg's output bit for bit, each label file read once, its bit depth handed to CheckSegMap
# (docs/data_checks.md).
train_pipeline = [
    dict(type='LoadImageFromFile', _scope_='backbones'),
    dict(type='LoadAnnotations', reduce_zero_label=True, _scope_='backbones'),
    dict(type='CheckSegMap', num_classes=num_classes),
    dict(type='RandomResize', scale=(2048, 512), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', _scope_='backbones'),
    dict(type='Resize', scale=(2048, 512), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True, _scope_='backbones'),
    dict(type='CheckSegMap', num_classes=num_classes),
    dict(type='PackSegInputs'),
]
# Multi-scale + flip test ("MS" numbers): tools/test.py CONFIG CHECKPOINT --tta (tta_pipeline, tta_model).
img_ratios = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
tta_pipeline = [
    dict(type='LoadImageFromFile', _scope_='backbones'),
    dict(type='TestTimeAug', transforms=[
        [dict(type='Resize', scale_factor=r, keep_ratio=True) for r in img_ratios],
        [dict(type='RandomFlip', prob=0., direction='horizontal'),
         dict(type='RandomFlip', prob=1., direction='horizontal')],
        [dict(type='LoadAnnotations')],
        [dict(type='PackSegInputs')]]),
]
train_dataloader = dict(
    batch_size=2, num_workers=4, persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type=dataset_type, data_root=data_root,
                 data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=4, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root,
                 data_prefix=dict(img_path='images/validation', seg_map_path='annotations/validation'),
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
visualizer = dict(type='backbones.SegLocalVisualizer', name='visualizer',  # mmseg's, any image layout
                  vis_backends=[dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')])
tta_model = dict(type='SegTTAModel')
