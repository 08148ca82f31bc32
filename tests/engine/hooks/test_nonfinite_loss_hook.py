"""The run guards, in process and on tiny inputs: the non-finite-loss guard on a toy model through MMEngine's
Runner (stop, skip, non-finite weights, the last finite checkpoint kept under max_keep_ckpts, test-time
refusal), strict / partial ``load_from``, a work dir holding a run, the pre-flight checks (dataloader
values, backbone ranges, COCO keys and negative boxes, suffix case, an all-ignore validation set), the
messages (spaces and ``~`` in ``--cfg-options``, ``--out``, a file that is not a checkpoint, running out of
memory) and the ONNX write. Each guard has its control: the failure it prevents, shown without it.
The end-to-end runs (real tools, SIGTERM, two processes) are in tests/engine/test_divergence.py.
"""
import argparse
import copy
import glob
import json
import os
import os.path as osp
import re
import shutil

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.config import Config, DictAction
from mmengine.model import BaseModel
from torch.utils.data import Dataset

from backbones.engine.hooks import NonFiniteLossHook, nonfinite_weights
from backbones.engine.runner import RobustRunner, check_work_dir_is_new, prepare_config
from backbones.utils.errors import CheckpointError, TrainingDivergedError, UserInputError
from tests.conftest import REPO, LogCapture, single_torch_thread

one_thread = pytest.fixture(autouse=True, scope='module')(single_torch_thread)
SEG = osp.join(REPO, 'configs', 'upernet_inceptionnext-atto_1xb8-160k_synthetic-ade-128x128.py')


# --------------------------------------------------------------------------------------------------
# A toy model through MMEngine's Runner
# --------------------------------------------------------------------------------------------------
class Toy(BaseModel):
    def __init__(self, n_in=2):
        super().__init__()
        self.lin = nn.Linear(n_in, 4)
        self.out = nn.Linear(4, 1)

    def forward(self, inputs, labels=None, mode='tensor'):
        y = self.out(torch.relu(self.lin(torch.stack(inputs)))).squeeze(1)
        if mode == 'loss':
            return {'loss_mse': ((y - torch.stack(labels)) ** 2).mean(), 'acc': y.detach().mean()}
        return y


class ToyData(Dataset):
    """64 samples; those of the iterations in ``bad_iters`` (1-based, batch 4, no shuffle) are nan."""

    def __init__(self, bad_iters=()):
        g = torch.Generator().manual_seed(0)
        self.x, self.y = torch.randn(64, 2, generator=g), torch.randn(64, generator=g)
        self.bad = {i for it in bad_iters for i in range((it - 1) * 4, it * 4)}

    def __len__(self):
        return 64

    def __getitem__(self, i):
        x = self.x[i] * (float('nan') if i in self.bad else 1.0)
        return dict(inputs=x, labels=self.y[i])


def toy_runner(work_dir, bad_iters=(), iters=8, guard=True, cfg=None, **guard_args):
    hooks = [dict(type='NonFiniteLossHook', **guard_args)] if guard else []
    return RobustRunner(
        model=Toy(), work_dir=str(work_dir),
        train_dataloader=dict(dataset=ToyData(bad_iters), sampler=dict(type='DefaultSampler', shuffle=False),
                              batch_size=4, num_workers=0),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)), train_cfg=dict(by_epoch=False, max_iters=iters),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1, by_epoch=False, max_keep_ckpts=1),
                           logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=hooks, cfg=cfg, default_scope='mmengine')


def saved(work_dir):
    """{file name: weights finite?} of the checkpoints in ``work_dir``, and where last_checkpoint points."""
    files = {osp.basename(p): not nonfinite_weights(torch.load(p, weights_only=False)['state_dict'])
             for p in glob.glob(osp.join(work_dir, '*.pth'))}
    last = osp.join(work_dir, 'last_checkpoint')
    return files, (osp.basename(open(last).read().strip()) if osp.isfile(last) else None)


