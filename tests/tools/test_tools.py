"""tools/train.py, test.py, dist_train.sh, plot_logs.py on a tiny UperNet-atto / generated ADE config.

Every run goes through the real tools. Where the process is the point, a real subprocess: a SIGKILLed run,
torchrun + gloo for 2 processes, a second process on a locked work dir, mmseg's own tools in a fresh
interpreter (nothing of ours installed beforehand), one bad-input case as a user's shell sees it. The rest
run in this process through conftest.tool (the tool's ``__main__`` and ``run_cli``; a fresh process's
torch threads), which saves each run the imports of torch and mmseg.
"""
import glob
import json
import os
import os.path as osp
import re
import sys

import pytest
import torch

from backbones.datasets.synthetic import write_ade
from tests.helpers import REPO
from tests.helpers.processes import free_port, run, subprocess_env
from tests.helpers.tool import tool

pytestmark = pytest.mark.slow

BASE = osp.join(REPO, 'configs', 'upernet_inceptionnext-atto_1xb8-160k_synthetic-ade-128x128.py')
PY = sys.executable

CONFIG = '''
_base_ = [{base!r}]
custom_imports = dict(imports=['backbones', 'tests.helpers.kill_hook'], allow_failed_imports=False)
model = dict(
    data_preprocessor=dict(size=(64, 64)),
    backbone=dict(init_cfg=None, drop_path_rate={drop_path}, norm_eval={norm_eval}),
    decode_head=dict(channels=16, dropout_ratio={dropout}{head_norm}),
    auxiliary_head=dict(channels=8, dropout_ratio={dropout}{head_norm}))
_test_pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'), dict(type='PackSegInputs')]
train_dataloader = dict(
    batch_size={batch}, num_workers=0, persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle={shuffle}),
    dataset=dict(data_root={root!r}, pipeline={train_pipeline}))
val_dataloader = dict(num_workers=0, persistent_workers=False,
                      dataset=dict(data_root={root!r}, pipeline=_test_pipeline))
test_dataloader = val_dataloader
optim_wrapper = {optim}
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=2),
                   dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=2, end={iters})]
train_cfg = dict(max_iters={iters}, val_interval={iters})
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=4))
'''
SGD = "dict(_delete_=True, type='OptimWrapper', optimizer=dict(type='SGD', lr=0.01, momentum=0.9))"
RANDOM_PIPELINE = ("[dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'), dict(type='RandomFlip', prob=0.5),"
                   " dict(type='PhotoMetricDistortion'), dict(type='PackSegInputs')]")


@pytest.fixture(scope='module')
def ade_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('ade'))
    write_ade(root, num_train=16, num_val=4, size=(64, 64), seed=1)
    return root


def make_config(folder, root, name='cfg.py', **kw):
    opts = dict(drop_path=0.1, norm_eval=False, dropout=0.1, head_norm='', batch=2, shuffle=True,
                optim='dict(optimizer=dict(lr=2e-3))',
                train_pipeline=RANDOM_PIPELINE, iters=8)
    opts.update(kw)
    path = osp.join(folder, name)
    with open(path, 'w') as f:
        f.write(CONFIG.format(base=BASE, root=root, **opts))
    return path


def weights(path):
    return torch.load(path, map_location='cpu', weights_only=False)['state_dict']


def scalars(work_dir):
    """step -> record, over all runs in the work dir (a resumed run continues the steps)."""
    recs = {}
    for path in sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))):
        for line in open(path):
            rec = json.loads(line)
            recs.setdefault('train' if 'loss' in rec else 'val', {})[rec['step']] = rec
    return recs


@pytest.fixture(scope='module')
def straight_run(tmp_path_factory, ade_root):
    """8 iterations straight with drop path, dropout and random augmentation; validation at the end."""
    d = str(tmp_path_factory.mktemp('straight'))
    cfg = make_config(d, ade_root)
    out = tool('tools/train.py', cfg, '--work-dir', osp.join(d, 'work'))
    return cfg, osp.join(d, 'work'), out


