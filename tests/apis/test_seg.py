"""ADE20K segmentation with mmseg: every config builds and trains a step, weights load, a short training
learns the generated ADE-layout task, TTA / demo / FLOPs tools run, and bad annotations are named."""
import glob
import os.path as osp
import re
import sys

import cv2
import numpy as np
import pytest
import timm
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from backbones.datasets.synthetic import write_ade
from backbones.engine.mmengine_fixes import fallback_syncbn_on_cpu
from tests.helpers import REPO
from tests.helpers.tool import tool

PY = sys.executable
SEG_CONFIGS = sorted(glob.glob(osp.join(REPO, 'configs', 'upernet_*.py')) +
                     glob.glob(osp.join(REPO, 'configs', 'fpn_*.py')))
SYNTH = osp.join(REPO, 'configs', 'upernet_inceptionnext-atto_1xb8-160k_synthetic-ade-128x128.py')


def build_seg_model(cfg):
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    fallback_syncbn_on_cpu(cfg)
    with DefaultScope.overwrite_default_scope('mmseg'):
        return MODELS.build(cfg.model)


def test_all_seg_configs_are_found():
    names = {osp.basename(p) for p in SEG_CONFIGS}
    for arch in ('atto', 't', 's', 'b'):
        assert f'upernet_inceptionnext-{arch}_8xb2-160k_ade20k-512x512.py' in names
    for arch in ('t', 's', 'b'):
        assert f'fpn_inceptionnext-{arch}_8xb2-80k_ade20k-512x512.py' in names
    assert 'upernet_inceptionnext_t.py' in names  # the documented short path


@pytest.mark.parametrize('path', SEG_CONFIGS, ids=osp.basename)
def test_config_builds_and_trains_one_step(path):
    cfg = Config.fromfile(path)
    cfg.model.backbone.init_cfg = None
    model = build_seg_model(cfg)
    assert type(model.backbone).__name__ == 'InceptionNeXt'
    model.train()
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    n_cls = cfg.model.decode_head.num_classes
    samples = []
    for _ in range(2):
        s = SegDataSample(gt_sem_seg=PixelData(data=torch.randint(0, n_cls, (1, 64, 64))))
        s.set_metainfo(dict(img_shape=(64, 64), pad_shape=(64, 64), ori_shape=(64, 64)))
        samples.append(s)
    losses = model.loss(torch.randn(2, 3, 64, 64), samples)
    total = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)
    total.backward()
    grad = model.backbone.stages[0].blocks[0].mlp.fc1.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    # the recipe's parts the paper took from its baselines
    assert cfg.model.backbone.out_norm and cfg.model.backbone.out_indices == (0, 1, 2, 3)
    if 'upernet' in path:
        assert cfg.optim_wrapper.constructor == 'InceptionNeXtLayerDecayConstructor'
        assert cfg.optim_wrapper.paramwise_cfg == dict(decay_rate=0.9, decay_type='stage_wise', num_layers=6)
        if 'ade20k' in path:
            assert cfg.optim_wrapper.optimizer.lr == 1e-4 and cfg.train_cfg.max_iters == 160000
            assert cfg.param_scheduler[0].end == 1500
    elif 'fpn_' in path:
        assert cfg.optim_wrapper.optimizer.lr == 2e-4 and cfg.train_cfg.max_iters == 80000


def test_pretrained_backbone_really_loads(tmp_path):
    torch.manual_seed(0)
    ref = timm.create_model('inception_next_atto', pretrained=False).state_dict()
    torch.save({'state_dict': ref}, tmp_path / 'official.pth')
    tool('tools/model_converters/convert_weights.py', str(tmp_path / 'official.pth'),
         str(tmp_path / 'atto_backbone.pth'), '--backbone-only', '--arch', 'atto')
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'upernet_inceptionnext-atto_8xb2-160k_ade20k-512x512.py'))
    release = 'https://github.com/sail-sg/inceptionnext/releases/download/model/'
    assert cfg.model.backbone.init_cfg.checkpoint == release + 'inceptionnext_atto.pth'  # the official file
    cfg.model.backbone.init_cfg.checkpoint = str(tmp_path / 'atto_backbone.pth')
    model = build_seg_model(cfg)
    model.init_weights()
    assert torch.equal(model.backbone.stages[2].blocks[5].mlp.fc2.weight, ref['stages.2.blocks.5.mlp.fc2.weight'])
    assert torch.equal(model.backbone.stem.norm.running_var, ref['stem.1.running_var'])


