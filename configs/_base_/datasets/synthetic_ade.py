# The generated ADE20K-layout dataset of the main job and the tests (tools/misc/synthetic_data.py): the real
# folder layout and mmseg pipeline, read through SyntheticADEDataset (an mmseg BaseSegDataset carrying the
# shapes' class names and palette; ADE20KDataset only accepts ADE's own 150 class names). Label 0 = ignore
# (reduce_zero_label), then background and five shape classes.
_base_ = ['./ade20k.py']  # the real layout, dataloaders, evaluator and visualizer; data and sizes below
dataset_type = 'backbones.SyntheticADEDataset'
data_root = 'data/synthetic_ade'
crop_size = (128, 128)
metainfo = dict(classes=('background', 'rectangle', 'disc', 'triangle', 'diamond', 'cross'))
# LoadImageFromFile of the backbones scope: the checked loader (it names the file it cannot read), under the name
# that mmseg's / mmdet's inferencers look for and replace (docs/ecosystem.md).
train_pipeline = [
    dict(type='LoadImageFromFile', _scope_='backbones'),
    dict(type='LoadAnnotations'),  # the dataset's reduce_zero_label applies
    dict(type='CheckSegMap', num_classes=len(metainfo["classes"])),
    dict(type='RandomResize', scale=(160, 128), ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', _scope_='backbones'),
    dict(type='Resize', scale=(160, 128), keep_ratio=True),
    dict(type='LoadAnnotations'),  # the dataset's reduce_zero_label applies
    dict(type='CheckSegMap', num_classes=len(metainfo["classes"])),
    dict(type='PackSegInputs'),
]
tta_pipeline = [
    dict(type='LoadImageFromFile', _scope_='backbones'),
    dict(type='TestTimeAug', transforms=[
        [dict(type='Resize', scale_factor=r, keep_ratio=True) for r in (0.75, 1.0, 1.25)],
        [dict(type='RandomFlip', prob=0., direction='horizontal'),
         dict(type='RandomFlip', prob=1., direction='horizontal')],
        [dict(type='LoadAnnotations')],
        [dict(type='PackSegInputs')]]),
]
_dataset = dict(type=dataset_type, data_root=data_root, metainfo=metainfo, img_suffix='.jpg',
                seg_map_suffix='.png', reduce_zero_label=True)
train_dataloader = dict(
    batch_size=8, num_workers=2,
    dataset=dict(_delete_=True, **_dataset, pipeline=train_pipeline,
                 data_prefix=dict(img_path='images/training', seg_map_path='annotations/training')))
val_dataloader = dict(
    num_workers=2,
    dataset=dict(_delete_=True, **_dataset, pipeline=test_pipeline,
                 data_prefix=dict(img_path='images/validation', seg_map_path='annotations/validation')))
test_dataloader = val_dataloader