def test_train_logs_progress_tensorboard_and_plot(straight_run, tmp_path):
    cfg, work, out = straight_run
    assert re.search(r'Iter\(train\) \[8/8\].*eta', out) and 'mIoU' in out
    assert glob.glob(osp.join(work, '*', 'vis_data', 'events.out.tfevents.*'))  # TensorBoard scalars
    assert sorted(os.listdir(work)).count('iter_8.pth') == 1
    png = str(tmp_path / 'curves.png')
    assert 'wrote' in tool('tools/analysis_tools/plot_logs.py', work, '--out', png)
    import matplotlib.image as mpimg
    img = mpimg.imread(png)
    assert img.shape[0] > 300 and img.shape[1] > 800 and img[..., :3].std() > 0.05  # a drawn figure


def test_killed_run_resumes_exactly(straight_run, tmp_path, ade_root):
    """SIGKILL right after the checkpoint of iteration 4, then --resume: bitwise the straight run."""
    cfg, work_a, _ = straight_run
    work_b = str(tmp_path / 'work')
    killed = cfg.replace('.py', '_kill.py')
    with open(killed, 'w') as f:
        f.write(open(cfg).read() + "\ncustom_hooks = [dict(type='RNGStateHook'), "
                                   "dict(type='KillAfterIterHook', at_iter=6)]\n")
    run([PY, 'tools/train.py', killed, '--work-dir', work_b], expect=-9)
    assert open(osp.join(work_b, 'last_checkpoint')).read().strip().endswith('iter_4.pth')
    assert not glob.glob(osp.join(work_b, '.*.part'))  # no half-written file left behind
    out = tool('tools/train.py', cfg, '--work-dir', work_b, '--resume')
    assert 'resumed epoch: 0, iter: 4' in out
    a, b = weights(osp.join(work_a, 'iter_8.pth')), weights(osp.join(work_b, 'iter_8.pth'))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), 'resumed weights differ from the straight run'
    la, lb = scalars(work_a)['train'], scalars(work_b)['train']
    assert [la[s]['loss'] for s in range(1, 9)] == [lb[s]['loss'] for s in range(1, 9)]


def test_resume_without_rng_states_is_not_exact(straight_run, tmp_path):
    """The control: the same kill/resume without RNGStateHook diverges (so the exact test can fail)."""
    cfg, work_a, _ = straight_run
    work_c = str(tmp_path / 'work')
    plain = cfg.replace('.py', '_norng.py')
    with open(plain, 'w') as f:
        f.write(open(cfg).read() + '\ncustom_hooks = []\n')
    killed = cfg.replace('.py', '_norng_kill.py')
    with open(killed, 'w') as f:
        f.write(open(cfg).read() + "\ncustom_hooks = [dict(type='KillAfterIterHook', at_iter=4)]\n")
    run([PY, 'tools/train.py', killed, '--work-dir', work_c], expect=-9)
    tool('tools/train.py', plain, '--work-dir', work_c, '--resume')
    a, c = weights(osp.join(work_a, 'iter_8.pth')), weights(osp.join(work_c, 'iter_8.pth'))
    assert any(not torch.equal(a[k], c[k]) for k in a)


DDP_KW = dict(drop_path=0.0, norm_eval=True, dropout=0.0, head_norm=', norm_cfg=None', shuffle=False,
              train_pipeline='_test_pipeline', iters=4, optim=SGD)
EVERY_ITER = ['--cfg-options', 'default_hooks.checkpoint.interval=1', 'default_hooks.checkpoint.max_keep_ckpts=-1']


@pytest.fixture(scope='module')
def one_process_batch4(tmp_path_factory, ade_root):
    d = tmp_path_factory.mktemp('one')
    one = make_config(str(d), ade_root, 'one.py', batch=4, **DDP_KW)
    tool('tools/train.py', one, '--work-dir', str(d / 'work'), *EVERY_ITER)
    return weights(str(d / 'work' / 'iter_4.pth')), weights(str(d / 'work' / 'iter_1.pth'))


