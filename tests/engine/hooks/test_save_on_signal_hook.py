"""SaveOnSignalHook (backbones/engine/hooks/save_on_signal_hook.py): in process on a toy model, SIGUSR1 / SIGINT
save like SIGTERM, the signal set is configurable and a signal outside it is left alone; end to end, through the
real tools on a tiny UperNet-atto and generated ADE data, SIGTERM to the whole process group (as Slurm sends it)
saves a checkpoint that --resume continues, and the finished work dir is not silently restarted.
"""
import glob
import os
import os.path as osp
import re
import signal
import sys

import pytest
from mmengine.hooks import Hook

from backbones.engine.hooks import SaveOnSignalHook
from backbones.utils.errors import UserInputError
from tests.helpers.logs import LogCapture
from tests.helpers.processes import run, signal_group_when
from tests.helpers.seg_runs import checkpoints, error_lines
from tests.helpers.threads import single_torch_thread
from tests.helpers.toy import hooked_toy_runner as toy_runner

one_thread = pytest.fixture(autouse=True, scope='module')(single_torch_thread)
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


class SendSignal(Hook):
    """Sends ``sig`` to this process right after iteration ``at_iter`` (before the SaveOnSignalHook looks)."""
    priority = 'HIGHEST'

    def __init__(self, at_iter, sig):
        self.at_iter, self.sig = at_iter, sig

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.at_iter:
            os.kill(os.getpid(), self.sig)


@pytest.mark.parametrize('sig', ['SIGUSR1', 'SIGINT', 'SIGTERM'])
def test_sigusr1_and_sigint_save_like_sigterm(tmp_path, sig):
    """``sbatch --signal=USR1@90`` and Ctrl-C: the iteration ends, iter_3.pth is saved, one line, exit 128 + n
    (SIGUSR1 used to kill the run at once with nothing saved; SIGINT raised KeyboardInterrupt)."""
    num = getattr(signal, sig)
    runner = toy_runner(tmp_path / 'w', hooks=[SendSignal(3, num), SaveOnSignalHook()])
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)}
    with LogCapture() as log, pytest.raises(SystemExit) as e:
        runner.train()
    assert e.value.code == 128 + num
    assert f'{sig} received: stopped after iteration 3; saved {tmp_path}/w/iter_3.pth; --resume continues' \
        in log.text, log.text[-2000:]
    assert open(tmp_path / 'w' / 'last_checkpoint').read().strip().endswith('iter_3.pth')
    assert {s: signal.getsignal(s) for s in before} == before  # all the handlers are put back


def test_the_signal_set_is_configurable():
    assert SaveOnSignalHook().signals == (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)
    assert SaveOnSignalHook(signals=['USR2', 'SIGTERM', int(signal.SIGHUP)]).signals == (
        signal.SIGUSR2, signal.SIGTERM, signal.SIGHUP)
    with pytest.raises(UserInputError, match=r"'SIGFOO' is not a signal"):
        SaveOnSignalHook(signals=['SIGFOO'])
    with pytest.raises(UserInputError, match='SIGKILL cannot be caught'):
        SaveOnSignalHook(signals='KILL')


def test_a_signal_outside_the_set_is_left_alone(tmp_path):
    """``signals=('SIGTERM',)``: SIGINT keeps Python's meaning (KeyboardInterrupt), nothing is saved."""
    hooks = [SendSignal(3, signal.SIGINT), SaveOnSignalHook(signals=['TERM'])]
    runner = toy_runner(tmp_path / 'w', hooks=hooks)
    # (a background job starts with SIGINT ignored)
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            runner.train()
    finally:
        signal.signal(signal.SIGINT, before)
    assert not glob.glob(str(tmp_path / 'w' / '*.pth'))