def test_a_non_finite_loss_stops_the_run_and_the_last_finite_checkpoint_survives(tmp_path):
    runner = toy_runner(tmp_path / 'w', bad_iters=range(4, 9))
    with LogCapture() as log, pytest.raises(TrainingDivergedError) as e:
        runner.train()
    msg = str(e.value)
    assert msg.startswith('training diverged at iteration 4: non-finite loss (loss=nan, loss_mse=nan; lr 0.01)')
    assert 'the last checkpoint, iter_3.pth, is finite' in msg and "nonfinite_loss.action='skip'" in msg
    assert msg in log.text  # in the log file too
    # max_keep_ckpts=1: the finite iter_3 is kept, nothing of iteration 4 was written or rotated
    assert saved(tmp_path / 'w') == ({'iter_3.pth': True}, 'iter_3.pth')
    assert not nonfinite_weights(runner.model.state_dict())  # stopped before the step was applied

    # the control: without the guard the same run ends "well", its only checkpoint non-finite
    control = toy_runner(tmp_path / 'c', bad_iters=range(4, 9), guard=False)
    control.train()
    assert saved(tmp_path / 'c') == ({'iter_8.pth': False}, 'iter_8.pth')
    # ... and a test of that model is refused
    with pytest.raises(CheckpointError, match=r'the model has non-finite weights \(4 tensors, e.g. lin.weight'):
        NonFiniteLossHook().before_test_epoch(control)


def test_skip_mode_drops_bad_steps_and_stops_after_max_skips(tmp_path):
    runner = toy_runner(tmp_path / 's', bad_iters=[3], cfg=dict(nonfinite_loss=dict(action='skip', max_skips=2)))
    with LogCapture() as log:
        runner.train()
    assert 'iteration 3: non-finite loss (loss=nan, loss_mse=nan; lr 0.01): step skipped' in log.text
    assert '1 training steps were skipped' in log.text
    assert saved(tmp_path / 's') == ({'iter_8.pth': True}, 'iter_8.pth')
    # the skipped batch left the weights as they were: the same as a run whose iteration 3 had lr 0
    runner = toy_runner(tmp_path / 'm', bad_iters=range(3, 9), action='skip', max_skips=2)
    with pytest.raises(TrainingDivergedError, match=r'at iteration 5: .* after 2 skipped steps in a row'):
        runner.train()
    assert saved(tmp_path / 'm') == ({'iter_4.pth': True}, 'iter_4.pth')


@pytest.mark.parametrize('bad', [dict(action='halt'), dict(max_skips=-1)])
def test_guard_settings_are_checked(tmp_path, bad):
    with pytest.raises(UserInputError, match='nonfinite_loss'):
        toy_runner(tmp_path, **bad).train()


def test_non_finite_weights_with_a_finite_loss_are_never_saved(tmp_path):
    """An overflow in the update (finite loss, non-finite weights after the step): stopped before the
    CheckpointHook rotates anything."""
    from mmengine.hooks import Hook

    class Overflow(Hook):
        priority = 'HIGHEST'

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            if runner.iter + 1 == 5:
                with torch.no_grad():
                    runner.model.out.weight[0, 0] = float('inf')

    runner = toy_runner(tmp_path / 'w')
    runner.register_hook(Overflow())
    with pytest.raises(TrainingDivergedError, match=r'weights are not finite after iteration 5 \(1 tensors, e.g. '
                                                    r'out.weight.*although the loss was finite'):
        runner.train()
    assert saved(tmp_path / 'w') == ({'iter_4.pth': True}, 'iter_4.pth')


