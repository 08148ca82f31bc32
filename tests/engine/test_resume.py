"""Runs that survive the cluster: SIGUSR1 / SIGINT save like SIGTERM (the signal set configurable), resuming
from a moved or copied work dir, the resume checks that run before the Runner writes into the work dir
(another arch, nothing left to train, another total batch), ``--auto-resume`` and the automatic resume of a
requeued Slurm job, a process group that does not form, and, end to end through the real scripts: a Slurm
requeue (stand-in ``srun`` / ``scontrol`` on PATH, two CPU processes) continuing bitwise as the
uninterrupted run, a torchrun restart resuming, Ctrl-C saving (one process, and two through torchrun).
"""
import glob
import os
import os.path as osp
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from mmengine.hooks import Hook

from backbones.engine import mmengine_fixes
from backbones.engine.hooks import SaveOnSignalHook
from backbones.engine.resume import check_resume_fits, find_resume_checkpoint
from backbones.engine.runner import RobustRunner
from backbones.utils.config import load_config
from backbones.utils.errors import CheckpointError, UserInputError
from tests.helpers import REPO
from tests.helpers.logs import LogCapture
from tests.helpers.processes import free_port, signal_group_when, subprocess_env
from tests.helpers.seg_data import SEG
from tests.helpers.threads import single_torch_thread
from tests.helpers.tool import tool
from tests.helpers.toy import Toy, ToyData

one_thread = pytest.fixture(autouse=True, scope='module')(single_torch_thread)
PY = sys.executable


class SendSignal(Hook):
    """Sends ``sig`` to this process right after iteration ``at_iter`` (before the SaveOnSignalHook looks)."""
    priority = 'HIGHEST'

    def __init__(self, at_iter, sig):
        self.at_iter, self.sig = at_iter, sig

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.at_iter:
            os.kill(os.getpid(), self.sig)


def toy_runner(work_dir, iters=8, hooks=(), resume=False, interval=100):
    return RobustRunner(
        model=Toy(), work_dir=str(work_dir),
        train_dataloader=dict(dataset=ToyData(), sampler=dict(type='DefaultSampler', shuffle=False),
                              batch_size=4, num_workers=0),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        train_cfg=dict(by_epoch=False, max_iters=iters),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=interval, by_epoch=False),
                           logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=list(hooks), resume=resume, default_scope='mmengine')


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


# --------------------------------------------------------------------------------------------------
# Moved and copied work dirs
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('how', ['mv', 'cp'])
def test_resume_from_a_moved_or_copied_work_dir(tmp_path, how):
    """last_checkpoint holds the absolute path the run saved to. After ``mv`` that file is gone (resume
    failed: "checkpoint file not found"); after ``cp -r`` it is the OLD dir's (resume silently read it). The
    file of that name inside the work dir is taken instead, with a warning."""
    from mmengine.runner import find_latest_checkpoint
    old, new = tmp_path / 'old', tmp_path / 'new'
    toy_runner(old, iters=4, interval=2).train()
    mmengine_fixes._LOCKS.pop(osp.realpath(old)).close()  # the run ended (as its process would)
    (shutil.move if how == 'mv' else shutil.copytree)(str(old), str(new))
    # what MMEngine's own look-up gives: a missing file (mv) or the old dir's file (cp)
    assert find_latest_checkpoint(str(new)) == str(old / 'iter_4.pth')
    with LogCapture() as log:
        assert find_resume_checkpoint(str(new)) == str(new / 'iter_4.pth')
    assert log.warnings() == [f'{new}/last_checkpoint names {old}/iter_4.pth, outside the work dir (a '
                              f'moved or copied work dir?): resuming from {new}/iter_4.pth, the file of that '
                              'name in the work dir']
    # a resume without a file (mmseg's / mmdet's own --resume) continues from the work dir's file
    if how == 'cp':
        os.remove(old / 'iter_4.pth')  # so that reading the old dir's file would fail
    runner = toy_runner(new, iters=6, interval=2, resume=True)
    with LogCapture() as log:
        runner.train()
    assert runner.iter == 6 and 'resumed epoch: 0, iter: 4' in log.text
    assert osp.isfile(new / 'iter_6.pth')


