# ImageNet-1k in its folder layout: data/imagenet/{train,val}/<wnid>/*.JPEG (train_cls.ImageNet; the class
# index is the wnid's position in the sorted train folders, as in timm and torchvision, and the val split
# maps its folders through the train list). Augmentation is timm's create_transform: RandomResizedCrop
# (0.08-1, 3/4-4/3) + flip + RandAugment rand-m9-mstd0.5-inc1, bicubic; eval resizes to 224 / crop_pct
# and centre-crops (crop_pct 0.875; the base leaf sets 0.95, the 384 one 1.0). Per-process batch 128
# (8 GPUs x 128 x 4 accumulation steps = 4096, the paper's batch).
default_scope = 'train_cls'
dataset_type = 'ImageNet'
data_root = 'data/imagenet'
train_pipeline = [
    dict(type='LoadImagePIL'),
    dict(type='TimmTransform', input_size=224, is_training=True, scale=(0.08, 1.0), ratio=(3. / 4., 4. / 3.),
         hflip=0.5, vflip=0.0, color_jitter=0.4, auto_augment='rand-m9-mstd0.5-inc1', interpolation='bicubic'),
    dict(type='PackClsInputs'),
]
test_pipeline = [
    dict(type='LoadImagePIL'),
    dict(type='TimmTransform', input_size=224, is_training=False, crop_pct=0.875, interpolation='bicubic'),
    dict(type='PackClsInputs'),
]
train_dataloader = dict(
    batch_size=128, num_workers=8, persistent_workers=True, pin_memory=True, drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(type=dataset_type, data_root=data_root, data_prefix=dict(img_path='train'), ann_file='',
                 classes=None, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=128, num_workers=8, persistent_workers=True, pin_memory=True, drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(type=dataset_type, data_root=data_root, data_prefix=dict(img_path='val'), ann_file='',
                 classes='train', pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_evaluator = val_evaluator
visualizer = dict(type='Visualizer', name='visualizer',
                  vis_backends=[dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')])
