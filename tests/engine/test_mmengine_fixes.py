"""Unit tests of backbones/engine/ (mmengine_fixes.py, checks.py, optimizers.py) and utils/config.py (the pieces the
tools put around MMEngine)."""
import os
import re

import pytest
import torch
from mmengine.config import Config
from mmengine.fileio import get_file_backend

from backbones.engine.mmengine_fixes import AtomicLocalBackend, fallback_syncbn_on_cpu, install_mmengine_fixes
from backbones.engine.optimizers import InceptionNeXtLayerDecayConstructor
from backbones.utils.config import check_added_keys, merge_cfg_options
from backbones.utils.errors import UserInputError
from tests.helpers import REPO


@pytest.mark.slow
def test_importing_backbones_patches_nothing():
    """A fresh process that imports backbones (as every config does) still has MMEngine's own loader and
    file backend; install_mmengine_fixes() (what building a RobustRunner calls) swaps both in."""
    import subprocess
    import sys
    code = ('import backbones; from mmengine.fileio import get_file_backend; '
            'from mmengine.runner.checkpoint import CheckpointLoader as L; '
            'print(type(get_file_backend("x.pth")).__name__, L._schemes[""].__module__); '
            'from backbones.engine.mmengine_fixes import install_mmengine_fixes as f; f(); '
            'print(type(get_file_backend("x.pth")).__name__, L._schemes[""].__module__)')
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split('\n')[:2] == ['LocalBackend mmengine.runner.checkpoint',
                                        'AtomicLocalBackend backbones.engine.mmengine_fixes']


def test_checkpoint_writes_are_atomic(tmp_path, monkeypatch):
    install_mmengine_fixes()
    backend = get_file_backend(str(tmp_path / 'x.pth'))
    assert isinstance(backend, AtomicLocalBackend)  # what MMEngine's save_checkpoint now writes through
    target = tmp_path / 'iter_4.pth'
    backend.put(b'good checkpoint', str(target))

    def crash(fd):
        raise KeyboardInterrupt('killed mid-write')

    monkeypatch.setattr(os, 'fsync', crash)
    with pytest.raises(KeyboardInterrupt):
        backend.put(b'half', str(target))
    assert target.read_bytes() == b'good checkpoint'
    assert os.listdir(tmp_path) == ['iter_4.pth']  # the partial temp file is gone too


def test_cfg_options_are_strict():
    cfg = Config(dict(model=dict(backbone=dict(arch='tiny')),
                      train_cfg=dict(type='IterBasedTrainLoop', max_iters=3),
                      pipeline=[dict(type='Load'), dict(type='Resize', scale=(64, 64))]))
    merge_cfg_options(cfg, {'model.backbone.arch': 'atto', 'pipeline.1.scale': (32, 32)})
    assert cfg.model.backbone.arch == 'atto' and cfg.pipeline[1].scale == (32, 32)
    with pytest.raises(UserInputError, match="unknown config key 'pipeline.2.scale'"):
        merge_cfg_options(cfg, {'pipeline.2.scale': 5})
    with pytest.raises(UserInputError, match="the top level has no 'trian_cfg'"):
        merge_cfg_options(cfg, {'trian_cfg.max_iters': 5})
    # a key the config does not list is added; the loop's signature, not the config, catches the typo
    check_added_keys(cfg, merge_cfg_options(cfg, {'train_cfg.val_interval': 2}))
    with pytest.raises(UserInputError, match=r"'train_cfg.max_iter'.*did you mean max_iters"):
        check_added_keys(cfg, merge_cfg_options(cfg, {'train_cfg.max_iter': 5}))


def test_syncbn_falls_back_to_bn_on_cpu():
    if torch.cuda.is_available():
        pytest.skip('only without a GPU')
    cfg = Config(dict(model=dict(backbone=dict(norm_cfg=dict(type='SyncBN')),
                                 heads=[dict(norm_cfg=dict(type='SyncBN', requires_grad=True))])))
    assert fallback_syncbn_on_cpu(cfg) == 2
    assert cfg.model.backbone.norm_cfg.type == 'BN' and cfg.model.heads[0].norm_cfg.type == 'BN'


