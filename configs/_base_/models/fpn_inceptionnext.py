# Semantic FPN on InceptionNeXt-T (mmseg EncoderDecoder + FPN neck + FPNHead), as in the PoolFormer
# baseline the paper follows; SyncBN (BN on CPU) and a norm on each stage output.
_base_ = ['./inceptionnext_dense.py']
data_preprocessor = dict(
    type='SegDataPreProcessor', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True, pad_val=0, seg_pad_val=255, size=(512, 512))
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=_base_.backbone,  # drop path: the leaves (T 0.1)
    neck=dict(type='FPN', in_channels=[96, 192, 384, 768], out_channels=256, num_outs=4),
    decode_head=dict(
        type='FPNHead', in_channels=[256, 256, 256, 256], in_index=[0, 1, 2, 3], feature_strides=[4, 8, 16, 32],
        channels=128, dropout_ratio=0.1, num_classes=150, norm_cfg=_base_.norm_cfg, align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
