"""Resuming a training run: what the command line asks for (``resume_plan``), which checkpoint
(``find_resume_checkpoint``: a moved or copied work dir too), when to resume without being asked
(``restarted``: a Slurm requeue, a torchrun restart), and the checks that run before the Runner writes anything
into the work dir (``check_resume_fits``: another model, nothing left to train, another total batch).
"""
import copy
import glob
import logging
import os
import os.path as osp
import re
from typing import NamedTuple, Optional

import torch
from mmengine.logging import print_log

from backbones.engine.checks import check_checkpoint_fits
from backbones.utils.errors import CheckpointError, UserInputError


def _warn(msg: str) -> None:
    if int(os.environ.get('RANK', os.environ.get('SLURM_PROCID', '0')) or 0) == 0:
        print_log(msg, logger='current', level=logging.WARNING)


def _count(name: str) -> int:
    try:
        return int(os.environ.get(name, '0') or 0)
    except ValueError:
        return 0


def restarted() -> str:
    """'' or why this process is a restart of a run that may have saved checkpoints: a Slurm job requeued
    (``SLURM_RESTART_COUNT`` > 0: preemption, ``scontrol requeue``, a node failure) or a torchrun worker group
    restarted (``TORCHELASTIC_RESTART_COUNT`` > 0, ``--max-restarts``)."""
    if _count('SLURM_RESTART_COUNT') > 0:
        return f'the Slurm job was requeued (SLURM_RESTART_COUNT={_count("SLURM_RESTART_COUNT")})'
    if _count('TORCHELASTIC_RESTART_COUNT') > 0:
        n = _count('TORCHELASTIC_RESTART_COUNT')
        return f'torchrun restarted the processes (TORCHELASTIC_RESTART_COUNT={n})'
    return ''


def _number(path: str) -> int:
    m = re.search(r'(\d+)\.pth$', osp.basename(path))
    return int(m.group(1)) if m else -1


def _inside(path: str, folder: str) -> bool:
    return osp.realpath(path).startswith(osp.realpath(folder) + os.sep)


def find_resume_checkpoint(work_dir: str):
    """The checkpoint that resuming the run in ``work_dir`` continues from, or None when there is none.

    MMEngine's ``last_checkpoint`` holds the path the run saved to, which is wrong once the work dir was
    moved (the file is gone) or copied (it names the OLD dir's file). So: the file ``last_checkpoint`` names
    when it lies inside the work dir; else the file of that name inside the work dir (with a warning that
    ``last_checkpoint`` points elsewhere); else the named file outside (with a warning); without
    ``last_checkpoint``, the work dir's ``iter_*.pth`` / ``epoch_*.pth`` of the highest number.
    """
    if not osp.isdir(work_dir):
        return None
    last = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(last):
        with open(last) as f:
            recorded = f.read().strip()
        if recorded:
            if _inside(recorded, work_dir) and osp.isfile(recorded):
                return recorded
            here = osp.join(work_dir, osp.basename(recorded))
            if osp.isfile(here):
                _warn(f'{last} names {recorded}, outside the work dir (a moved or copied work dir?): '
                      f'resuming from {here}, the file of that name in the work dir')
                return here
            if osp.isfile(recorded):
                _warn(f'{last} names {recorded}, outside the work dir {work_dir}: resuming from it')
                return recorded
            raise CheckpointError(f'{last} names {recorded}, which does not exist, and the work dir holds no '
                                  f'{osp.basename(recorded)}; pass --resume CKPT to choose a checkpoint')
    found = glob.glob(osp.join(work_dir, 'iter_*.pth')) + glob.glob(osp.join(work_dir, 'epoch_*.pth'))
    return max(found, key=_number) if found else None


class ResumePlan(NamedTuple):
    path: Optional[str]  # the checkpoint to resume from, or None: train from scratch
    resume: object  # --resume as the work-dir rules read it: a path, 'auto' or None
    restart: bool  # --restart: train from scratch over an earlier run
    automatic: bool  # resumed without --resume CKPT (--auto-resume, a requeue, a restart)


