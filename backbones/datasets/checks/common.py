"""What the data checks of every task share: walking a config's datasets, their folders, the heads'
classes against the data set's, and the short lists the messages quote."""
import logging
import os.path as osp
from typing import Iterator, List, Sequence, Tuple

from mmengine.logging import print_log

from backbones.utils.errors import UserInputError

_warned = set()  # warnings given in this process (inherited by forked dataloader workers)


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


def _warn(msg: str) -> None:
    print_log(msg, logger='current', level=logging.WARNING)


def head_num_classes(model: dict, paths: Sequence[str]) -> List[Tuple[str, int]]:
    """(config key, num_classes) of every head found at ``paths`` (dotted, under ``model``; a head may be a
    list, as cascade stages are). A TTA wrapper's ``module`` is looked into."""
    out = []
    if isinstance(model, dict) and isinstance(model.get('module'), dict) and not any(
            p.split('.')[0] in model for p in paths):
        model, prefix = model['module'], 'model.module'
    else:
        prefix = 'model'
    for path in paths:
        node = model
        for part in path.split('.'):
            node = node.get(part) if isinstance(node, dict) else None
        heads = [(f'{prefix}.{path}', node)] if isinstance(node, dict) else [
            (f'{prefix}.{path}.{i}', h) for i, h in enumerate(node or []) if isinstance(node, (list, tuple))]
        out += [(f'{key}.num_classes', h['num_classes']) for key, h in heads
                if isinstance(h, dict) and isinstance(h.get('num_classes'), int)]
    return out


def classes_source(ds: dict, where: str, dataset_type: str) -> str:
    if (ds.get('metainfo') or {}).get('classes') is not None:
        return f'{where}.metainfo.classes'
    return f'{dataset_type}.METAINFO'


def standalone_use() -> None:
    """``python -m`` on a check module: says where the command line is (one error line, exit 2)."""
    import sys
    print('error: the data checks run from the command line as: python tools/misc/check_data.py CONFIG '
          '(or --coco ANN_FILE)', file=sys.stderr)
    sys.exit(2)


def check_dataloaders(cfg, splits=('train_dataloader', 'val_dataloader', 'test_dataloader')) -> None:
    """The dataloader settings that otherwise fail inside PyTorch (a traceback naming no key): ``batch_size``
    a whole number >= 1, ``num_workers`` >= 0. ``persistent_workers=True`` with ``num_workers=0`` (the
    bases set it, a quick debug run sets 0 workers) is a ValueError in torch's DataLoader: it is switched
    off here, and the log says so."""
    for split in splits:
        loader = cfg.get(split)
        if not isinstance(loader, dict):
            continue
        batch = loader.get('batch_size', 1)
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise UserInputError(f'{split}.batch_size={batch!r}: a whole number of images per process, >= 1')
        workers = loader.get('num_workers', 0)
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
            raise UserInputError(f'{split}.num_workers={workers!r}: a whole number >= 0 (0 loads in the main '
                                 'process)')
        if workers == 0 and loader.get('persistent_workers'):
            loader['persistent_workers'] = False
            _warn(f'{split}.num_workers=0: persistent_workers set to False (it needs worker processes)')