def test_last_checkpoint_outside_the_work_dir_warns(tmp_path):
    work, elsewhere = tmp_path / 'w', tmp_path / 'elsewhere'
    work.mkdir()
    elsewhere.mkdir()
    (elsewhere / 'iter_9.pth').write_bytes(b'x')
    (work / 'last_checkpoint').write_text(str(elsewhere / 'iter_9.pth'))
    with LogCapture() as log:
        assert find_resume_checkpoint(str(work)) == str(elsewhere / 'iter_9.pth')
    assert log.warnings() == [f'{work}/last_checkpoint names {elsewhere}/iter_9.pth, outside the work dir '
                              f'{work}: resuming from it']
    os.remove(elsewhere / 'iter_9.pth')
    with pytest.raises(CheckpointError, match='which does not exist, and the work dir holds no iter_9.pth'):
        find_resume_checkpoint(str(work))
    os.remove(work / 'last_checkpoint')  # no last_checkpoint: the highest number, not the newest file
    for n in (10, 9):
        (work / f'iter_{n}.pth').write_bytes(b'x')
    assert find_resume_checkpoint(str(work)) == str(work / 'iter_10.pth')


# --------------------------------------------------------------------------------------------------
# Resume checks before anything is written
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def seg_run(tmp_path_factory):
    """A tiny ADE-layout data set and a work dir holding a training checkpoint of the atto UperNet config at
    iteration 27, saved by 1 process x batch 8."""
    from mmengine.registry import MODELS, DefaultScope

    from backbones.datasets.synthetic import write_ade
    d = tmp_path_factory.mktemp('seg_run')
    root = str(d / 'ade')
    write_ade(root, num_train=4, num_val=2, size=(64, 64), seed=3)
    cfg = load_config(osp.join(REPO, SEG))
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = MODELS.build(cfg.model)
    meta = dict(iter=27, epoch=0, train_batch=dict(world_size=1, batch_size=8, accumulative_counts=1))
    return dict(root=root, state_dict=model.state_dict(), meta=meta, dir=d)


def work_dir_with(seg_run, tmp_path, **meta):
    work = tmp_path / 'w'
    work.mkdir()
    ckpt = dict(state_dict=seg_run['state_dict'], meta=dict(seg_run['meta'], **meta))
    torch.save(ckpt, work / 'iter_27.pth')
    (work / 'last_checkpoint').write_text(str(work / 'iter_27.pth'))
    return work


@pytest.mark.parametrize('case', ['arch', 'max_iters'])
def test_resume_is_checked_before_the_runner_writes(seg_run, tmp_path, case):
    """Another arch was refused only after the Runner had written its (wrong) config into the work dir;
    max_iters below the checkpoint's iteration exited 0 having done nothing. Both are now one line, and the
    work dir holds what it held."""
    work = work_dir_with(seg_run, tmp_path)
    opts = {'arch': ['model.backbone.arch=tiny'], 'max_iters': ['train_cfg.max_iters=20']}[case]
    out = tool('tools/train.py', SEG, '--work-dir', work, '--resume', '--cfg-options',
               f'train_dataloader.dataset.data_root={seg_run["root"]}',
               f'val_dataloader.dataset.data_root={seg_run["root"]}', *opts, expect=2)
    errors = [line for line in out.splitlines() if line.startswith('error:')]
    want = {'arch': f'error: {work}/iter_27.pth was saved by a different model (another arch or config?)',
            'max_iters': f'error: --resume: {work}/iter_27.pth is at iteration 27 and '
                         'train_cfg.max_iters=20: nothing is left to train; raise train_cfg.max_iters to '
                         'train on'}[case]
    assert len(errors) == 1 and errors[0].startswith(want), out[-2000:]
    assert sorted(os.listdir(work)) == ['iter_27.pth', 'last_checkpoint']


