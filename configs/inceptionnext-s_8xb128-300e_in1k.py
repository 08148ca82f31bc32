# InceptionNeXt-S on ImageNet-1k, 224 (83.5 top-1): the T recipe with drop path 0.3.
_base_ = ['_base_/models/inceptionnext_cls.py', '_base_/datasets/imagenet.py',
          '_base_/schedules/imagenet_300e_adamw.py', '_base_/default_runtime.py']
model = dict(backbone=dict(arch='small', drop_path_rate=0.3))
randomness = dict(diff_rank_seed=True)
