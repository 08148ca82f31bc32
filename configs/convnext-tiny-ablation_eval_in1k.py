# The paper's ConvNeXt-T ablation rows as released, on ImageNet-1k at 224: convnext_tiny (Meta's ConvNeXt-T),
# convnext_tiny_k5, convnext_tiny_k3 and convnext_tiny_k3_par{1_2,3_8,1_4,1_8,1_16} (the InceptionNeXt
# release's files). The arch is an option (default convnext_tiny); the model is ConvNeXt's: LayerNorm,
# channels-last Linear MLP, head pool -> LayerNorm -> Linear (MlpHead with the backbone's head_mlp_ratio 0).
# Evaluation as released: resize the short side to 224 / 0.875 = 256 (bicubic), centre crop 224, ImageNet
# mean / std (the dataset base's test pipeline). Evaluate a released file after converting it:
#   python tools/model_converters/convert_weights.py convnext_tiny_k3_par1_8_1k_224_ema.pth k3_par1_8.pth \
#       --arch convnext_tiny_k3_par1_8
#   python tools/test.py configs/convnext-tiny-ablation_eval_in1k.py k3_par1_8.pth \
#       --cfg-options model.backbone.arch=convnext_tiny_k3_par1_8
# (model.init_cfg=dict(type='Pretrained', checkpoint=FILE) also takes the released file itself, converted on load.)
# Training inherits the T recipe (AdamW 4e-3 at batch 4096, 300 epochs, drop path 0.1), ConvNeXt-T's.
_base_ = ['_base_/models/inceptionnext_cls.py', '_base_/datasets/imagenet.py',
          '_base_/schedules/imagenet_300e_adamw.py', '_base_/default_runtime.py']
model = dict(
    # norm_cfg=None: the arch's own norms (the ConvNeXt rows accept no BN norm_cfg).
    backbone=dict(arch='convnext_tiny', norm_cfg=None, drop_path_rate=0.1),
    head=dict(num_classes=1000))
test_pipeline = [
    dict(type='LoadImagePIL'),
    dict(type='TimmTransform', input_size=224, is_training=False, crop_pct=0.875, interpolation='bicubic'),
    dict(type='PackClsInputs'),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
randomness = dict(diff_rank_seed=True)