def test_auto_resume_and_a_requeued_job(seg_run, tmp_path):
    """``--auto-resume`` and a requeued Slurm job (SLURM_RESTART_COUNT=1, even with the --restart of its
    first start) resume the work dir's run; a checkpoint that ends the run leaves nothing to do (exit 0, one
    line). Before, the requeued job was refused ("holds an earlier training run ... add --resume")."""
    work = work_dir_with(seg_run, tmp_path)
    data = [f'train_dataloader.dataset.data_root={seg_run["root"]}',
            f'val_dataloader.dataset.data_root={seg_run["root"]}', 'train_cfg.max_iters=27']
    out = tool('tools/train.py', SEG, '--work-dir', work, '--auto-resume', '--cfg-options', *data)
    assert f'{work}/iter_27.pth ends the run (train_cfg\'s last iteration / epoch): nothing is left to ' \
        'train' in out
    out = tool('tools/train.py', SEG, '--work-dir', work, '--restart', '--cfg-options', *data,
               env={'SLURM_RESTART_COUNT': '1'})
    assert f'the Slurm job was requeued (SLURM_RESTART_COUNT=1): resuming the run in {work}' in out
    assert 'nothing is left to train' in out
    assert sorted(os.listdir(work)) == ['iter_27.pth', 'last_checkpoint']
    out = tool('tools/train.py', SEG, '--work-dir', work, '--auto-resume', '--restart', expect=2)
    assert 'error: --auto-resume continues the work dir\'s run, --restart trains from scratch: pass ' \
        'one' in out


def test_another_total_batch_warns_with_both_totals(seg_run):
    cfg = load_config(osp.join(REPO, SEG), {'train_dataloader.batch_size': 2})
    ckpt = dict(state_dict=seg_run['state_dict'], meta=seg_run['meta'])
    with LogCapture() as log:
        assert check_resume_fits(cfg, ckpt, 'x.pth')
    assert log.warnings() == ['resuming x.pth with another total batch: the checkpoint\'s run trained on '
                              '1 processes x 8 images = 8 images per step, this run on 1 processes x 2 '
                              'images = 2 (lr and schedule stay as configured: the resumed run is not the '
                              'one the checkpoint started)']
    with LogCapture() as log:  # the same total: no word
        assert check_resume_fits(load_config(osp.join(REPO, SEG)), ckpt, 'x.pth')
    assert log.warnings() == []


def test_a_checkpoint_records_its_total_batch(tmp_path):
    toy_runner(tmp_path / 'w', iters=2, interval=2).train()
    meta = torch.load(tmp_path / 'w' / 'iter_2.pth', weights_only=True)['meta']
    assert meta['train_batch'] == dict(world_size=1, batch_size=4, accumulative_counts=1)


