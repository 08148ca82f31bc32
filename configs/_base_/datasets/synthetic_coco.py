# The generated COCO-layout dataset of the tests and demos (tools/misc/synthetic_data.py coco): 160x128 images of
# non-overlapping drawn shapes with exact boxes and polygon masks, read by mmdet's own CocoDataset (classes
# through metainfo) and scored by CocoMetric (bbox and segm) on the held-out val2017 split.
#   python tools/misc/synthetic_data.py coco data/synthetic_coco
# Everything but the root, the classes, the image size and the iteration-based sampler is the COCO base's.
_base_ = ['./coco_instance.py']
data_root = 'data/synthetic_coco/'
metainfo = dict(classes=('rectangle', 'disc', 'triangle'),
                palette=[(220, 60, 60), (60, 170, 60), (60, 60, 220)])
# the base's pipelines at the generated images' size
train_pipeline = [dict(t, scale=(160, 128)) if t.type == 'Resize' else t for t in _base_.train_pipeline]
test_pipeline = [dict(t, scale=(160, 128)) if t.type == 'Resize' else t for t in _base_.test_pipeline]
train_dataloader = dict(
    batch_size=4, sampler=dict(type='InfiniteSampler'),
    dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator
