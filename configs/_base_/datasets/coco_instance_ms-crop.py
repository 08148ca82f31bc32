# COCO instance segmentation with the multi-scale + crop training of the ConvNeXt / Swin 3x recipes
# (from DETR / Sparse R-CNN): shorter side 480..800 in steps of 32 (longer side <= 1333), or half the
# time a resize to 400..600, a random crop of 384..600 and the same multi-scale resize. Evaluation as
# coco_instance.
_base_ = ['./coco_instance.py']
_ms_scales = [(480, 1333), (512, 1333), (544, 1333), (576, 1333), (608, 1333), (640, 1333), (672, 1333),
              (704, 1333), (736, 1333), (768, 1333), (800, 1333)]
# LoadImageFromFile of the backbones scope: the checked loader (it names the file it cannot read), under the name
# that mmseg's / mmdet's inferencers look for and replace (docs/ecosystem.md).
train_pipeline = [
    dict(type='LoadImageFromFile', _scope_='backbones', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomChoice', transforms=[
        [dict(type='RandomChoiceResize', scales=_ms_scales, keep_ratio=True)],
        [dict(type='RandomChoiceResize', scales=[(400, 1333), (500, 1333), (600, 1333)], keep_ratio=True),
         dict(type='RandomCrop', crop_type='absolute_range', crop_size=(384, 600), allow_negative_crop=True),
         dict(type='RandomChoiceResize', scales=_ms_scales, keep_ratio=True)]]),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
