"""The run guards end to end, through the real tools on a tiny UperNet-atto and generated ADE data: a
diverging run stops with one line and keeps its last finite checkpoint; tools/test.py refuses a non-finite
checkpoint; SIGTERM to the whole process group (as Slurm sends it) saves a checkpoint that --resume
continues, and the finished work dir is not silently restarted; with two processes, a divergence that one
rank sees stops both (no hang). The in-process tests of the same guards are in tests/engine/test_reliability.py.
"""
import glob
import os.path as osp
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from backbones.datasets.synthetic import write_ade
from backbones.engine.hooks import nonfinite_weights
from tests.conftest import REPO, free_port, run, signal_group_when, subprocess_env

PY = sys.executable
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


@pytest.fixture(scope='module')
def configs(tmp_path_factory):
    d = tmp_path_factory.mktemp('div')
    root = str(d / 'ade')
    write_ade(root, num_train=8, num_val=2, size=(64, 64), seed=4)

    def make(name, **kw):
        opts = dict(workers=0, iters=8, ckpt=1)
        opts.update(kw)
        path = str(d / f'{name}.py')
        with open(path, 'w') as f:
            f.write(CONFIG.format(base=BASE, root=root, **opts))
        return path
    return make


def checkpoints(work):
    """{name: finite?} of the work dir's checkpoints, and the file last_checkpoint names."""
    files = {osp.basename(p): not nonfinite_weights(torch.load(p, weights_only=False)['state_dict'])
             for p in glob.glob(osp.join(work, '*.pth'))}
    last = osp.join(work, 'last_checkpoint')
    return files, (osp.basename(open(last).read().strip()) if osp.isfile(last) else None)


def error_lines(out):
    return [line for line in out.splitlines() if line.startswith('error:')]


@pytest.mark.slow  # a training process
def test_a_diverging_run_stops_with_one_line_and_keeps_its_last_finite_checkpoint(configs, tmp_path):
    """lr 1e4: the loss (or, after an overflowing step, the weights) becomes non-finite within a few
    iterations; the run ends with exit 2 and one line, every checkpoint left is finite and last_checkpoint
    names one of them (max_keep_ckpts=1 rotated nothing away for a non-finite one). Before the guard, the same
    run exited 0 with nan checkpoints and scored mIoU 14.63 in tools/test.py."""
    cfg = configs('lr', iters=12)
    work = str(tmp_path / 'w')
    out = run([PY, 'tools/train.py', cfg, '--work-dir', work, '--cfg-options', 'optim_wrapper.optimizer.lr=1e4'],
              expect=2)
    errors = error_lines(out)
    assert len(errors) == 1 and 'Traceback' not in out, out[-3000:]
    assert re.match(r'error: training diverged(: the weights are not finite after iteration \d+| at iteration '
                    r'\d+: non-finite loss \(loss=(nan|inf), decode.loss_ce=)', errors[0]), errors[0]
    assert re.search(r'; lr (\S+\.\.)?1e\+04', errors[0]) and 'optim_wrapper.optimizer.lr' in errors[0], errors[0]
    files, last = checkpoints(work)
    assert files and all(files.values()) and last in files, (files, last)
    assert not re.search(r'Iter\(train\) \[12/12\]', out)

    # tools/test.py refuses a checkpoint with non-finite weights (the diverged model of the issue)
    nan = torch.load(osp.join(work, last), weights_only=False)
    nan['state_dict']['decode_head.conv_seg.weight'].fill_(float('nan'))
    torch.save(nan, tmp_path / 'nan.pth')
    out = run([PY, 'tools/test.py', cfg, str(tmp_path / 'nan.pth'), '--work-dir', str(tmp_path / 't')], expect=2)
    assert error_lines(out) == [f'error: {tmp_path}/nan.pth has non-finite weights (1 tensors, e.g. '
                                'decode_head.conv_seg.weight): it was saved by a diverged run; its scores would '
                                'be meaningless'], out[-2000:]


@pytest.mark.slow  # a training process
def test_sigterm_to_the_process_group_saves_a_checkpoint_that_resume_continues(configs, tmp_path):
    """SIGTERM to the whole process group mid-run (Slurm signals every process of the step, dataloader
    workers included): the run saves iter_<n>.pth, logs it, exits 143. Re-running the work dir without
    --resume is refused; --resume continues at iteration n."""
    cfg = configs('term', iters=400, ckpt=1000, workers=1)
    work = tmp_path / 'w'
    code, out = signal_group_when([PY, 'tools/train.py', cfg, '--work-dir', str(work)],
                                  r'Iter\(train\) \[\s*2/400\]', signal.SIGTERM)
    assert code == 143, out[-3000:]
    found = re.search(r'SIGTERM received: stopped after iteration (\d+); saved (\S+iter_(\d+)\.pth); --resume '
                      r'continues from it', out)
    assert found and found.group(1) == found.group(3), out[-3000:]
    n = int(found.group(1))
    assert osp.isfile(found.group(2)) and checkpoints(str(work)) == ({f'iter_{n}.pth': True}, f'iter_{n}.pth')
    assert 'Traceback' not in out and 'DataLoader worker' not in out, out[-3000:]

    out = run([PY, 'tools/train.py', cfg, '--work-dir', str(work)], expect=2)
    assert error_lines(out) == [f'error: work dir {work} holds an earlier training run (last checkpoint: '
                                f'{work}/iter_{n}.pth); add --resume to continue it, or --work-dir DIR to start '
                                'afresh elsewhere (--restart trains from scratch in this work dir, replacing '
                                'last_checkpoint)'], out[-2000:]
    assert open(work / 'last_checkpoint').read().strip().endswith(f'iter_{n}.pth')
    out = run([PY, 'tools/train.py', cfg, '--work-dir', str(work), '--resume', '--cfg-options',
               f'train_cfg.max_iters={n + 1}', f'train_cfg.val_interval={n + 1}'])
    assert f'resumed epoch: 0, iter: {n}' in out and re.search(rf'Iter\(train\) \[{n + 1}/{n + 1}\]', out)


@pytest.mark.slow  # a training process
def test_two_processes_stop_together_when_one_rank_diverges(configs, tmp_path):
    """Rank 1's loss is nan at iteration 3, rank 0's finite: both stop before that step, each with its line
    (rank 0's says the loss was non-finite in another process), and nothing waits for a collective."""
    cfg = configs('ddp', iters=6)
    with open(cfg, 'a') as f:
        f.write("custom_hooks = [dict(type='NaNLossHook', at_iter=3, rank=1)]\n")
    work = str(tmp_path / 'w')
    t0 = time.time()
    r = subprocess.run(['bash', 'tools/dist_train.sh', cfg, '2', '--work-dir', work], cwd=REPO, capture_output=True,
                       text=True, timeout=600,
                       env=subprocess_env({'PORT': str(free_port())}))
    out = r.stdout + r.stderr
    assert r.returncode != 0 and time.time() - t0 < 300, out[-3000:]
    errors = error_lines(out)
    assert len(errors) == 2, out[-3000:]
    assert any(re.match(r'error: training diverged at iteration 3: non-finite loss \(loss=nan, ', e) for e in errors)
    assert any(e.startswith('error: training diverged at iteration 3: non-finite loss (in another process; here '
                            'loss=') for e in errors), errors
    assert checkpoints(work) == ({'iter_2.pth': True}, 'iter_2.pth')
