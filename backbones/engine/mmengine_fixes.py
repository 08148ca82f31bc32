"""The fixes this suite puts around MMEngine's Runner, and the one call that installs them.

Importing ``backbones`` patches nothing. The fixes are installed when a ``RobustRunner`` is built: the
runner every config of this repo names (``runner_type`` in ``configs/_base_/default_runtime.py``), so
they apply through ``tools/train.py`` /
``tools/test.py`` and through mmseg's / mmdet's own ``tools/train.py`` / ``tools/test.py`` alike. Code
that builds its own Runner calls ``install_mmengine_fixes()`` (process-wide, idempotent) and
``prepare_config(cfg)``. Each fix answers a trap of today's stack:

| trap | fix |
|---|---|
| torch >= 2.6 loads with ``weights_only=True``; a Runner checkpoint pickles MMEngine's ``HistoryBuffer`` (via ``getattr``), so resume and test failed ("Unsupported global"); a full unpickle would run any code a file names | MMEngine's local checkpoint loader reads every file with the suite's one safe reader (``models.weights.read_checkpoint``): torch's weights_only unpickler with ``HistoryBuffer`` (its statistics methods only) and numpy values allow-listed; anything else is refused in one line |
| the same trap in the ecosystem's clients (``init_model``, ``init_detector``, both inferencers, mmseg's / mmdet's analysis tools), which load a checkpoint with torch's default before anything of ours runs | checkpoints are written as plain data (``to_plain``: ``HistoryBuffer`` and numpy values become tagged dicts of tensors and numbers), so ``weights_only=True`` reads them; on resume ``from_plain`` restores the exact objects before MMEngine reads them |
| MMEngine writes checkpoints in place: a kill mid-write left a truncated file under the final name | the local file backend writes a temp file, fsyncs it and renames it over the target (``utils.atomic_write``) |
| without a GPU, the ``pytorch`` / ``slurm`` launchers call ``torch.cuda.set_device`` and DDP gets ``device_ids=[rank]`` | the gloo process group is started before the Runner (MASTER_ADDR from ``scontrol`` under srun; a bounded wait; a torchrun restart's own store prefix), DDP wraps with ``device_ids=None`` |
| ``SyncBatchNorm`` refuses CPU tensors | configs keep SyncBN (right for multi-GPU); CPU runs switch it to BN and say so in the log |
| two training runs started on the same work dir both ran to the end, one's checkpoints and config over the other's | a training run holds a lock on its work dir (``lock_work_dir``); a second one stops with an error naming the first |
| ``Runner.scale_lr`` takes the real batch as world size x batch size and ignores ``accumulative_counts``: the classification recipe's 4096 (8 x 128 x 4 accumulation steps) counted as 1024, lr scaled down 4x | ``RobustRunner.scale_lr`` counts the accumulation steps |

The other fixes are hooks (``backbones.engine.hooks.RNGStateHook``: exact resume) and the checks of
``backbones.engine.checks`` and ``backbones.datasets.checks`` that the tools run. The catalogue for users:
docs/mmengine_fixes.md.
"""
import fcntl
import os
import os.path as osp
import time
from collections import OrderedDict

import numpy as np
import torch
import torch.distributed as torch_dist
from mmengine.fileio import io as mm_io
from mmengine.fileio.backends import LocalBackend, register_backend
from mmengine.logging import print_log
from mmengine.runner.checkpoint import CheckpointLoader

from backbones.utils.errors import UserInputError
from backbones.utils.io import atomic_write

# --------------------------------------------------------------------------------------------------
# Loading and saving checkpoints
# --------------------------------------------------------------------------------------------------
def load_local_checkpoint(filename, map_location):
    """MMEngine's local loader, reading through the suite's one safe reader (``models.weights.load_file``):
    torch's weights_only unpickler with MMEngine's ``HistoryBuffer`` and numpy values allowed, so a training
    checkpoint (``--resume``, ``load_from``, ``tools/test.py``, mmseg's / mmdet's tools on our configs) is
    read, and a file that names anything else is refused with one line, never unpickled in full."""
    from backbones.models.weights import read_checkpoint
    return read_checkpoint(filename, map_location=map_location)


