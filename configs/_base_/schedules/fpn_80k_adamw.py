# Semantic FPN as in the PoolFormer baseline: AdamW lr 2e-4, wd 1e-4, poly 0.9; 80k iterations at total
# batch 16 (8 GPUs x 2), the same number of images as the paper's 40k at batch 32.
_base_ = ['./seg_iter_based.py']
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=2e-4, weight_decay=1e-4))
param_scheduler = [dict(type='PolyLR', power=0.9, eta_min=0.0, by_epoch=False, begin=0, end=80000)]
train_cfg = dict(max_iters=80000, val_interval=8000)
default_hooks = dict(checkpoint=dict(interval=8000))
