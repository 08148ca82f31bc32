# Mask R-CNN on InceptionNeXt-atto + FPN for the generated COCO-layout dataset (tools/misc/synthetic_data.py
# coco, 3 shape classes, 160x128): the real Mask R-CNN heads and AdamW + layer-decay optimizer,
# iteration-based (500 iterations at batch 4, lr 1e-3 as for training from scratch on such a small task; steps
# at 400).
# CPU runs shrink the heads through --cfg-options (tests/apis/test_det_train.py: channels 64, 64 sampled RoIs,
# anchor scale 4), and the backbone starts from the official atto release (`pretrained`, downloaded once and
# converted on load) or any file or URL given as model.backbone.init_cfg.checkpoint=...
_base_ = ['_base_/models/mask-rcnn_inceptionnext_fpn.py', '_base_/datasets/synthetic_coco.py',
          '_base_/schedules/det_1x_adamw.py', '_base_/default_runtime.py']
num_classes = 3
# the official ImageNet-1k release: downloaded once into $TORCH_HOME/hub/checkpoints (a local path works too)
pretrained = 'https://github.com/sail-sg/inceptionnext/releases/download/model/inceptionnext_atto.pth'
model = dict(
    backbone=dict(arch='atto', drop_path_rate=0.1,
                  init_cfg=dict(checkpoint=pretrained)),
    neck=dict(in_channels=[40, 80, 160, 320]),
    roi_head=dict(bbox_head=dict(num_classes=num_classes), mask_head=dict(num_classes=num_classes)))
optim_wrapper = dict(optimizer=dict(lr=1e-3))
max_iters = 500
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters, milestones=[400], gamma=0.1),
]
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
log_processor = dict(by_epoch=False)
default_hooks = dict(logger=dict(interval=50, log_metric_by_epoch=False),
                     checkpoint=dict(by_epoch=False, interval=max_iters))