@pytest.mark.parametrize('layout', ['2 processes', '2 nodes'])
def test_ddp_equals_one_process_with_the_total_batch(layout, one_process_batch4, tmp_path, ade_root):
    """DDP over 2 gloo processes x batch 2 == 1 process x batch 4 (BN frozen: per-process batch
    statistics are the one thing that would differ; no dropout, drop path or random augmentation).
    '2 nodes': two torchrun launches of 1 process each (NNODES=2, NODE_RANK 0 / 1) meeting on the loopback
    address through tools/dist_train.sh, as two machines would.

    With SGD: the two runs' gradients differ by float rounding (a mean of two all-reduced half-batch means
    against one mean), which SGD passes on linearly, so the bound is relative to how far the weights move
    (1e-5 of it, plus 1e-6 of the tensor's largest weight for the rounding of the weights themselves;
    measured: 3e-7 of the movement). AdamW's update, lr * g / (|g| + eps), would turn rounding noise in
    gradients near eps into weight changes of up to lr, by an amount that depends on the CPU's float paths."""
    two = make_config(str(tmp_path), ade_root, 'two.py', batch=2, **DDP_KW)
    args = ['bash', 'tools/dist_train.sh', two, '2', '--work-dir', str(tmp_path / 'two')] + EVERY_ITER
    port = str(free_port())
    if layout == '2 processes':
        out = run(args, env={'PORT': port})
    else:
        import subprocess
        args[3] = '1'
        nodes = {'NNODES': '2', 'MASTER_ADDR': '127.0.0.1', 'PORT': port}
        node1 = subprocess.Popen(args, cwd=REPO, env=subprocess_env({**nodes, 'NODE_RANK': '1'}),
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            out = run(args, env={**nodes, 'NODE_RANK': '0'}, timeout=300)
            out1 = node1.communicate(timeout=120)[0]
        finally:
            node1.kill()
        assert node1.returncode == 0, out1[-3000:]
    assert 'SyncBN' not in out or 'replaced by BN' in out
    (a, a1), b = one_process_batch4, weights(str(tmp_path / 'two' / 'iter_4.pth'))
    floats = [k for k in a if a[k].is_floating_point()]
    moved = max((a[k] - a1[k]).abs().max().item() for k in floats)  # iterations 2-4
    assert moved > 1e-3
    excess = {k: (a[k] - b[k]).abs().max().item() / (1e-5 * moved + 1e-6 * a[k].abs().max().item())
              for k in floats}
    worst = max(excess, key=excess.get)
    assert excess[worst] <= 1, f'{worst}: {(a[worst] - b[worst]).abs().max().item()} (weights moved {moved})'


def test_test_tool_reproduces_logged_metric(straight_run, tmp_path):
    cfg, work, _ = straight_run
    logged = scalars(work)['val'][8]['mIoU']
    out = tool('tools/test.py', cfg, osp.join(work, 'iter_8.pth'), '--work-dir', str(tmp_path / 't'),
               '--out', str(tmp_path / 'preds.pkl'), '--show-dir', str(tmp_path / 'show'))
    assert '4/4' in out  # the progress bar over the 4 validation images
    measured = float(re.search(r'metrics: .*mIoU=([0-9.]+)', out).group(1))
    assert measured == pytest.approx(logged, abs=1e-4)
    assert os.path.getsize(tmp_path / 'preds.pkl') > 0
    assert len(glob.glob(str(tmp_path / 'show' / '**' / '*.png'), recursive=True)) == 4


@pytest.mark.parametrize('case', ['config', 'syntax', 'cfg_key', 'cfg_type', 'cfg_list', 'arch_name', 'data',
                                  'resume_text', 'resume_weights', 'arch', 'gpus'])
def test_bad_input_gives_one_clear_error(case, straight_run, tmp_path, ade_root):
    cfg, work, _ = straight_run
    train = [PY, 'tools/train.py']
    wd = ['--work-dir', str(tmp_path / 'w')]
    if case == 'config':
        args, msg = train + ['configs/nope.py'], 'config file not found: configs/nope.py'
    elif case == 'syntax':
        bad = tmp_path / 'broken.py'
        bad.write_text("_base_ = ['x.py']\nmodel = dict(\n    backbone=dict(arch='atto',\n")
        args, msg = train + [str(bad)], f'{bad}:[0-9]+: syntax error in config'
    elif case == 'cfg_type':
        args = train + [cfg, *wd, '--cfg-options', 'optim_wrapper.optimizer.lr=fast']
        msg = r"--cfg-options optim_wrapper.optimizer.lr='fast': the config has a number there \(0.002\), got text"
    elif case == 'cfg_list':
        args = train + [cfg, *wd, '--cfg-options', 'train_cfg.max_iters=[1,2]']
        msg = r"--cfg-options train_cfg.max_iters=\[1, 2\]: the config has a number there \(8\), got a list"
    elif case == 'arch_name':
        args = train + [cfg, *wd, '--cfg-options', 'model.backbone.arch=Tiny-X']
        msg = r"model.backbone.arch: unknown InceptionNeXt arch 'Tiny-X'; known: atto, tiny"
    elif case == 'cfg_key':
        args = train + [cfg, *wd, '--cfg-options', 'model.decode_head.chanels=8']
        msg = "unknown config key 'model.decode_head.chanels'.*did you mean channels"
    elif case == 'data':
        args = train + [cfg, *wd, '--cfg-options', 'train_dataloader.dataset.data_root=/nonexistent/ade']
        msg = r'data folder not found: /nonexistent/ade \(train_dataloader.dataset.data_root\)'
    elif case == 'resume_text':
        bad = tmp_path / 'notes.pth'
        bad.write_text('not a checkpoint')
        args, msg = train + [cfg, *wd, '--resume', str(bad)], 'truncated or corrupt'
    elif case == 'resume_weights':
        plain = tmp_path / 'weights.pth'
        torch.save(weights(osp.join(work, 'iter_4.pth')), plain)
        args, msg = train + [cfg, *wd, '--resume', str(plain)], 'is not a training checkpoint'
    elif case == 'arch':
        args = train + [cfg, *wd, '--resume', osp.join(work, 'iter_4.pth'), '--cfg-options',
                        'model.backbone.arch=tiny', 'model.decode_head.in_channels=[96,192,384,768]',
                        'model.auxiliary_head.in_channels=384']
        msg = 'was saved by a different model.*shape mismatches.*backbone.stem.conv.weight'
    else:
        for gpus in ('0', 'two', '-1'):
            out = run(['bash', 'tools/dist_train.sh', cfg, gpus], expect=2)
            assert f"GPUS must be a positive number of processes per node, got '{gpus}'" in out
        return
    # 'config' as a user's shell sees it (a process, its exit status, all it prints); the rest in-process
    out = run(args, expect=2) if case == 'config' else tool(*args[1:], expect=2)
    assert re.search('error: .*' + msg, out), out[-2000:]
    assert 'Traceback' not in out
    if case != 'arch':  # (that one needs the built model)
        assert 'Config:' not in out  # the error comes before the Runner prints the config


def test_second_run_on_a_busy_work_dir_stops(straight_run, tmp_path):
    """Two training runs on one work dir: the second stops at once, naming the first (its pid); the
    first's files are untouched. A lock of a dead process does not count (flock dies with it)."""
    import subprocess
    import time
    cfg, _, _ = straight_run
    work = tmp_path / 'w'
    first = subprocess.Popen([PY, 'tools/train.py', cfg, '--work-dir', str(work), '--cfg-options',
                              'train_cfg.max_iters=400', 'train_cfg.val_interval=400'],
                             cwd=REPO, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):  # until the first run holds the lock and has started training
            if list(work.glob('*/vis_data/scalars.json')):
                break
            time.sleep(0.2)
        out = tool('tools/train.py', cfg, '--work-dir', str(work), expect=2)  # (flock: another process holds it)
        assert re.search(rf'error: work dir {work} is in use by another training run \(pid {first.pid} on ', out), out
        assert 'Traceback' not in out and len(list(work.glob('2*'))) == 1  # no second log folder
    finally:
        first.kill()
        first.wait()
    # the killed run's lock is gone (--restart: it may have saved a checkpoint, which would need --resume)
    out = tool('tools/train.py', cfg, '--work-dir', str(work), '--restart', '--cfg-options', 'train_cfg.max_iters=1',
               'train_cfg.val_interval=1', 'default_hooks.checkpoint.interval=1')
    assert (work / 'iter_1.pth').exists()


def test_mmseg_own_tools_train_resume_and_test_our_config(straight_run, tmp_path):
    """mmseg's own tools/train.py and tools/test.py (shipped in the installed package) with our config: the
    config's RobustRunner installs the fixes, so a resume is exact (bitwise our straight run) and testing a
    training checkpoint works; importing backbones alone changed nothing (tested in test_mmengine_fixes.py)."""
    import mmseg
    tools = osp.join(osp.dirname(mmseg.__file__), '.mim', 'tools')
    cfg, work, _ = straight_run
    mine = str(tmp_path / 'w')
    run([PY, osp.join(tools, 'train.py'), cfg, '--work-dir', mine, '--cfg-options', 'train_cfg.max_iters=4'])
    out = run([PY, osp.join(tools, 'train.py'), cfg, '--work-dir', mine, '--resume'])
    assert 'resumed' in out.lower()
    a, b = weights(osp.join(work, 'iter_8.pth')), weights(osp.join(mine, 'iter_8.pth'))
    assert all(torch.equal(a[k], b[k]) for k in a)
    out = run([PY, osp.join(tools, 'test.py'), cfg, osp.join(mine, 'iter_8.pth'), '--work-dir', str(tmp_path / 't')])
    miou = float(re.search(r'mIoU: ([0-9.]+)', out).group(1))
    assert miou == pytest.approx(scalars(work)['val'][8]['mIoU'], abs=0.01)


def _mount_tmpfs(path, options):
    import subprocess
    path.mkdir()
    r = subprocess.run(['mount', '-t', 'tmpfs', '-o', options, 'tmpfs', str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f'cannot mount a tmpfs here ({r.stderr.strip()}): needs root')


def _umount(path):
    import subprocess
    subprocess.run(['umount', str(path)], capture_output=True)


def test_full_disk_and_read_only_work_dir_give_one_line_and_keep_the_last_checkpoint(straight_run, tmp_path):
    """A work dir on a (small tmpfs) disk that fills up after the first checkpoint: exit 2, one line naming
    the file and the cause, and iter_4.pth complete and loadable. A read-only work dir: exit 2 at once."""
    cfg, work, _ = straight_run
    size = os.path.getsize(osp.join(work, 'iter_4.pth'))
    disk = tmp_path / 'disk'
    _mount_tmpfs(disk, f'size={int(size * 1.6)}')
    try:
        out = tool('tools/train.py', cfg, '--work-dir', str(disk / 'w'), expect=2)
        assert re.search(r'error: cannot write .*iter_8\.pth.*: No space left on device \(the last complete '
                         r'checkpoint, if any, is intact\)', out), out[-3000:]
        assert 'Traceback' not in out
        assert weights(str(disk / 'w' / 'iter_4.pth')).keys() == weights(osp.join(work, 'iter_4.pth')).keys()
        assert not list((disk / 'w').glob('.*.part'))  # no half-written temp file left
    finally:
        _umount(disk)
    ro = tmp_path / 'ro'
    _mount_tmpfs(ro, 'ro,size=1m')
    try:
        out = tool('tools/train.py', cfg, '--work-dir', str(ro / 'w'), expect=2)
        assert re.search(rf'error: cannot write to the work dir {ro}/w: Read-only file system', out), out[-3000:]
        assert 'Traceback' not in out
    finally:
        _umount(ro)


def test_resume_with_another_process_count_says_the_batch_changed(straight_run, tmp_path):
    cfg, work, _ = straight_run
    mine = tmp_path / 'w'
    mine.mkdir()
    import shutil
    shutil.copy(osp.join(work, 'iter_4.pth'), mine / 'iter_4.pth')
    (mine / 'last_checkpoint').write_text(str(mine / 'iter_4.pth'))
    out = run(['bash', 'tools/dist_train.sh', cfg, '2', '--work-dir', str(mine), '--resume', '--cfg-options',
               'train_cfg.max_iters=5'], env={'PORT': str(free_port())})
    assert ('resuming a run of 1 processes with 2; the total batch changes from 1 x 2 = 2 to 2 x 2 = 4 images '
            'per iteration') in out, out[-3000:]
