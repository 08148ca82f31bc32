"""SaveOnSignalHook (backbones/engine/hooks/save_on_signal_hook.py) end to end, through the real tools on a tiny
UperNet-atto and generated ADE data: SIGTERM to the whole process group (as Slurm sends it) saves a checkpoint
that --resume continues, and the finished work dir is not silently restarted.
"""
import os.path as osp
import re
import signal
import sys

import pytest

from tests.helpers.processes import run, signal_group_when
from tests.helpers.seg_runs import checkpoints, error_lines

PY = sys.executable


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


