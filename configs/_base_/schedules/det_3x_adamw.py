# Detection 3x (36 epochs, lr steps after epochs 27 and 33): the 1x schedule's ConvNeXt-recipe optimizer
# (mmdet's convnext/mask-rcnn_convnext-t-p4-w7_fpn_amp-ms-crop-3x_coco.py: AdamW 1e-4, wd 0.05, layer decay
# 0.95, warmup 1000 iterations, total batch 16), three times as long. Cascade leaves raise lr to 2e-4 and
# the decay to 0.7, as that recipe does. Use with the multi-scale + crop data of datasets/coco_instance_ms-crop.py.
_base_ = ['./det_1x_adamw.py']
max_epochs = 36
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[27, 33], gamma=0.1),
]
train_cfg = dict(max_epochs=max_epochs)