def test_every_config_gets_the_guards():
    """configs/_base_/default_runtime.py lists them (a plain Runner: mmseg's test.py); RobustRunner adds
    them to a config whose custom_hooks replaced the list."""
    for path in glob.glob(osp.join(REPO, 'configs', '*.py')):
        cfg = Config.fromfile(path)
        types = [h['type'] for h in cfg.custom_hooks]
        if 'NonFiniteLossHook' not in types:  # a leaf that replaced the list
            prepare_config(cfg)
            types = [h['type'] for h in cfg.custom_hooks]
        assert {'NonFiniteLossHook', 'SaveOnSignalHook'} <= set(types), path
    cfg = Config(dict(custom_hooks=[dict(type='RNGStateHook')], model=dict()))
    prepare_config(cfg)
    assert [h['type'] for h in cfg.custom_hooks] == ['RNGStateHook', 'NonFiniteLossHook', 'SaveOnSignalHook']


# --------------------------------------------------------------------------------------------------
# load_from, work dirs
# --------------------------------------------------------------------------------------------------
def test_load_from_is_strict_and_partial_loading_is_summarised(tmp_path, capsys):
    other = Toy(n_in=3)  # "another arch": the first layer differs
    torch.save({'state_dict': other.state_dict(), 'meta': {}}, tmp_path / 'other.pth')
    runner = toy_runner(tmp_path / 'w')
    runner._load_from = str(tmp_path / 'other.pth')
    with pytest.raises(CheckpointError, match=r'load_from=.*other.pth does not fit the model .*shape mismatches: '
                                              r'lin.weight: checkpoint \(4, 3\) vs model \(4, 2\).*'
                                              r'load_from_partial=True'):
        runner.load_or_resume()
    runner = toy_runner(tmp_path / 'p', cfg=dict(load_from_partial=True))
    runner._load_from = str(tmp_path / 'other.pth')
    with LogCapture() as log:
        runner.load_or_resume()
    summary = [w for w in log.warnings() if 'loaded partially' in w]
    assert len(summary) == 1 and "3 of the model's 4 tensors loaded; 0 not in the checkpoint" in summary[0]
    assert '1 of another shape (e.g. lin.weight) left as initialised' in summary[0]
    assert torch.equal(runner.model.out.weight, other.out.weight)
    # the control: MMEngine's own load_from (what a plain Runner does) takes it, one line per mismatch
    from mmengine.runner import Runner
    plain = toy_runner(tmp_path / 'c')
    plain._load_from = str(tmp_path / 'other.pth')
    Runner.load_or_resume(plain)
    assert 'size mismatch for lin.weight' in capsys.readouterr().out


def test_a_work_dir_holding_a_run_needs_resume_or_restart(tmp_path):
    work = tmp_path / 'w'
    assert check_work_dir_is_new(str(work), None, False) == ''  # new
    work.mkdir()
    (work / 'iter_4.pth').write_bytes(b'x')
    with pytest.raises(UserInputError, match=r'holds an earlier training run \(last checkpoint: .*iter_4.pth\); '
                                             r'add --resume to continue it, or --work-dir DIR'):
        check_work_dir_is_new(str(work), None, False)
    (work / 'last_checkpoint').write_text(str(work / 'iter_4.pth'))
    assert check_work_dir_is_new(str(work), 'auto', False) == ''
    assert check_work_dir_is_new(str(work), None, True) == str(work / 'iter_4.pth')
    with pytest.raises(UserInputError, match='holds an earlier training run'):  # any Runner of ours
        toy_runner(work).train()


# --------------------------------------------------------------------------------------------------
# Pre-flight
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def seg_cfg(tmp_path_factory):
    from backbones.datasets.synthetic import write_ade
    root = str(tmp_path_factory.mktemp('ade'))
    write_ade(root, num_train=4, num_val=2, size=(64, 64), seed=2)
    from backbones.utils.config import load_config
    opts = {f'{s}_dataloader.dataset.data_root': root for s in ('train', 'val', 'test')}
    return root, load_config(SEG, opts)


