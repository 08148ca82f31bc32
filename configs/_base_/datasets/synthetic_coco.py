# The generated COCO-layout dataset of the tests and demos (tools/synthetic_coco.py): 160x128 images of
# non-overlapping drawn shapes with exact boxes and polygon masks, read by mmdet's own CocoDataset (classes
# through metainfo) and scored by CocoMetric (bbox and segm) on the held-out val2017 split.
#   python tools/synthetic_coco.py data/synthetic_coco
default_scope = 'mmdet'
dataset_type = 'CocoDataset'
data_root = 'data/synthetic_coco/'
backend_args = None
metainfo = dict(classes=('rectangle', 'disc', 'triangle'),
                palette=[(220, 60, 60), (60, 170, 60), (60, 60, 220)])
train_pipeline = [
    dict(type='LoadImageFromFileChecked', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(160, 128), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFileChecked', backend_args=backend_args),
    dict(type='Resize', scale=(160, 128), keep_ratio=True),  # the mask head reads scale_factor
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=4, num_workers=2, persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    batch_sampler=dict(type='AspectRatioBatchSampler'),
    dataset=dict(
        type=dataset_type, data_root=data_root, metainfo=metainfo,
        ann_file='annotations/instances_train2017.json', data_prefix=dict(img='train2017/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=32),
        pipeline=train_pipeline, backend_args=backend_args))
val_dataloader = dict(
    batch_size=1, num_workers=2, persistent_workers=True, drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type, data_root=data_root, metainfo=metainfo,
        ann_file='annotations/instances_val2017.json', data_prefix=dict(img='val2017/'), test_mode=True,
        pipeline=test_pipeline, backend_args=backend_args))
test_dataloader = val_dataloader
val_evaluator = dict(
    type='CocoMetric', ann_file=data_root + 'annotations/instances_val2017.json', metric=['bbox', 'segm'],
    format_only=False, backend_args=backend_args)
test_evaluator = val_evaluator
visualizer = dict(type='DetLocalVisualizer', name='visualizer',
                  vis_backends=[dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')])
