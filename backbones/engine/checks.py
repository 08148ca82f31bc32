"""Checks of a run that turn bad input into one clear error before the Runner gets far: ``check_backbone``
(the configured backbone builds), ``check_resume_checkpoint`` (a ``--resume`` file that is no training
checkpoint), ``check_checkpoint_fits`` (a checkpoint of another model). The data checks are in
``backbones.datasets.checks``; ``backbones.apis.run.preflight`` runs them all.
"""

import torch

from backbones.models.weights import read_checkpoint, state_dict_mismatch
from backbones.utils.errors import CheckpointError, UserInputError
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