def test_dataloader_values_are_checked_before_the_runner(seg_cfg):
    from backbones.apis.run import preflight
    _, base = seg_cfg
    cfg = copy.deepcopy(base)
    cfg.train_dataloader.batch_size = 0
    with pytest.raises(UserInputError, match=r'train_dataloader.batch_size=0: a whole number .* >= 1'):
        preflight(cfg, splits=('train_dataloader',))
    cfg = copy.deepcopy(base)
    cfg.val_dataloader.num_workers = 0
    assert cfg.val_dataloader.persistent_workers  # the base's setting: torch's DataLoader refuses the pair
    with LogCapture() as log:
        preflight(cfg, splits=('train_dataloader', 'val_dataloader'))
    assert cfg.val_dataloader.persistent_workers is False
    assert 'val_dataloader.num_workers=0: persistent_workers set to False' in log.text
    with pytest.raises(ValueError, match='persistent_workers option needs num_workers > 0'):  # the control
        torch.utils.data.DataLoader([1], num_workers=0, persistent_workers=True)


@pytest.mark.parametrize('key,value,msg', [
    ('out_indices', (0, 4), r'model.backbone.out_indices: out_indices \(0, 4\) out of range'),
    ('frozen_stages', 5, r'model.backbone.frozen_stages: frozen_stages=5 out of range'),
    ('drop_path_rate', 1.5, r'model.backbone.drop_path_rate: drop_path_rate=1.5 out of range: .* \[0, 1\)'),
    ('drop_path_rate', -0.1, r'model.backbone.drop_path_rate: drop_path_rate=-0.1 out of range'),
])
def test_backbone_values_out_of_range_are_named(key, value, msg):
    from backbones.engine.checks import check_backbone
    cfg = Config(dict(model=dict(backbone=dict(type='InceptionNeXt', arch='atto', **{key: value}))))
    with pytest.raises(UserInputError, match=msg):
        check_backbone(cfg)


def test_drop_path_rate_above_one_failed_only_in_training():
    """The control of the range check: stochastic depth with p = 1.5 is torch's bernoulli_ error at the first
    training step, naming no key."""
    from backbones.models.inceptionnext import InceptionNeXt
    with pytest.raises(ValueError, match='drop_path_rate'):
        InceptionNeXt('atto', drop_path_rate=1.5)
    with pytest.raises(RuntimeError, match='bernoulli'):
        torch.empty(2, 1, 1, 1).bernoulli_(1 - 1.5)


@pytest.fixture(scope='module')
def coco_root(tmp_path_factory, mmdet_registered):
    from backbones.datasets.synthetic import write_coco
    root = str(tmp_path_factory.mktemp('coco'))
    write_coco(root, num_train=4, num_val=2, size=(96, 64), seed=1)
    return root


def _coco_cfg(root, val_ann):
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'mask-rcnn_inceptionnext-atto_fpn_500iter_synthetic-coco.py'))
    for split in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[split].dataset.data_root = root + '/'
    cfg.val_dataloader.dataset.ann_file = val_ann
    cfg.val_evaluator.ann_file = osp.join(root, val_ann)
    return cfg


def _edited(root, name, edit):
    with open(osp.join(root, 'annotations', 'instances_val2017.json')) as f:
        data = json.load(f)
    edit(data)
    with open(osp.join(root, 'annotations', name), 'w') as f:
        json.dump(data, f)
    return f'annotations/{name}'


def test_coco_keys_that_pycocotools_needs_and_negative_boxes(coco_root):
    from backbones.datasets.checks.coco import check_coco_datasets

    def no_iscrowd(data):
        for a in data['annotations']:
            a.pop('iscrowd')

    cfg = _coco_cfg(coco_root, _edited(coco_root, 'no_crowd.json', no_iscrowd))
    check_coco_datasets(cfg, splits=('train_dataloader',))  # training reads it with .get(): fine
    with pytest.raises(UserInputError, match=r'annotations have no "iscrowd" .*KeyError at the first validation'
                                             r' \(add "iscrowd": 0'):
        check_coco_datasets(cfg, splits=('train_dataloader', 'val_dataloader'))
    # the control: pycocotools' evaluation does fail on that file
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    gt = COCO(cfg.val_evaluator.ann_file)
    ann = gt.dataset['annotations'][0]
    dt = gt.loadRes([dict(image_id=ann['image_id'], category_id=ann['category_id'], bbox=ann['bbox'], score=1.0)])
    with pytest.raises(KeyError, match='iscrowd'):
        ev = COCOeval(gt, dt, 'bbox')
        ev.evaluate()

    def negative(data):
        data['annotations'][0]['bbox'][2] = -5.0

    cfg = _coco_cfg(coco_root, _edited(coco_root, 'negative.json', negative))
    with pytest.raises(UserInputError, match=r'1 boxes of negative width or height .*not two corners'):
        check_coco_datasets(cfg, splits=('val_dataloader',))


