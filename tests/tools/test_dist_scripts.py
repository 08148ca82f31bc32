"""The cluster scripts end to end (tools/slurm_train.sh, tools/dist_train.sh): a Slurm requeue (stand-in ``srun``
/ ``scontrol`` on PATH, two CPU processes) continues bitwise as the uninterrupted run, a torchrun restart
resumes, Ctrl-C saves (one process, and two through torchrun).
"""
import os
import os.path as osp
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.helpers import REPO
from tests.helpers.processes import free_port, signal_group_when, subprocess_env

PY = sys.executable


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