def load_url_checkpoint(filename, map_location, model_dir=None, progress=True):
    """MMEngine's ``http(s)://`` loader, the suite's way: downloaded once into ``$TORCH_HOME/hub/checkpoints``
    (MMEngine's own cache folder), its hash checked where the name carries one, read safely; offline or a bad
    URL is one line naming the URL and the path to copy the file to. (MMEngine's own unpickles in full.)"""
    from backbones.models.weights import read_checkpoint
    return read_checkpoint(filename, map_location=map_location)


# What torch's weights_only unpickler reads: containers of tensors and plain Python values. A training
# checkpoint adds MMEngine's ``HistoryBuffer`` (message hub), numpy arrays and scalars (RNG states, logged
# values); ``to_plain`` turns each into a dict tagged with ``PLAIN_TAG`` holding tensors and numbers, and
# ``from_plain`` rebuilds the same objects (same dtype, same values, bit for bit).
PLAIN_TAG = '__plain_type__'


def _tensor_of(a: np.ndarray):
    """``(tensor, numpy dtype string)`` of a numeric array, or None for a dtype torch cannot hold."""
    if a.dtype.kind not in 'biufc':
        return None
    native = a.dtype.newbyteorder('=')
    try:
        return torch.from_numpy(np.array(a, dtype=native, copy=True)), a.dtype.str
    except (TypeError, ValueError):
        return None


def _encode(obj):
    """``(plain form, changed)`` of ``obj``; containers are rebuilt only when something inside changed."""
    from mmengine.logging import HistoryBuffer
    if isinstance(obj, torch.Tensor) or obj is None or type(obj) in (str, bytes, bool, int, float):
        return obj, False
    if isinstance(obj, np.str_):  # a subclass of str that pickles as a numpy scalar
        return {PLAIN_TAG: 'numpy.str_', 'value': str(obj)}, True
    if isinstance(obj, HistoryBuffer):
        log, count = obj.data
        log_t, count_t = _tensor_of(log), _tensor_of(count)
        if log_t is None or count_t is None:
            return obj, False
        return {PLAIN_TAG: 'mmengine.HistoryBuffer', 'log_history': log_t[0], 'log_dtype': log_t[1],
                'count_history': count_t[0], 'count_dtype': count_t[1], 'max_length': int(obj.max_length)}, True
    if isinstance(obj, (np.ndarray, np.generic)):
        t = _tensor_of(np.asarray(obj))
        if t is None:
            return obj, False
        kind = 'numpy.ndarray' if isinstance(obj, np.ndarray) else 'numpy.scalar'
        return {PLAIN_TAG: kind, 'data': t[0], 'dtype': t[1]}, True
    if isinstance(obj, np.dtype):
        return {PLAIN_TAG: 'numpy.dtype', 'dtype': obj.str}, True
    if type(obj) in (dict, OrderedDict):
        items = [(k, _encode(v)) for k, v in obj.items()]
        if not any(changed for _, (_, changed) in items):
            return obj, False
        out = type(obj)((k, v) for k, (v, _) in items)
        if hasattr(obj, '_metadata'):  # a module state dict's versions
            out._metadata = obj._metadata
        return out, True
    if type(obj) in (list, tuple):
        items = [_encode(v) for v in obj]
        if not any(changed for _, changed in items):
            return obj, False
        return type(obj)(v for v, _ in items), True
    return obj, False


def _decode(obj):
    if type(obj) in (dict, OrderedDict):
        tag = obj.get(PLAIN_TAG)
        if tag == 'mmengine.HistoryBuffer':
            from mmengine.logging import HistoryBuffer
            return HistoryBuffer(obj['log_history'].numpy().astype(obj['log_dtype']),
                                 obj['count_history'].numpy().astype(obj['count_dtype']), obj['max_length'])
        if tag == 'numpy.ndarray':
            return obj['data'].numpy().astype(obj['dtype'])
        if tag == 'numpy.scalar':
            return obj['data'].numpy().astype(obj['dtype'])[()]
        if tag == 'numpy.dtype':
            return np.dtype(obj['dtype'])
        if tag == 'numpy.str_':
            return np.str_(obj['value'])
        for k, v in obj.items():
            new = _decode(v)
            if new is not v:
                obj[k] = new
        return obj
    if type(obj) is list:
        for i, v in enumerate(obj):
            obj[i] = _decode(v)
        return obj
    if type(obj) is tuple:
        items = tuple(_decode(v) for v in obj)
        return obj if all(a is b for a, b in zip(items, obj)) else items
    return obj