@pytest.fixture(scope='module')
def learned(tmp_path_factory):
    """A short CPU training on the generated dataset through tools/train.py (the calibration of DESIGN.md);
    its work dir serves the TTA, test and demo tests."""
    d = tmp_path_factory.mktemp('seg')
    root = str(d / 'ade')
    write_ade(root, num_train=120, num_val=30, size=(160, 128), seed=3)
    common = ['--cfg-options', f'train_dataloader.dataset.data_root={root}', f'val_dataloader.dataset.data_root={root}',
              f'test_dataloader.dataset.data_root={root}', 'model.backbone.init_cfg=None',
              'model.decode_head.channels=64', 'model.auxiliary_head.channels=32', 'train_dataloader.num_workers=0',
              'train_dataloader.persistent_workers=False', 'val_dataloader.num_workers=0',
              'val_dataloader.persistent_workers=False', 'default_hooks.logger.interval=50']

    def train(work, iters, lr):
        warm = min(20, iters // 2)
        out = tool('tools/train.py', SYNTH, '--work-dir', str(d / work), *common,
                   f'optim_wrapper.optimizer.lr={lr}', f'train_cfg.max_iters={iters}',
                   f'train_cfg.val_interval={iters}',
                   f'default_hooks.checkpoint.interval={iters}', f'param_scheduler.0.end={warm}',
                   f'param_scheduler.1.begin={warm}', f'param_scheduler.1.end={iters}')
        return float(re.findall(r'Iter\(val\).*mIoU: ([0-9.]+)', out)[-1]), str(d / work / f'iter_{iters}.pth')

    miou, ckpt = train('trained', 300, 2e-3)
    untrained, _ = train('untrained', 2, 0.0)
    return dict(root=root, miou=miou, untrained=untrained, ckpt=ckpt, config=str(d / 'trained' / osp.basename(SYNTH)))


@pytest.mark.slow
def test_short_training_learns(learned):
    # 300 iterations at batch 8 (one process): 55-65 mIoU here (6 classes, 120 training images);
    # an untrained model (2 iterations at lr 0) scores < 20. Breaking learning (lr 0) fails this test.
    assert learned['untrained'] < 20
    assert learned['miou'] > 40, learned
    assert learned['miou'] > learned['untrained'] + 30


@pytest.mark.slow
def test_tta_and_demo_on_the_learned_model(learned, tmp_path):
    out = tool('tools/test.py', learned['config'], learned['ckpt'], '--tta', '--work-dir', str(tmp_path / 'w'))
    tta = float(re.search(r'metrics: .*mIoU=([0-9.]+)', out).group(1))
    assert tta > learned['miou'] - 10  # multi-scale + flip of a learned model stays a learned model
    assert '30/30' in out and '31/30' not in out  # the progress bar counts test batches
    img = sorted(glob.glob(osp.join(learned['root'], 'images', 'validation', '*.jpg')))[0]
    png = str(tmp_path / 'overlay.png')
    out = tool('tools/misc/demo_seg.py', img, learned['config'], learned['ckpt'], '--out', png)
    assert 'wrote' in out
    overlay = cv2.imread(png)
    assert overlay.shape[:2] == (384, 480)  # 160x128 drawn at 3x
    ann = cv2.imread(img.replace('images', 'annotations').replace('.jpg', '.png'), 0)
    assert 'classes present: [0' in out and len(np.unique(ann)) > 1
    bad = tool('tools/misc/demo_seg.py', str(tmp_path / 'nope.jpg'), learned['config'], learned['ckpt'], expect=2)
    assert 'image file not found' in bad and 'Traceback' not in bad


@pytest.mark.slow
@pytest.mark.parametrize('arch', ['t', 'b'])
def test_flops_tool_on_upernet_matches_the_paper(arch):
    """UperNet at 2048x512 (backbone + both heads, as mmseg's get_flops counts): the paper prints
    T 56M / 933G, S 78M / 1020G, B 115M / 1159G (S is the same count path; left out for time)."""
    cfg = osp.join(REPO, 'configs', f'upernet_inceptionnext-{arch}_8xb2-160k_ade20k-512x512.py')
    out = tool('tools/analysis_tools/flops.py', cfg, '--shape', '2048', '512')
    m = re.search(r'params ([0-9.]+)M\s+FLOPs\(MACs\) ([0-9.]+)G\s+\(paper: ([0-9]+)M / ([0-9]+)G\)', out)
    params, flops, paper_params, paper_flops = map(float, m.groups())
    assert round(params) == paper_params
    assert abs(flops - paper_flops) < 1.0, out


# ------------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------------


