# The generated ADE20K-layout dataset of the main job and the tests (tools/synthetic_data.py): the real
# folder layout and mmseg pipeline, read through BaseSegDataset because ADE20KDataset only accepts ADE's
# own 150 class names. Label 0 = ignore (reduce_zero_label), then background and five shape classes.
default_scope = 'mmseg'
dataset_type = 'BaseSegDataset'
data_root = 'data/synthetic_ade'
crop_size = (128, 128)
metainfo = dict(classes=('background', 'rectangle', 'disc', 'triangle', 'diamond', 'cross'))
train_pipeline = [
    dict(type='LoadImageFromFileChecked'),
    dict(type='LoadAnnotations'),  # the dataset's reduce_zero_label applies
    dict(type='CheckSegMap', num_classes=len(metainfo["classes"])),
    dict(type='RandomResize', scale=(160, 128), ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFileChecked'),
    dict(type='Resize', scale=(160, 128), keep_ratio=True),
    dict(type='LoadAnnotations'),  # the dataset's reduce_zero_label applies
    dict(type='CheckSegMap', num_classes=len(metainfo["classes"])),
    dict(type='PackSegInputs'),
]
tta_pipeline = [
    dict(type='LoadImageFromFileChecked'),
    dict(type='TestTimeAug', transforms=[
        [dict(type='Resize', scale_factor=r, keep_ratio=True) for r in (0.75, 1.0, 1.25)],
        [dict(type='RandomFlip', prob=0., direction='horizontal'),
         dict(type='RandomFlip', prob=1., direction='horizontal')],
        [dict(type='LoadAnnotations')],
        [dict(type='PackSegInputs')]]),
]
tta_model = dict(type='SegTTAModel')
_dataset = dict(type=dataset_type, data_root=data_root, metainfo=metainfo, img_suffix='.jpg',
                seg_map_suffix='.png', reduce_zero_label=True)
train_dataloader = dict(
    batch_size=8, num_workers=2, persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(**_dataset, data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=2, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(**_dataset, data_prefix=dict(img_path='images/validation',
                                              seg_map_path='annotations/validation'),
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
visualizer = dict(type='SegLocalVisualizer', name='visualizer',
                  vis_backends=[dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')])
