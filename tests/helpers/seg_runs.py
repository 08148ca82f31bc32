"""A tiny UperNet-atto on generated ADE data for runs through the real tools: ``BASE`` (the config it
derives from) and ``CONFIG`` (the derived config's text, formatted with ``base``, ``root``, ``workers``,
``iters``, ``ckpt``); ``checkpoints`` and ``error_lines`` read what a run left."""
import glob
import os.path as osp

import torch

from backbones.engine.hooks import nonfinite_weights
from tests.helpers import REPO

BASE = osp.join(REPO, 'configs', 'upernet_inceptionnext-atto_1xb8-160k_synthetic-ade-128x128.py')


CONFIG = '''
_base_ = [{base!r}]
custom_imports = dict(imports=['backbones', 'tests.helpers.kill_hook'], allow_failed_imports=False)
model = dict(data_preprocessor=dict(size=(64, 64)), backbone=dict(init_cfg=None),
             decode_head=dict(channels=16), auxiliary_head=dict(channels=8))
_pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'), dict(type='PackSegInputs')]
train_dataloader = dict(batch_size=2, num_workers={workers}, persistent_workers={workers} > 0,
                        dataset=dict(data_root={root!r}, pipeline=_pipeline))
val_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dict(data_root={root!r}, pipeline=_pipeline))
test_dataloader = val_dataloader
param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False, begin=0, end={iters})]
train_cfg = dict(max_iters={iters}, val_interval={iters})
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval={ckpt}, max_keep_ckpts=1))
'''


def checkpoints(work):
    """{name: finite?} of the work dir's checkpoints, and the file last_checkpoint names."""
    files = {osp.basename(p): not nonfinite_weights(torch.load(p, weights_only=False)['state_dict'])
             for p in glob.glob(osp.join(work, '*.pth'))}
    last = osp.join(work, 'last_checkpoint')
    return files, (osp.basename(open(last).read().strip()) if osp.isfile(last) else None)


def error_lines(out):
    return [line for line in out.splitlines() if line.startswith('error:')]
