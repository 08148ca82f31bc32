"""Runtime pieces the shared tools (tools/train.py, tools/test.py) put around MMEngine's Runner.

Each one is a narrow fix for a gap met with today's stack, kept in this one place:
- ``load_local_checkpoint``: torch >= 2.6 loads with ``weights_only=True``; a Runner checkpoint also
  holds MMEngine's ``HistoryBuffer`` (pickled through ``getattr``), so resume and test failed
  ("Unsupported global"). Only the run's own checkpoints are loaded with the full unpickler.
- ``AtomicLocalBackend``: MMEngine writes checkpoints in place; a run killed mid-write left a truncated
  file under the final name. Writes now go to a temporary file that replaces the target atomically.
- ``RNGStateHook``: MMEngine's checkpoint holds no RNG state, so a resumed run with drop path (or
  dropout) diverged from an uninterrupted one. Every rank's python/numpy/torch RNG states are saved in
  the checkpoint and restored on resume.
- ``setup_cpu_distributed``: MMEngine's ``pytorch``/``slurm`` launchers call ``torch.cuda.set_device`` and
  its DDP wrapper passes ``device_ids=[LOCAL_RANK]``; without a GPU we start the gloo process group
  ourselves and wrap with ``device_ids=None``.
- ``fallback_syncbn_on_cpu``: ``SyncBatchNorm`` refuses CPU tensors; configs keep SyncBN (right for
  multi-GPU) and CPU runs use BN, with a warning in the log.
- ``merge_cfg_options``, ``check_data_folders``, ``check_resume_checkpoint``: errors that name the problem
  before the Runner gets far (unknown ``--cfg-options`` key, missing data folder, bad ``--resume`` file).
"""
import difflib
import os
import os.path as osp
import random
import tempfile
from typing import Optional

import numpy as np
import torch
import torch.distributed as torch_dist
from mmengine.dist import all_gather_object, get_dist_info
from mmengine.fileio.backends import LocalBackend, register_backend
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS
from mmengine.runner import IterBasedTrainLoop
from mmengine.runner.checkpoint import CheckpointLoader
from mmengine.utils import ProgressBar

from .errors import CheckpointError, UserInputError
from .weights import compare_state_dicts


# --------------------------------------------------------------------------------------------------
# Loading and saving checkpoints
# --------------------------------------------------------------------------------------------------
_TRUSTED_FILES, _TRUSTED_DIRS = set(), set()


def trust_run_checkpoints(work_dir: str, *files: str) -> None:
    """Lets MMEngine load the run's own checkpoints (under ``work_dir``, or named on the command line)."""
    _TRUSTED_DIRS.add(osp.realpath(work_dir))
    _TRUSTED_FILES.update(osp.realpath(f) for f in files if f)


def is_trusted_checkpoint(path: str) -> bool:
    real = osp.realpath(path)
    return real in _TRUSTED_FILES or any(real.startswith(d + os.sep) for d in _TRUSTED_DIRS)


@CheckpointLoader.register_scheme(prefixes='', force=True)
def load_local_checkpoint(filename, map_location):
    """MMEngine's local loader with torch's safe ``weights_only=True``, except for the run's own files.

    A Runner checkpoint pickles MMEngine's ``HistoryBuffer`` (and, through its statistics methods,
    ``getattr``), which the safe unpickler rejects; allow-listing ``getattr`` would open it to anything,
    so the tools trust only the work dir and the files the user passed to --resume / test.py.
    Pretrained weights (backbones.weights) are always read with ``weights_only=True``.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    return torch.load(filename, map_location=map_location, weights_only=not is_trusted_checkpoint(filename))


class AtomicLocalBackend(LocalBackend):
    """MMEngine's local file backend, but a write never leaves a partial file under the final name."""

    def put(self, obj: bytes, filepath) -> None:
        self._atomic_write(obj, str(filepath), 'wb')

    def put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
        self._atomic_write(obj.encode(encoding), str(filepath), 'wb')

    @staticmethod
    def _atomic_write(data: bytes, filepath: str, mode: str) -> None:
        folder = osp.dirname(osp.abspath(filepath))
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix='.' + osp.basename(filepath) + '.', suffix='.part', dir=folder)
        try:
            with os.fdopen(fd, mode) as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, filepath)
        except BaseException:
            if osp.exists(tmp):
                os.remove(tmp)
            raise