def _copy_ade(root, tmp_path):
    dst = tmp_path / 'ade'
    shutil.copytree(root, dst)
    return str(dst)


def _seg_opts(root):
    return {f'{s}_dataloader.dataset.data_root': root for s in ('train', 'val', 'test')}


def test_suffix_case_mismatch_names_the_folder_and_counts(seg_cfg, tmp_path):
    from backbones.apis.run import preflight
    from backbones.utils.config import load_config
    root = _copy_ade(seg_cfg[0], tmp_path)
    folder = osp.join(root, 'images', 'training')
    jpgs = sorted(glob.glob(osp.join(folder, '*.jpg')))
    os.rename(jpgs[0], jpgs[0][:-4] + '.JPG')  # mixed: 3 .jpg, 1 .JPG
    cfg = load_config(SEG, _seg_opts(root))
    with pytest.raises(UserInputError, match=rf"{folder}: 1 end in '.JPG' but the suffix is '.jpg' "
                                             r"\(case-sensitive\): only the 3 ending in '.jpg' would be used"):
        preflight(cfg, splits=('train_dataloader',))
    for p in jpgs[1:]:
        os.rename(p, p[:-4] + '.JPG')
    with pytest.raises(UserInputError, match="4 end in '.JPG' .*none would be found"):
        preflight(load_config(SEG, _seg_opts(root)), splits=('train_dataloader',))
    # the control: mmseg's own listing silently takes none (and, mixed, would take 3 of 4)
    from mmseg.datasets import BaseSegDataset
    ds = BaseSegDataset(data_root=root, data_prefix=dict(img_path='images/training',
                                                         seg_map_path='annotations/training'),
                        img_suffix='.jpg', seg_map_suffix='.png', lazy_init=True)
    assert ds.load_data_list() == []


def test_an_all_ignore_validation_set_is_refused(seg_cfg, tmp_path):
    from PIL import Image

    from backbones.apis.run import preflight
    from backbones.utils.config import load_config
    root = _copy_ade(seg_cfg[0], tmp_path)
    for p in glob.glob(osp.join(root, 'annotations', 'validation', '*.png')):
        Image.fromarray(np.zeros((64, 64), np.uint8)).save(p)  # 0: ignore under reduce_zero_label
    cfg = load_config(SEG, _seg_opts(root))
    preflight(cfg, splits=('train_dataloader',))
    with pytest.raises(UserInputError, match=r'all 2 checked annotations hold only the ignore label 255 '
                                             r'\(reduce_zero_label.*mIoU: nan'):
        preflight(cfg, splits=('train_dataloader', 'val_dataloader'))


# --------------------------------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------------------------------
def test_cfg_options_keep_spaces_and_expand_home():
    from backbones.utils.cli import add_common_args
    p = argparse.ArgumentParser()
    add_common_args(p)
    args = p.parse_args(['--cfg-options', 'data_root=/tmp/my data/x', 'a.b=[1, 2]', 'c=(3,4)', 'd=~/w',
                         'e=1e-3', "f='x y'", 'g=None', 'h=True', 'i=a,b c'])
    assert args.cfg_options == {'data_root': '/tmp/my data/x', 'a.b': [1, 2], 'c': (3, 4),
                                'd': osp.expanduser('~/w'), 'e': 1e-3, 'f': 'x y', 'g': None, 'h': True,
                                'i': ['a', 'b c']}
    with pytest.raises(SystemExit):
        p.parse_args(['--cfg-options', 'novalue'])
    # the control: MMEngine's DictAction drops the space
    q = argparse.ArgumentParser()
    q.add_argument('--o', nargs='+', action=DictAction)
    assert q.parse_args(['--o', 'data_root=/tmp/my data/x']).o == {'data_root': '/tmp/mydata/x'}


