_base_ = ['_base_/models/upernet_inceptionnext.py', '_base_/datasets/ade20k.py',
          '_base_/schedules/upernet_160k_adamw.py', '_base_/default_runtime.py']
