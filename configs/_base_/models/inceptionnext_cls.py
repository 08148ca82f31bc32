# InceptionNeXt ImageNet classifier (train_cls.InceptionNeXtClassifier): backbone + MlpHead, state-dict keys
# backbone.* / head.* (the layout of tools/model_converters/convert_weights.py). The batch-wise part of the recipe
# lives in the data preprocessor (timm's prefetcher order): normalise, random erasing 0.25 ('pixel' noise), then
# mixup 0.8 / cutmix 1.0 (switch prob 0.5, per batch) with label smoothing 0.1 in the mixed targets and
# timm's SoftTargetCrossEntropy. With mixup off the model's label_smoothing applies (timm's
# LabelSmoothingCrossEntropy). Leaf configs set the arch and drop path.
model = dict(
    type='InceptionNeXtClassifier',
    backbone=dict(type='InceptionNeXt', arch='tiny', drop_path_rate=0.1, out_indices=(3, ),
                  norm_cfg=dict(type='BN', requires_grad=True), with_cp=False),
    head=dict(type='MlpHead', num_classes=1000, drop_rate=0.0),
    label_smoothing=0.1,
    data_preprocessor=dict(
        type='ClsDataPreprocessor',
        mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],  # ImageNet's, on 0..255 RGB
        random_erasing=dict(probability=0.25, mode='pixel', max_count=1, num_splits=0),
        mixup=dict(mixup_alpha=0.8, cutmix_alpha=1.0, cutmix_minmax=None, prob=1.0, switch_prob=0.5,
                   mode='batch', label_smoothing=0.1)),
    init_cfg=None)