def test_work_dir_tilde_is_expanded():
    from backbones.apis.run import run_config
    args = argparse.Namespace(config=SEG, cfg_options=None, work_dir='~/w', launcher='none', local_rank=0)
    assert run_config(args).work_dir == osp.expanduser('~/w')


def test_test_tool_checks_out_before_reading_the_checkpoint(tmp_path, monkeypatch):
    import importlib.util
    monkeypatch.syspath_prepend(osp.join(REPO, 'tools'))  # (tools/test.py imports tools/malloc_env.py)
    spec = importlib.util.spec_from_file_location('tools_test', osp.join(REPO, 'tools', 'test.py'))
    test_tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(test_tool)
    monkeypatch.chdir(tmp_path)
    # the checkpoint does not exist either: the --out error comes first, before any test work
    with pytest.raises(UserInputError, match=r'--out /proc/nope/out.pkl: cannot write to the folder '
                                             r'/proc/nope .*the test was not run'):
        test_tool.main([SEG, 'missing.pth', '--out', '/proc/nope/out.pkl'])
    blocker = tmp_path / 'file'
    blocker.write_text('')
    with pytest.raises(UserInputError, match='cannot write to the folder'):
        test_tool.check_out_file(str(blocker / 'out.pkl'))
    assert test_tool.check_out_file('~/x.pkl') == osp.expanduser('~/x.pkl')


def test_a_file_that_is_not_a_checkpoint_is_named_as_such(tmp_path):
    import pickle

    from backbones.models.weights import read_checkpoint
    p = tmp_path / 'notes.pkl'
    with open(p, 'wb') as f:
        pickle.dump({'a': 1}, f, protocol=4)
    with pytest.raises(CheckpointError) as e:
        read_checkpoint(str(p))
    assert 'not a PyTorch checkpoint' in str(e.value)
    assert 'MMEngine' not in str(e.value) and 'weights_only' not in str(e.value)


def test_out_of_memory_is_named_with_the_batch_size():
    from backbones.apis.run import out_of_memory, raise_if_out_of_memory
    cfg = Config(dict(train_dataloader=dict(batch_size=32, num_workers=4)))
    for e in (MemoryError(), RuntimeError('could not create a primitive'),
              RuntimeError("[enforce fail at alloc_cpu.cpp:118] DefaultCPUAllocator: can't allocate memory"),
              OSError('libgomp.so.1: failed to map segment from shared object')):
        assert out_of_memory(e), e
        with pytest.raises(UserInputError, match=r'out of host memory .* at train_dataloader.batch_size=32 per '
                                                 r'process: lower train_dataloader.batch_size'):
            raise_if_out_of_memory(e, cfg, 'train_dataloader')
    assert not out_of_memory(RuntimeError('mat1 and mat2 shapes cannot be multiplied'))
    raise_if_out_of_memory(ValueError('x'), cfg, 'train_dataloader')  # anything else: not re-worded
    torch_text = ("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you "
                  "tried to allocate 16777216 bytes. Error code 12 (Cannot allocate memory)")
    assert out_of_memory(RuntimeError(torch_text)) == 'the CPU allocator could not get 16.0 MiB more'
    long = out_of_memory(RuntimeError('out of memory ' + 'word ' * 60))
    assert long.endswith(' ...') and len(long) <= 164 and ' wor ...' not in long  # cut between words