register_backend('local', AtomicLocalBackend, force=True, prefixes='')


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Saves every rank's RNG states in the checkpoint and restores them on resume (exact resume).

    MMEngine saves checkpoints on rank 0 only, so the states are gathered from all ranks at the end of
    each iteration / epoch, just before CheckpointHook (priority VERY_LOW) runs; a few kB per rank.
    """

    priority = 'LOW'

    def __init__(self):
        self._states = None

    @staticmethod
    def _local_state() -> dict:
        return dict(python=random.getstate(), numpy=np.random.get_state(), torch=torch.get_rng_state(),
                    cuda=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)

    def _gather(self) -> None:
        self._states = all_gather_object(self._local_state())  # one entry per rank

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self._gather()

    def after_train_epoch(self, runner) -> None:
        self._gather()

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint['rng_states'] = self._states if self._states is not None else [self._local_state()]

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        states = checkpoint.get('rng_states')
        rank, world = get_dist_info()
        if not states:
            return
        if len(states) != world:
            runner.logger.warning(f'checkpoint has RNG states of {len(states)} ranks, this run has {world}: '
                                  'not restoring them, the resumed run will not be bitwise exact')
            return
        self._pending = states[rank]
        self._restore(self._pending)

    def before_train_epoch(self, runner) -> None:
        # An iteration-based loop now replays the data of the iterations done before the checkpoint
        # (MMEngine's "Advance dataloader" step), which draws random augmentations again: restore the
        # RNG states once more after that replay, right before the first new batch is fetched.
        state, self._pending = getattr(self, '_pending', None), None
        loop = runner.train_loop
        if state is not None and isinstance(loop, IterBasedTrainLoop) and loop.iter > 0:
            loop.dataloader_iterator = _RestoreAfter(loop.dataloader_iterator, loop.iter,
                                                     lambda: self._restore(state))

    @staticmethod
    def _restore(state: dict) -> None:
        random.setstate(state['python'])
        np.random.set_state(state['numpy'])
        torch.set_rng_state(state['torch'])
        if state['cuda'] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state['cuda'])


class _RestoreAfter:
    """Iterator proxy: calls ``restore`` after the first ``n`` items were taken."""

    def __init__(self, iterator, n: int, restore):
        self._it, self._left, self._restore = iterator, n, restore

    def __next__(self):
        item = next(self._it)
        self._left -= 1
        if self._left == 0:
            self._restore()
        return item

    def __getattr__(self, name):
        return getattr(self._it, name)


@HOOKS.register_module()
class ProgressBarHook(Hook):
    """A progress bar (with ETA) over the test set's batches on rank 0, for ``tools/test.py``."""

    priority = 'LOW'

    def before_test_epoch(self, runner):
        self._bar = ProgressBar(len(runner.test_dataloader)) if runner.rank == 0 else None

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if self._bar is not None:
            self._bar.update()

    def after_test_epoch(self, runner, metrics=None):
        if self._bar is not None:
            print()