def resume_plan(work_dir: str, resume=None, auto_resume: bool = False, restart: bool = False) -> ResumePlan:
    """What a training run in ``work_dir`` continues from, given ``--resume [CKPT]`` (``'auto'`` without a
    value), ``--auto-resume`` and ``--restart``. A restarted process (``restarted``: a requeued Slurm job, a
    torchrun restart) continues its own run when the work dir holds a checkpoint, whatever its command line
    asked for at the first start."""
    if restart and (resume or auto_resume):
        raise UserInputError(f'--{"resume" if resume else "auto-resume"} continues the work dir\'s run, '
                             '--restart trains from scratch: pass one')
    why, path, automatic = restarted(), resume, False
    if path == 'auto' or why or auto_resume:
        found = find_resume_checkpoint(work_dir)
        if found and why:  # the work dir holds this job's own progress: continue it
            print_log(f'{why}: resuming the run in {work_dir}', logger='current')
            path, restart = found, False
        elif path == 'auto' or (auto_resume and not path):
            path = found
        automatic = bool(found) and path == found and (bool(why) or auto_resume)
        resume = resume or ('auto' if path else None)
    return ResumePlan(path or None, resume, restart, automatic)


# --------------------------------------------------------------------------------------------------
# Checks of a resumed run, before the Runner is built (it writes its config into the work dir)
# --------------------------------------------------------------------------------------------------
def _world_size() -> int:
    for name in ('WORLD_SIZE', 'SLURM_NTASKS'):
        if _count(name) > 0:
            return _count(name)
    return 1


def train_batch(cfg, world_size=None) -> dict:
    """The total batch of a run of ``cfg``: processes x images per process x accumulation steps."""
    loader = cfg.get('train_dataloader') or {}
    optim = cfg.get('optim_wrapper') or {}
    return dict(world_size=int(world_size or _world_size()), batch_size=loader.get('batch_size'),
                accumulative_counts=int(optim.get('accumulative_counts', 1) or 1))


def _images(b: dict) -> int:
    return b['world_size'] * b['batch_size'] * b['accumulative_counts']


def _total(b: dict) -> str:
    n = _images(b)
    acc = f' x {b["accumulative_counts"]} accumulation steps' if b['accumulative_counts'] > 1 else ''
    return f'{b["world_size"]} processes x {b["batch_size"]} images{acc} = {n}'


def build_model_skeleton(cfg):
    """``cfg.model`` built in its config's scope, on the meta device where it can be (no memory, no weights
    initialised; a model whose constructor needs real tensors is built on the CPU)."""
    from mmengine.registry import MODELS, DefaultScope
    model_cfg = copy.deepcopy(cfg.model)
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope')):
        try:
            with torch.device('meta'):
                return MODELS.build(model_cfg)
        except Exception:  # noqa: BLE001 -- some constructors compute with tensors: build for real
            return MODELS.build(copy.deepcopy(cfg.model))


def check_resume_fits(cfg, ckpt: dict, path: str, auto: bool = False) -> bool:
    """Checks that resuming ``cfg`` from ``ckpt`` (read from ``path``) makes sense, before the Runner writes
    its config into the work dir: the checkpoint's weights fit the model (another arch or config is a
    ``CheckpointError``); training is not already past ``max_iters`` / ``max_epochs`` (a ``UserInputError``);
    a changed total batch (processes x batch size x accumulation steps) is a warning naming both.
    Returns False when the checkpoint ends the run exactly and ``auto`` (an automatic resume: nothing to do,
    the caller says so and stops), else True."""
    check_checkpoint_fits(build_model_skeleton(cfg), ckpt, path)
    meta = ckpt.get('meta') or {}
    loop = cfg.get('train_cfg') or {}
    for key, unit, done in (('max_iters', 'iteration', meta.get('iter')),
                            ('max_epochs', 'epoch', meta.get('epoch'))):
        if key in loop and isinstance(done, int) and isinstance(loop[key], int):
            if done == loop[key] and auto:
                return False
            if done >= loop[key]:
                raise UserInputError(f'--resume: {path} is at {unit} {done} and train_cfg.{key}={loop[key]}: '
                                     f'nothing is left to train; raise train_cfg.{key} to train on')
            break
    old = meta.get('train_batch')
    if isinstance(old, dict) and all(isinstance(old.get(k), int) for k in ('world_size', 'batch_size',
                                                                          'accumulative_counts')):
        new = train_batch(cfg)
        if isinstance(new['batch_size'], int) and _images(new) != _images(old):
            _warn(f'resuming {path} with another total batch: the checkpoint\'s run trained on {_total(old)} '
                  f'images per step, this run on {_total(new)} (lr and schedule stay as configured: the '
                  'resumed run is not the one the checkpoint started)')
    return True