# A real process under an address-space limit (what `ulimit -v` sets): the limit is set once the stack is
# imported, at its size then plus HEADROOM, which holds the model, its optimizer and the runner but not the
# activations of a batch of 64 (the FPN's concatenated map alone is 64 x 2048 x 32 x 32 floats, 0.5 GiB).
OOM_RUN = r"""
import resource, runpy, sys
import torch, mmseg.models, backbones, backbones.apis.run
vm = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmSize:')) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + int(sys.argv[1]), resource.RLIM_INFINITY))
sys.argv = ['tools/train.py', *sys.argv[2:]]
sys.path.insert(0, 'tools')
runpy.run_path('tools/train.py', run_name='__main__')
"""
HEADROOM = 1536 << 20


@pytest.mark.slow
def test_running_out_of_memory_is_one_line_naming_the_batch(seg_cfg, tmp_path):
    """tools/train.py out of host memory for real: exit 2, one `error:` line with the batch size and what to
    lower, no traceback. The control: the same limit with a batch of 2 trains."""
    import subprocess
    import sys
    root, _ = seg_cfg
    opts = [f'{k}={v}' for k, v in _seg_opts(root).items()] + [
        'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
        'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False',
        'train_cfg.max_iters=1', 'train_cfg.val_interval=100', 'default_hooks.checkpoint.interval=100',
        'model.backbone.init_cfg=None']

    def train(batch, work):
        r = subprocess.run([sys.executable, '-c', OOM_RUN, str(HEADROOM), SEG, '--work-dir', str(work),
                            '--cfg-options', f'train_dataloader.batch_size={batch}', *opts],
                           cwd=REPO, capture_output=True, text=True, timeout=600,
                           env={**os.environ, 'OMP_NUM_THREADS': '1', 'INCEPTIONNEXT_MALLOC': 'default'})
        return r.returncode, r.stderr.strip().splitlines()

    code, lines = train(64, tmp_path / 'big')
    assert code == 2, lines[-20:]
    assert lines[-1].startswith('error: out of host memory (') and 'Traceback' not in '\n'.join(lines), lines[-20:]
    assert 'at train_dataloader.batch_size=64 per process: lower train_dataloader.batch_size' in lines[-1]
    assert re.search(r'out of host memory \((the CPU allocator could not get [0-9.]+ MiB more|MemoryError|could '
                     r'not create a primitive)\)', lines[-1]), lines[-1]  # what failed, said in a few words
    code, lines = train(2, tmp_path / 'small')
    assert code == 0, lines[-20:]


# --------------------------------------------------------------------------------------------------
# ONNX
# --------------------------------------------------------------------------------------------------
def test_onnx_write_is_atomic_and_says_its_minimum_size(tmp_path, monkeypatch):
    pytest.importorskip('onnxruntime')
    from backbones.deploy import onnx as deploy
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=32), nn.AdaptiveAvgPool2d(1))
    path = str(tmp_path / 'm.onnx')
    deploy.export(model, path, shape=(64, 64), dynamic=True)
    good = open(path, 'rb').read()
    session = deploy.ort_session(path)
    assert session.get_modelmeta().custom_metadata_map['min_size'] == '32'
    with pytest.raises(UserInputError, match=r'needs H and W of at least 32 px \(min_size in its metadata\), got '
                                             r'\(1, 3, 16, 16\)'):
        deploy.ort_run(session, np.zeros((1, 3, 16, 16), np.float32), 'm.onnx')

    def interrupted(self, dst, **kw):
        with open(dst, 'wb') as f:
            f.write(b'partial')
        raise KeyboardInterrupt('signal during the write')

    import torch.onnx
    monkeypatch.setattr(torch.onnx.ONNXProgram, 'save', interrupted)
    with pytest.raises(KeyboardInterrupt):
        deploy.export(model, path, shape=(64, 64), dynamic=True)
    assert open(path, 'rb').read() == good and os.listdir(tmp_path) == ['m.onnx']
