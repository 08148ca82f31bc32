"""One training run per work dir: a lock that dies with its process, and a work dir that holds an earlier run
is continued (``--resume``) or explicitly restarted (``--restart``), never trained over by accident. Both are
done once per run by ``claim_work_dir``."""
import fcntl
import glob
import os
import os.path as osp
import time

from backbones.utils.errors import UserInputError

_LOCKS = {}  # work dir -> open lock file, held until the process ends (the kernel drops it on any exit)
_CLAIMS = {}  # work dir -> what claim_work_dir answered for this process's run there


def lock_work_dir(work_dir: str) -> None:
    """Takes the work dir's training lock (rank 0 only; again in the same process: a no-op).

    A second training run on the same work dir would overwrite this one's checkpoints and config; it
    gets a ``UserInputError`` naming the run holding the lock. ``flock`` dies with its process, so a
    killed run leaves no stale lock.
    """
    if int(os.environ.get('RANK', '0')) != 0:
        return
    real = osp.realpath(work_dir)
    if real in _LOCKS:
        return
    try:
        os.makedirs(real, exist_ok=True)
        f = open(osp.join(real, '.train.lock'), 'a+')
    except OSError as e:
        raise UserInputError(f'cannot write to the work dir {work_dir}: {e.strerror}') from None
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        holder = f.read().strip() or 'another process'
        f.close()
        raise UserInputError(f'work dir {work_dir} is in use by another training run ({holder}); wait for it '
                             'to end or pass another --work-dir') from None
    f.seek(0)
    f.truncate()
    f.write(f'pid {os.getpid()} on {os.uname().nodename}, started {time.strftime("%Y-%m-%d %H:%M:%S")}\n')
    f.flush()
    _LOCKS[real] = f


def work_dir_run(work_dir: str) -> str:
    """The checkpoint a work dir's earlier training run left (``last_checkpoint``, else the newest
    ``iter_*`` / ``epoch_*`` file), or ''."""
    last = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(last):
        with open(last) as f:
            return f.read().strip() or last
    ckpts = sorted(glob.glob(osp.join(work_dir, 'iter_*.pth')) + glob.glob(osp.join(work_dir, 'epoch_*.pth')),
                   key=osp.getmtime)
    return ckpts[-1] if ckpts else ''


def check_work_dir_is_new(work_dir: str, resume, restart: bool) -> str:
    """A work dir that holds an earlier run (a checkpoint) is continued with ``--resume`` or, on request
    (``--restart``), trained afresh; otherwise a ``UserInputError`` says so. Returns the earlier run's
    checkpoint when restarting over it (the caller logs it), else ''."""
    if resume or not osp.isdir(work_dir):
        return ''
    found = work_dir_run(work_dir)
    if not found:
        return ''
    if restart:
        return found
    raise UserInputError(f'work dir {work_dir} holds an earlier training run (last checkpoint: {found}); '
                         'add --resume to continue it, or --work-dir DIR to start afresh elsewhere '
                         '(--restart trains from scratch in this work dir, replacing last_checkpoint)')


def claim_work_dir(work_dir: str, resume, restart: bool) -> str:
    """Claims ``work_dir`` for this process's training run: the lock (``lock_work_dir``), then
    ``check_work_dir_is_new``; returns the earlier run's checkpoint a ``--restart`` trains over, else ''.

    Done once per run, by the first of its callers: ``backbones.apis.run.run_train`` before the Runner writes its
    config and logs into the work dir, ``RobustRunner.train`` for a Runner built by anything else (mmseg's /
    mmdet's own tools). While this process holds the work dir's lock, a second call returns the first answer."""
    real = osp.realpath(work_dir)
    if real in _CLAIMS and (real in _LOCKS or int(os.environ.get('RANK', '0')) != 0):
        return _CLAIMS[real]
    lock_work_dir(work_dir)
    _CLAIMS[real] = check_work_dir_is_new(work_dir, resume, restart)
    return _CLAIMS[real]
