"""One training run per work dir: a lock that dies with its process."""
import fcntl
import os
import os.path as osp
import time

from backbones.utils.errors import UserInputError

_LOCKS = {}  # work dir -> open lock file, held until the process ends (the kernel drops it on any exit)


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