# --------------------------------------------------------------------------------------------------
# A process group that does not form
# --------------------------------------------------------------------------------------------------
@pytest.mark.slow  # a subprocess
def test_a_process_group_that_does_not_form_fails_fast_with_one_line():
    """Rank 0 of 2 with no rank 1 (what a restarted group that cannot re-form looks like to a process): one
    line and exit 2 after DIST_START_TIMEOUT, instead of gloo's half-hour wait."""
    port = free_port()
    env = subprocess_env({'RANK': '0', 'WORLD_SIZE': '2', 'LOCAL_RANK': '0', 'MASTER_ADDR': '127.0.0.1',
                          'MASTER_PORT': str(port), 'DIST_START_TIMEOUT': '3',
                          'TORCHELASTIC_RESTART_COUNT': '1'})
    code = ('from backbones.engine.mmengine_fixes import start_process_group_or_fail as s; s(); '
            'print("formed")')
    t0 = time.time()
    r = subprocess.run([PY, '-c', code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and time.time() - t0 < 60, r.stdout + r.stderr
    assert r.stderr.strip().splitlines() == [
        'error: process 0 of 2: the process group did not form within 3 s (DIST_START_TIMEOUT) at '
        f'127.0.0.1:{port}; '
        'a process missing, or another MASTER_ADDR / PORT; torchrun restart 1: the restarted group could not '
        're-form; run the same command again, it resumes from the last checkpoint']


# --------------------------------------------------------------------------------------------------
# End to end through the real scripts: Slurm (stand-in srun / scontrol), torchrun, Ctrl-C
# --------------------------------------------------------------------------------------------------
SRUN = r'''#!/usr/bin/env bash
# stand-in srun: runs the command --ntasks times on this machine with the task variables Slurm sets
n=1
while [ $# -gt 0 ]; do
    case "$1" in
        -p|-N|-n|-J) shift 2 ;;
        --ntasks=*) n=${1#--ntasks=}; shift ;;
        -*) shift ;;
        *) break ;;
    esac
done
echo "srun: $n tasks" >> "$STANDIN_LOG"
pids=()
for ((i = 0; i < n; i++)); do
    SLURM_PROCID=$i SLURM_LOCALID=$i SLURM_NTASKS=$n SLURM_NODELIST='cpu-node[01]' "$@" &
    pids+=($!)
done
rc=0
for p in "${pids[@]}"; do
    wait "$p" || { c=$?; [ "$rc" = 0 ] && rc=$c; }
done
exit "$rc"
'''
SCONTROL = r'''#!/usr/bin/env bash
# stand-in scontrol: the node list's hosts are this machine; a requeue is written down
echo "scontrol $*" >> "$STANDIN_LOG"
case "$1" in
    show) echo 127.0.0.1 ;;
    requeue) ;;
    *) exit 1 ;;
esac
'''
# (a hook of the test goes before SaveOnSignalHook: same priority, so it runs first in the same iteration)
HOOKS = ("custom_hooks = [dict(type='RNGStateHook'), dict(type='NonFiniteLossHook'){extra}, "
         "dict(type='SaveOnSignalHook')]\n")


@pytest.fixture(scope='module')
def configs(tmp_path_factory):
    from backbones.datasets.synthetic import write_ade
    from tests.helpers.seg_runs import BASE, CONFIG
    d = tmp_path_factory.mktemp('cluster')
    root = str(d / 'ade')
    write_ade(root, num_train=8, num_val=2, size=(64, 64), seed=4)

    def make(name, extra='', **kw):
        opts = dict(workers=0, iters=6, ckpt=1)
        opts.update(kw)
        path = str(d / f'{name}.py')
        with open(path, 'w') as f:
            f.write(CONFIG.format(base=BASE, root=root, **opts) + HOOKS.format(extra=extra))
        return path
    return make


def standins(tmp_path):
    """A folder with the stand-in srun and scontrol, and the file they write to."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    for name, text in (('srun', SRUN), ('scontrol', SCONTROL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return bin_dir, tmp_path / 'standin.log'


def weights(path):
    return torch.load(path, weights_only=True)['state_dict']


@pytest.mark.slow  # three two-process training runs
def test_a_slurm_requeue_continues_bitwise_as_the_uninterrupted_run(configs, tmp_path):
    """tools/slurm_train.sh on CPU nodes (2 tasks, MASTER_ADDR from the stand-in scontrol; before:
    "environment variable MASTER_ADDR expected"). The job gets SIGUSR1 (sbatch --signal=USR1@..) after
    iteration 3: both tasks save iter_3.pth and exit 138, and --requeue requeues the job (scontrol requeue).
    The requeued job runs the SAME command (SLURM_RESTART_COUNT=1), resumes by itself and ends with the
    weights of the uninterrupted run, bit for bit (before: refused, "holds an earlier training run ... add
    --resume")."""
    bin_dir, log = standins(tmp_path)
    plain = configs('plain')
    sig = configs('usr1', extra=", dict(type='KillAfterIterHook', at_iter=3, sig='SIGUSR1')")

    def slurm_train(cfg, work, expect, **env):
        env = dict(PATH=f'{bin_dir}:{os.environ["PATH"]}', STANDIN_LOG=str(log), GPUS='2', GPUS_PER_NODE='0',
                   PORT=str(free_port()), SLURM_JOB_ID='4242', DIST_START_TIMEOUT='120', **env)
        env = {k: v for k, v in subprocess_env(env).items() if k != 'MASTER_ADDR'}
        cmd = ['bash', 'tools/slurm_train.sh', 'cpu', 'job', cfg, '--requeue', '--work-dir', str(work)]
        r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        out = r.stdout + r.stderr
        assert r.returncode == expect, out[-3000:]
        assert 'Traceback' not in out, out[-3000:]
        return out

    slurm_train(plain, tmp_path / 'straight', 0)
    assert 'requeue' not in log.read_text()  # a run that ends does not requeue
    out = slurm_train(sig, tmp_path / 'job', 138)
    assert f'SIGUSR1 received: stopped after iteration 3; saved {tmp_path}/job/iter_3.pth; --resume' in out
    assert 'requeueing job 4242' in out
    assert log.read_text().splitlines()[-1] == 'scontrol requeue 4242'
    assert 'scontrol show hostnames cpu-node[01]' in log.read_text()
    out = slurm_train(sig, tmp_path / 'job', 0, SLURM_RESTART_COUNT='1')
    assert f'the Slurm job was requeued (SLURM_RESTART_COUNT=1): resuming the run in {tmp_path}/job' in out
    assert 'resumed epoch: 0, iter: 3' in out
    a, b = weights(tmp_path / 'straight' / 'iter_6.pth'), weights(tmp_path / 'job' / 'iter_6.pth')
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow  # a two-process training run, restarted
def test_a_torchrun_restart_resumes_the_run(configs, tmp_path):
    """dist_train.sh passes --max-restarts to torchrun (before: an argparse error). Process 1 is SIGKILLed
    after iteration 3; torchrun restarts both, and the restarted group resumes from iter_3.pth by itself
    (before: refused without --resume, and hung in the group's start with it)."""
    cfg = configs('elastic', extra=", dict(type='KillAfterIterHook', at_iter=3, rank=1)")
    work = tmp_path / 'w'
    t0 = time.time()
    cmd = ['bash', 'tools/dist_train.sh', cfg, '2', '--work-dir', str(work), '--max-restarts', '1',
           '--monitor-interval=0.5']
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600,
                       env=subprocess_env({'PORT': str(free_port()), 'DIST_START_TIMEOUT': '120'}))
    out = r.stdout + r.stderr
    assert r.returncode == 0 and time.time() - t0 < 400, out[-3000:]
    assert 'torchrun restarted the processes (TORCHELASTIC_RESTART_COUNT=1): resuming the run in ' \
        f'{work}' in out
    assert 'resumed epoch: 0, iter: 3' in out and osp.isfile(work / 'iter_6.pth'), out[-3000:]


def _interrupt(cmd, pattern, env=None):
    """Ctrl-C (SIGINT to the whole group, SIGINT at its default as in a terminal) once ``pattern`` is printed."""
    return signal_group_when(cmd, pattern, signal.SIGINT, env=env, terminal=True)


@pytest.mark.slow  # training processes
@pytest.mark.parametrize('procs', [1, 2])
def test_ctrl_c_saves_like_sigterm(configs, tmp_path, procs):
    """Ctrl-C mid-run (one process with a dataloader worker, which gets the SIGINT too; two processes through
    torchrun, which passes it on): a checkpoint, one line, exit 130; before: a KeyboardInterrupt traceback
    and nothing saved."""
    cfg = configs('int', iters=400, ckpt=1000, workers=1)
    work = tmp_path / 'w'
    if procs == 1:
        cmd = [PY, 'tools/train.py', cfg, '--work-dir', str(work)]
    else:
        cmd = ['bash', 'tools/dist_train.sh', cfg, '2', '--work-dir', str(work)]
    code, out = _interrupt(cmd, r'Iter\(train\) \[\s*2/400\]', env={'PORT': str(free_port())})
    assert code == 130, out[-3000:]
    found = re.search(r'SIGINT received: stopped after iteration (\d+); saved (\S+iter_(\d+)\.pth); --resume',
                      out)
    assert found and found.group(1) == found.group(3) and osp.isfile(found.group(2)), out[-3000:]
    assert not re.search('Traceback|KeyboardInterrupt|DataLoader worker', out), out[-3000:]