def to_plain(checkpoint: dict) -> dict:
    """Makes a checkpoint dict loadable with ``torch.load(weights_only=True)``, in place (and returns it):
    MMEngine's ``HistoryBuffer`` and numpy arrays / scalars / dtypes anywhere in it become tagged plain dicts.
    Values of other types are left as they are (a checkpoint holding one then still needs the full loader)."""
    for key in list(checkpoint):
        checkpoint[key] = _encode(checkpoint[key])[0]
    return checkpoint


def from_plain(obj):
    """The inverse of ``to_plain`` (in place for dicts and lists; returns the result). Idempotent: objects
    already rebuilt, and checkpoints written before ``to_plain`` existed, pass through unchanged."""
    return _decode(obj)


class AtomicLocalBackend(LocalBackend):
    """MMEngine's local file backend, but a write never leaves a partial file under the final name."""

    def put(self, obj: bytes, filepath) -> None:
        atomic_write(str(filepath), lambda f: f.write(obj))

    def put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
        self.put(obj.encode(encoding), filepath)


def install_mmengine_fixes() -> None:
    """Installs the loader and the file backend above in MMEngine (process-wide; calling again is a no-op)."""
    CheckpointLoader.register_scheme(prefixes='', loader=load_local_checkpoint, force=True)
    CheckpointLoader.register_scheme(prefixes=('http://', 'https://'), loader=load_url_checkpoint, force=True)
    register_backend('local', AtomicLocalBackend, force=True, prefixes='')
    # get_file_backend caches instances: drop local ones made before the swap
    for key, backend in list(mm_io.backend_instances.items()):
        if type(backend) is LocalBackend:
            del mm_io.backend_instances[key]


# --------------------------------------------------------------------------------------------------
# Distributed and device set-up
# --------------------------------------------------------------------------------------------------
def setup_cpu_distributed(cfg) -> None:
    """Without CUDA: start the gloo process group (torchrun or srun env) and wrap DDP without device ids."""
    if cfg.get('launcher', 'none') == 'none' or torch.cuda.is_available():
        return
    if cfg.launcher == 'slurm':  # srun exports these; MASTER_PORT comes from tools/slurm_*.sh
        os.environ.setdefault('RANK', os.environ['SLURM_PROCID'])
        os.environ.setdefault('WORLD_SIZE', os.environ['SLURM_NTASKS'])
        os.environ.setdefault('LOCAL_RANK', os.environ['SLURM_LOCALID'])
        if 'MASTER_ADDR' not in os.environ:
            os.environ['MASTER_ADDR'] = slurm_master_addr()
    if not torch_dist.is_initialized():
        start_process_group_or_fail()
    wrapper = dict(cfg.get('model_wrapper_cfg') or {})
    wrapper.setdefault('type', 'MMDistributedDataParallel')
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper


def slurm_master_addr() -> str:
    """The first host of the job's node list (``scontrol show hostnames $SLURM_NODELIST``), as MMEngine's
    slurm launcher derives it on GPU nodes."""
    import subprocess
    nodes = os.environ.get('SLURM_STEP_NODELIST') or os.environ.get('SLURM_NODELIST') or ''
    if not nodes:
        raise UserInputError('--launcher slurm: neither MASTER_ADDR nor SLURM_NODELIST is set (run under '
                             'srun, e.g. tools/slurm_train.sh, or export MASTER_ADDR)')
    try:
        out = subprocess.run(['scontrol', 'show', 'hostnames', nodes], capture_output=True, text=True,
                             timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise UserInputError(f'--launcher slurm: cannot run "scontrol show hostnames {nodes}" to find '
                             f'MASTER_ADDR ({e}); export MASTER_ADDR') from None
    hosts = out.stdout.split()
    if out.returncode != 0 or not hosts:
        raise UserInputError(f'--launcher slurm: "scontrol show hostnames {nodes}" gave no host (exit '
                             f'{out.returncode}: {out.stderr.strip()[:200]}); export MASTER_ADDR')
    return hosts[0]


def start_process_group_or_fail() -> None:
    """``init_process_group('gloo')`` from the environment, but a group that does not form within
    ``DIST_START_TIMEOUT`` seconds (default 300) ends the process with one ``error:`` line and exit 2 instead
    of waiting for half an hour (gloo's default): a rank that never came, a wrong MASTER_ADDR / PORT, a
    restarted torchrun group that cannot re-form. The timeout of the collectives stays gloo's.

    A torchrun restart (``TORCHELASTIC_RESTART_COUNT`` > 0) keeps the agent's store, which still holds the
    first group's addresses under the same keys: a process of the new group could read a dead peer's address
    ("Gloo connectFullMesh failed ... Connection refused"). Each restart's group therefore gets its own key
    prefix; a group that fails to form all the same is one line too."""
    import sys
    import threading
    try:
        limit = float(os.environ.get('DIST_START_TIMEOUT', '300'))
    except ValueError:
        raise UserInputError(f'DIST_START_TIMEOUT={os.environ["DIST_START_TIMEOUT"]!r}: expected seconds'
                             ) from None
    rank, world = os.environ.get('RANK', '?'), os.environ.get('WORLD_SIZE', '?')
    restart = int(os.environ.get('TORCHELASTIC_RESTART_COUNT', '0') or 0)

    def give_up():
        where = f'{os.environ.get("MASTER_ADDR", "?")}:{os.environ.get("MASTER_PORT", "?")}'
        again = (f'; torchrun restart {restart}: the restarted group could not re-form; run the same '
                 'command again, it resumes from the last checkpoint') if restart else ''
        print(f'error: process {rank} of {world}: the process group did not form within {limit:g} s '
              f'(DIST_START_TIMEOUT) at {where}; a process missing, or another MASTER_ADDR / PORT{again}',
              file=sys.stderr, flush=True)
        os._exit(2)

    timer = threading.Timer(limit, give_up)
    timer.daemon = True
    timer.start()
    try:
        if restart:
            store, rank_, world_ = next(torch_dist.rendezvous('env://'))
            store = torch_dist.PrefixStore(f'inceptionnext/restart_{restart}', store)
            torch_dist.init_process_group(backend='gloo', store=store, rank=rank_, world_size=world_)
        else:
            torch_dist.init_process_group(backend='gloo')
    except RuntimeError as e:
        again = (f'; torchrun restart {restart}: the restarted group could not re-form; run the same command '
                 'again, it resumes from the last checkpoint') if restart else ''
        first = (str(e).strip().splitlines() or [''])[0][:300]
        raise UserInputError(f'process {rank} of {world}: the process group could not form ({first}){again}'
                             ) from None
    finally:
        timer.cancel()


def fallback_syncbn_on_cpu(cfg) -> int:
    """Replaces ``SyncBN`` by ``BN`` in ``cfg.model`` when no GPU is visible; returns how many."""
    if torch.cuda.is_available():
        return 0
    count = 0

    def walk(node):
        nonlocal count
        if isinstance(node, dict):
            if node.get('type') in ('SyncBN', 'MMSyncBN', 'TorchSyncBN'):
                node['type'] = 'BN'
                count += 1
            for v in node.values():
                walk(v)
        elif isinstance(node, (list, tuple)):
            for v in node:
                walk(v)

    walk(cfg.model)
    if cfg.get('sync_bn'):
        cfg.sync_bn = None
        count += 1
    if count:
        print_log(f'no GPU: {count} SyncBN setting(s) in the config replaced by BN (SyncBN needs CUDA)',
                  logger='current', level=30)
    return count


# --------------------------------------------------------------------------------------------------
# One training run per work dir
# --------------------------------------------------------------------------------------------------
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