def test_layer_decay_ids_follow_the_convnext_rule():
    from backbones import InceptionNeXt
    backbone = InceptionNeXt('atto')

    def layer_id(name, num_layers, decay_type):
        depth, total = backbone.get_layer_depth(name, 'backbone.', num_layers, decay_type)
        assert total == num_layers + 2
        return depth

    # stage-wise, 6 layers (UperNet recipe): stem/downsamples 0, stage i -> i + 1, rest 7
    assert layer_id('backbone.stem.conv.weight', 6, 'stage_wise') == 0
    assert layer_id('backbone.stages.2.downsample.conv.weight', 6, 'stage_wise') == 0
    assert layer_id('backbone.stages.3.blocks.1.mlp.fc1.weight', 6, 'stage_wise') == 4
    assert layer_id('backbone.out_norms.0.weight', 6, 'stage_wise') == 7
    assert layer_id('decode_head.conv_seg.weight', 6, 'stage_wise') == 7
    # layer-wise, 12 layers (detection S/B): stage 2 block j -> 3 + j // 3
    assert layer_id('backbone.stages.2.blocks.26.gamma', 12, 'layer_wise') == 11
    assert layer_id('backbone.stages.1.downsample.norm.weight', 12, 'layer_wise') == 2
    assert layer_id('backbone.stages.3.blocks.0.gamma', 12, 'layer_wise') == 12
    assert layer_id('neck.lateral_convs.0.conv.weight', 12, 'layer_wise') == 13
    with pytest.raises(ValueError, match="decay_type must be 'layer_wise' or 'stage_wise'"):
        layer_id('backbone.stem.conv.weight', 6, 'block_wise')


def test_layer_decay_constructor_groups():
    from backbones import InceptionNeXt

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = InceptionNeXt('atto')
            self.head = torch.nn.Conv2d(320, 4, 1)

    net = Net()
    ctor = InceptionNeXtLayerDecayConstructor(
        dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05)),
        dict(decay_rate=0.9, decay_type='stage_wise', num_layers=6))
    groups = ctor(net).optimizer.param_groups
    by_param = {id(p): g for g in groups for p in g['params']}
    stem = by_param[id(net.backbone.stem.conv.weight)]
    assert stem['lr'] == pytest.approx(1e-4 * 0.9 ** 7) and stem['weight_decay'] == 0.05
    blk = by_param[id(net.backbone.stages[1].blocks[0].mlp.fc1.weight)]
    assert blk['lr'] == pytest.approx(1e-4 * 0.9 ** 5)
    assert by_param[id(net.head.weight)]['lr'] == pytest.approx(1e-4)
    assert by_param[id(net.head.bias)]['weight_decay'] == 0.0
    assert by_param[id(net.backbone.stages[0].blocks[0].gamma)]['weight_decay'] == 0.0
    assert sum(len(g['params']) for g in groups) == len(list(net.parameters()))


def test_atomic_writes_honour_the_umask(tmp_path):
    """Checkpoints get the mode a plain open() gives (0666 minus the umask), not mkstemp's 0600: a shared
    cluster group must be able to read them."""
    from backbones.utils.io import atomic_write
    old = os.umask(0o022)
    try:
        atomic_write(str(tmp_path / 'a.pth'), lambda f: f.write(b'x'))
        os.umask(0o002)
        atomic_write(str(tmp_path / 'b.pth'), lambda f: f.write(b'x'))
    finally:
        os.umask(old)
    assert oct(os.stat(tmp_path / 'a.pth').st_mode & 0o777) == '0o644'
    assert oct(os.stat(tmp_path / 'b.pth').st_mode & 0o777) == '0o664'