# --------------------------------------------------------------------------------------------------
# Distributed and device set-up
# --------------------------------------------------------------------------------------------------
def setup_cpu_distributed(cfg) -> None:
    """Without CUDA: start the gloo process group (torchrun or srun env) and wrap DDP without device ids."""
    if cfg.get('launcher', 'none') == 'none' or torch.cuda.is_available():
        return
    if cfg.launcher == 'slurm':  # srun exports these; MASTER_ADDR/PORT come from tools/slurm_*.sh
        os.environ.setdefault('RANK', os.environ['SLURM_PROCID'])
        os.environ.setdefault('WORLD_SIZE', os.environ['SLURM_NTASKS'])
        os.environ.setdefault('LOCAL_RANK', os.environ['SLURM_LOCALID'])
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(backend='gloo')
    wrapper = dict(cfg.get('model_wrapper_cfg') or {})
    wrapper.setdefault('type', 'MMDistributedDataParallel')
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper


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
# Checks that turn bad input into clear errors
# --------------------------------------------------------------------------------------------------
def merge_cfg_options(cfg, options: Optional[dict]) -> None:
    """Like ``cfg.merge_from_dict`` but every key must already exist in the config (typos are errors)."""
    if not options:
        return
    for key in options:
        node, done = getattr(cfg, '_cfg_dict', cfg), []
        for part in key.split('.'):
            if isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            elif isinstance(node, dict) and part in node:
                node = node[part]
            else:
                siblings = list(node.keys()) if isinstance(node, dict) else []
                near = difflib.get_close_matches(part, siblings, n=3)
                where = '.'.join(done) or 'the top level'
                raise UserInputError(f'unknown config key {key!r} in --cfg-options: {where} has no {part!r}'
                                     + (f' (did you mean {", ".join(near)}?)' if near else ''))
            done.append(part)
    cfg.merge_from_dict(options, allow_list_keys=True)


def _datasets(cfg):
    for split in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(split)
        stack = [(split + '.dataset', loader.get('dataset'))] if loader else []
        while stack:
            where, ds = stack.pop()
            if not isinstance(ds, dict):
                continue
            yield where, ds
            if isinstance(ds.get('dataset'), dict):
                stack.append((where + '.dataset', ds['dataset']))
            for i, d in enumerate(ds.get('datasets') or []):
                stack.append((f'{where}.datasets.{i}', d))


def check_data_folders(cfg, splits=('train_dataloader', 'val_dataloader', 'test_dataloader')) -> None:
    """Every dataset's ``data_root``, ``ann_file`` and ``data_prefix`` folders exist, or a named error."""
    for where, ds in _datasets(cfg):
        if not where.startswith(splits):
            continue
        root = ds.get('data_root') or ''
        if root and not osp.isdir(root):
            raise UserInputError(f'data folder not found: {root} ({where}.data_root)')
        paths = [('ann_file', ds.get('ann_file'))]
        paths += [(f'data_prefix.{k}', v) for k, v in (ds.get('data_prefix') or {}).items() if isinstance(v, str)]
        for name, rel in paths:
            if rel:
                path = rel if osp.isabs(rel) else osp.join(root, rel)
                if not osp.exists(path):
                    raise UserInputError(f'data path not found: {path} ({where}.{name})')


def check_resume_checkpoint(path: str) -> dict:
    """Reads a ``--resume`` file; it must be an MMEngine training checkpoint (weights + meta)."""
    from .weights import read_checkpoint
    try:
        ckpt = read_checkpoint(path, trusted=True)
    except CheckpointError as e:
        raise UserInputError(f'--resume: {e}') from None
    if not isinstance(ckpt, dict) or 'state_dict' not in ckpt or 'meta' not in ckpt:
        raise UserInputError(f'--resume: {path} is not a training checkpoint of tools/train.py (it has no '
                             '"state_dict" and "meta"); to start from weights only, use '
                             '--cfg-options load_from=PATH or the backbone init_cfg')
    return ckpt


def check_checkpoint_fits(model: torch.nn.Module, ckpt: dict, path: str) -> None:
    """The checkpoint's weights have exactly the model's keys and shapes (another arch is an error)."""
    model = getattr(model, 'module', model)
    missing, unexpected, shapes = compare_state_dicts(model.state_dict(), ckpt['state_dict'])
    if missing or unexpected or shapes:
        parts = [f'{len(shapes)} shape mismatches: {"; ".join(shapes[:4])}' if shapes else '',
                 f'{len(missing)} missing: {", ".join(missing[:4])}' if missing else '',
                 f'{len(unexpected)} unexpected: {", ".join(unexpected[:4])}' if unexpected else '']
        raise UserInputError(f'{path} was saved by a different model (another arch or config?): '
                             + '; '.join(p for p in parts if p))
