# The generated COCO-layout dataset of the tests and demos (tools/misc/synthetic_data.py coco): 160x128 images of
# non-overlapping drawn shapes with exact boxes and polygon masks, read by mmdet's own CocoDataset (classes
# through metainfo) and scored by CocoMetric (bbox and segm) on the held-out val2017 split.
#   python tools/misc/synthetic_data.py coco data/synthetic_coco
# Everything but the root, the classes, the image size and the iteration-based sampler is the COCO base's.
_base_ = ['./coco_instance.py']
data_root = 'data/synthetic_coco/'
metainfo = dict(classes=('rectangle', 'disc', 'triangle'),
                palette=[(220, 60, 60), (60, 170, 60), (60, 60, 220)])
# LoadImageFromFile of the backbones scope: the checked loader (it names the file it cannot read), under the name
# that mmseg's / mmdet's inferencers look for and replace (docs/ecosystem.md).
train_pipeline = [
    dict(type='LoadImageFromFile', _scope_='backbones', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(160, 128), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', _scope_='backbones', backend_args=None),
    dict(type='Resize', scale=(160, 128), keep_ratio=True),  # the mask head reads scale_factor
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=4, sampler=dict(type='InfiniteSampler'),
    dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator
