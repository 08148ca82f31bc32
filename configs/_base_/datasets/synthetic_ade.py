# The generated ADE20K-layout dataset of the main job and the tests (tools/misc/synthetic_data.py): the real
# folder layout and mmseg pipeline, read through SyntheticADEDataset (an mmseg BaseSegDataset carrying the
# shapes' class names and palette; ADE20KDataset only accepts ADE's own 150 class names). Label 0 = ignore
# (reduce_zero_label), then background and five shape classes.
_base_ = ['./ade20k.py']  # the real layout, dataloaders, evaluator and visualizer; data and sizes below
dataset_type = 'backbones.SyntheticADEDataset'
data_root = 'data/synthetic_ade'
crop_size = (128, 128)
metainfo = dict(classes=('background', 'rectangle', 'disc', 'triangle', 'diamond', 'cross'))
# The base's steps in the base's order, at this data's scale, crop and classes; LoadAnnotations without its
# own reduce_zero_label (the dataset's applies).
train_pipeline = [
    dict(type='LoadAnnotations', _scope_='backbones') if t.type == 'LoadAnnotations' else
    dict(t, num_classes=len(metainfo['classes'])) if t.type == 'CheckSegMap' else
    dict(t, scale=(160, 128), ratio_range=(0.75, 1.5)) if t.type == 'RandomResize' else
    dict(t, crop_size=crop_size) if t.type == 'RandomCrop' else t
    for t in _base_.train_pipeline]
test_pipeline = [
    dict(type='LoadAnnotations', _scope_='backbones') if t.type == 'LoadAnnotations' else
    dict(t, num_classes=len(metainfo['classes'])) if t.type == 'CheckSegMap' else
    dict(t, scale=(160, 128)) if t.type == 'Resize' else t
    for t in _base_.test_pipeline]
tta_pipeline = _base_.tta_pipeline  # multi-scale + flip, at 3 scales instead of 6
tta_pipeline[1].transforms[0] = [dict(type='Resize', scale_factor=r, keep_ratio=True)
                                 for r in (0.75, 1.0, 1.25)]
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
