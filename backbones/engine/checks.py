"""Checks of a run that turn bad input into one clear error before the Runner gets far: ``check_backbone``
(the configured backbone builds), ``check_resume_checkpoint`` (a ``--resume`` file that is no training
checkpoint), ``check_checkpoint_fits`` (a checkpoint of another model). The data checks are in
``backbones.datasets.checks``; ``backbones.apis.run.preflight`` runs them all.
"""

import torch

from backbones.models.weights import read_checkpoint, state_dict_mismatch
from backbones.utils.errors import BadValueError, CheckpointError, UserInputError
from backbones.utils.io import error_line


def check_resume_checkpoint(path: str) -> dict:
    """Reads a ``--resume`` file; it must be an MMEngine training checkpoint (weights + meta)."""
    try:
        ckpt = read_checkpoint(path)
    except CheckpointError as e:
        raise CheckpointError(f'--resume: {e}') from None
    if not isinstance(ckpt, dict) or 'state_dict' not in ckpt or 'meta' not in ckpt:
        raise CheckpointError(f'--resume: {path} is not a training checkpoint of tools/train.py (it has no '
                              '"state_dict" and "meta"); to start from weights only, use '
                              '--cfg-options load_from=PATH or the backbone init_cfg')
    return ckpt


def check_checkpoint_fits(model: torch.nn.Module, ckpt: dict, path: str) -> None:
    """The checkpoint's weights have exactly the model's keys and shapes (another arch is an error)."""
    model = getattr(model, 'module', model)
    problems = state_dict_mismatch(model.state_dict(), ckpt['state_dict'], n=4)
    if problems:
        raise CheckpointError(f'{path} was saved by a different model (another arch or config?): {problems}')


def check_backbone(cfg) -> None:
    """The config's InceptionNeXt backbone builds: its arguments are checked by building it on the meta device
    (no memory, no init cost) before the Runner prints the config, so a bad ``arch``, ``out_indices``,
    ``frozen_stages``, ``drop_path_rate`` ... is one error naming ``model.backbone.<key>``."""
    backbone = (cfg.get('model') or {}).get('backbone')
    if not isinstance(backbone, dict) or str(backbone.get('type', '')).split('.')[-1] != 'InceptionNeXt':
        return
    from backbones.models.inceptionnext import InceptionNeXt
    args = {k: v for k, v in backbone.items() if k not in ('type', 'init_cfg')}
    out = args.get('out_indices', ())
    ids = out if isinstance(out, (list, tuple)) else [out]
    if any(isinstance(i, bool) or not isinstance(i, int) for i in ids):
        raise BadValueError(f'model.backbone.out_indices={out!r}: stage ids, whole numbers 0..3 (strides 4, '
                            '8, 16, 32), e.g. [0,1,2,3]')
    try:
        InceptionNeXt.resolve_arch(args.get('arch', 'tiny'))
    except ValueError as e:
        raise UserInputError(f'model.backbone.arch: {e}') from None
    try:
        with torch.device('meta'):
            InceptionNeXt(**args)
    except (ValueError, TypeError) as e:
        msg = error_line(e)
        key = next((k for k in args if k in msg), None)
        raise UserInputError(f'model.backbone{"." + key if key else ""}: {msg}') from None


# Torch's optimizers name the value they refuse in words; the config key it comes from.
_OPTIMIZER_WORDS = (('learning rate', 'lr'), ('weight_decay', 'weight_decay'), ('epsilon', 'eps'),
                    ('beta parameter', 'betas'), ('momentum', 'momentum'), ('dampening', 'dampening'))


def check_optimizer(cfg) -> None:
    """``optim_wrapper.optimizer`` builds: the optimizer class is built on one stand-in parameter, so a value
    it refuses (``lr=-1``: torch's ValueError, 36 lines under the Runner) is one error naming
    ``optim_wrapper.optimizer.<key>`` and the value."""
    opt = (cfg.get('optim_wrapper') or {}).get('optimizer')
    if not isinstance(opt, dict) or not isinstance(opt.get('type'), str):
        return
    from mmengine.registry import OPTIMIZERS, DefaultScope
    scope = cfg.get('default_scope')
    try:
        with DefaultScope.overwrite_default_scope(scope), OPTIMIZERS.switch_scope_and_registry(scope) as reg:
            cls = reg.get(opt['type'])
    except Exception:  # noqa: BLE001 -- a scope that cannot be imported: the Runner will say so
        cls = None
    if cls is None:
        return
    args = {k: v for k, v in opt.items() if k not in ('type', '_scope_')}
    try:
        cls([torch.nn.Parameter(torch.zeros(1))], **args)
    except (ValueError, TypeError) as e:
        msg = error_line(e)
        key = next((k for words, k in _OPTIMIZER_WORDS if words in msg.lower() and k in args), None)
        key = key or next((k for k in args if k in msg), None)
        what = f'.{key}={args[key]!r}' if key else ''
        raise BadValueError(f'optim_wrapper.optimizer{what}: {cls.__name__} refuses it ({msg})') from None


def check_param_schedulers(cfg) -> None:
    """Each ``param_scheduler`` ends after it begins, with the ``end`` MMEngine gives one that sets none (the
    train loop's ``max_iters`` / ``max_epochs``): shortening ``train_cfg.max_iters`` below a scheduler's
    ``begin`` is otherwise a ValueError from inside the Runner naming neither the scheduler nor the key."""
    schedulers = cfg.get('param_scheduler')
    if isinstance(schedulers, dict):
        schedulers = [schedulers]
    train_cfg = cfg.get('train_cfg') or {}
    for i, sched in enumerate(schedulers or []):
        if not isinstance(sched, dict):
            continue
        by_epoch = sched.get('by_epoch', True)
        begin, end, note = sched.get('begin', 0), sched.get('end'), ''
        if end is None:
            unit = 'max_epochs' if by_epoch else 'max_iters'
            end = train_cfg.get(unit)
            note = f' (no end set: train_cfg.{unit})'
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (begin, end))
        if numbers and end <= begin:
            listed = isinstance(cfg.get('param_scheduler'), list)
            where = f'param_scheduler.{i}' if listed else 'param_scheduler'
            raise BadValueError(f'{where} ({sched.get("type")}): end={end}{note} is not after begin={begin}; '
                                f'a scheduler must end after it begins: set {where}.begin / {where}.end to '
                                f'fit the schedule (train_cfg: {dict(train_cfg)})')