# {algorithm}_{backbone}[_{component}...]_{schedule}_{dataset}.py, each part from its own vocabulary, in this
# order (OpenMMLab's scheme; words inside a part joined by '-'; classification leaves have no algorithm part,
# as in mmpretrain).
CONFIG_NAME = re.compile(
    r'(?:(?P<algorithm>(?!inceptionnext|convnext)[a-z][a-z0-9]*(?:-[a-z0-9]+)*)_)?'
    r'(?P<backbone>(?:inceptionnext|convnext)-[a-z0-9-]+)'
    r'(?P<components>(?:_(?:fpn|[0-9]+conv[0-9]+fc(?:-[a-z]+)?))*)'
    r'_(?P<schedule>(?:[0-9]+xb[0-9]+-)?(?:[a-z]+(?:-[a-z]+)*-)?[0-9]+(?:k|e|x|iter)|eval)'
    r'_(?P<dataset>(?:synthetic-)?(?:coco|ade20k|ade|in1k)(?:-[0-9]+(?:x[0-9]+|px))?)\.py')


def test_config_names_follow_one_scheme():
    """Every leaf is named {algorithm}_{backbone}[_{component}...]_{schedule}_{dataset} (CONFIG_NAME),
    every one loads, and configs/upernet_inceptionnext_t.py stays the documented short name of UperNet-T."""
    import glob

    from mmengine.config import Config

    from tests.helpers import REPO
    names = sorted(os.path.basename(p) for p in glob.glob(os.path.join(REPO, 'configs', '*.py')))
    odd = [n for n in names if n != 'upernet_inceptionnext_t.py' and not CONFIG_NAME.fullmatch(n)]
    assert not odd, odd
    for n in names:
        Config.fromfile(os.path.join(REPO, 'configs', n))
    assert Config.fromfile(os.path.join(REPO, 'configs', 'upernet_inceptionnext_t.py')).model.backbone.arch == 'tiny'


@pytest.mark.parametrize('name', [
    'mask-rcnn_inceptionnext-t_fpn_coco_1x.py',  # dataset before schedule
    'inceptionnext-t_mask-rcnn_fpn_1x_coco.py',  # backbone before algorithm
    'mask-rcnn_fpn_inceptionnext-t_1x_coco.py',  # component before backbone
    'upernet_inceptionnext-t_ade20k-512x512_8xb2-160k.py',
    'upernet_inceptionnext-t_8xb2-160k.py',  # no dataset
    'inceptionnext-t_in1k.py',  # no schedule
    'upernet_inceptionnext-t_8xb2_160k_ade20k.py',  # a part split by '_'
])
def test_config_name_scheme_refuses_other_orders(name):
    """The control: names with the parts in another order, or a part missing, do not pass."""
    assert not CONFIG_NAME.fullmatch(name)


@pytest.mark.skipif(not os.path.isfile(os.path.join(REPO, '.venv', '.stack')),
                    reason='needs a checkout set up by tools/setup_env.sh')
@pytest.mark.slow
def test_each_checkout_imports_its_own_backbones(tmp_path):
    """A second clone set up with tools/setup_env.sh (reusing the cached stack) gets its own .venv: each
    checkout's python imports its own backbones, from any folder, and deleting the clone breaks nothing."""
    import shutil
    import subprocess

    from tests.helpers import REPO
    clone = tmp_path / 'clone'
    subprocess.run(['git', 'clone', '-q', REPO, str(clone)], check=True, timeout=120)
    r = subprocess.run(['bash', 'tools/setup_env.sh'], cwd=clone, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and 'reusing the stack' in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]

    def where(root):
        code = 'import backbones, os; print(os.path.dirname(os.path.dirname(os.path.realpath(backbones.__file__))))'
        out = subprocess.run([os.path.join(root, '.venv', 'bin', 'python'), '-c', code], cwd='/',
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stdout.strip()

    assert where(str(clone)) == os.path.realpath(clone)
    assert where(REPO) == os.path.realpath(REPO)
    shutil.rmtree(clone)
    assert where(REPO) == os.path.realpath(REPO)
