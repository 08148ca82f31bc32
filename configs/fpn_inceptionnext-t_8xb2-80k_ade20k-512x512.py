_base_ = ['_base_/models/fpn_inceptionnext.py', '_base_/datasets/ade20k.py',
          '_base_/schedules/fpn_80k_adamw.py', '_base_/default_runtime.py']
model = dict(backbone=dict(drop_path_rate=0.1))
