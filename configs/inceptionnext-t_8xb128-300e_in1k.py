# InceptionNeXt-T on ImageNet-1k, 224: the paper's recipe (82.3 top-1). AdamW lr 4e-3 at batch 4096,
# 300 epochs, warmup 20, drop path 0.1. tools/dist_train.sh configs/inceptionnext-t_8xb128-300e_in1k.py 8
# (8 x 128 x 4 accumulation = 4096; other GPU counts: keep 4096 through
# --cfg-options optim_wrapper.accumulative_counts=..., or the lr is rescaled linearly).
_base_ = ['_base_/models/inceptionnext_cls.py', '_base_/datasets/imagenet.py',
          '_base_/schedules/imagenet_300e_adamw.py', '_base_/default_runtime.py']
model = dict(backbone=dict(arch='tiny', drop_path_rate=0.1))
randomness = dict(diff_rank_seed=True)  # per-process seeds, as timm's train.py (drop path, erasing, mixup)
