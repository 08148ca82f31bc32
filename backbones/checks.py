"""Checks of a run's config and files that turn bad input into one clear error before the Runner gets far.

``merge_cfg_options`` (unknown ``--cfg-options`` keys), ``check_data_folders`` (missing data folders),
``check_resume_checkpoint`` (a ``--resume`` file that is no training checkpoint), ``check_checkpoint_fits``
(a checkpoint of another model). The data checks of each task live beside them: ``seg_checks``,
``coco_checks``.
"""
import difflib
import os.path as osp
from typing import Iterator, Optional, Tuple

import torch

from .errors import CheckpointError, UserInputError
from .weights import read_checkpoint, state_dict_mismatch


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
        _check_option_type(key, node, options[key])
    cfg.merge_from_dict(options, allow_list_keys=True)


def _check_option_type(key: str, old, new) -> None:
    """A value of another kind than the config's (text for a number, a list for a number, a number for a
    list) fails deep inside the Runner; name it here. ``None`` on either side, ints for floats, and a
    tuple for a list are fine."""
    def kind(v):
        if isinstance(v, bool):
            return 'a boolean'
        if isinstance(v, (int, float)):
            return 'a number'
        if isinstance(v, str):
            return 'text'
        if isinstance(v, (list, tuple)):
            return 'a list'
        if isinstance(v, dict):
            return 'a dict'
        return None
    a, b = kind(old), kind(new)
    if old is None or new is None or a is None or b is None or a == b:
        return
    if {a, b} == {'a boolean', 'a number'}:
        return  # 0 / 1 for flags, as in MMEngine's own configs
    raise UserInputError(f'--cfg-options {key}={new!r}: the config has {a} there ({old!r}), got {b}')


def iter_datasets(cfg, splits=('train_dataloader', 'val_dataloader', 'test_dataloader')
                  ) -> Iterator[Tuple[str, dict]]:
    """``(where, dataset cfg)`` for every dataset of the given dataloaders, wrappers included
    (``where`` is the config path, e.g. ``train_dataloader.dataset.dataset``)."""
    for split in splits:
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
    for where, ds in iter_datasets(cfg, splits):
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
    try:
        ckpt = read_checkpoint(path, trusted=True)
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
    """The config's InceptionNeXt ``arch`` exists: one clear error before the Runner prints the config
    (the backbone's other arguments are checked when it is built)."""
    backbone = (cfg.get('model') or {}).get('backbone')
    if not isinstance(backbone, dict) or str(backbone.get('type', '')).split('.')[-1] != 'InceptionNeXt':
        return
    from .inceptionnext import InceptionNeXt
    try:
        InceptionNeXt.resolve_arch(backbone.get('arch', 'tiny'))
    except ValueError as e:
        raise UserInputError(f'model.backbone: {e}') from None
