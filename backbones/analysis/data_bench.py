"""Data-pipeline throughput per core: a config's training and validation pipelines beside the stack's own.

For each split (``train_dataloader``, ``val_dataloader``) of a config, two pipelines read the same images:

- ``ours``: the config's dataset and pipeline as the Runner builds them (for dense configs: the checked
  loader and ``CheckSegMap``; for classification: ``LoadImagePIL`` + ``TimmTransform``, uint8 out);
- ``reference``: what the wrapped stack runs on its own. mmseg / mmdet configs: the same pipeline with this
  package's steps put back to the stack's (mmcv's ``LoadImageFromFile`` for the checked loader, no
  ``CheckSegMap``): mmseg's / mmdet's base pipelines. Classification: timm's own data path, an RGB PIL image
  through ``timm.data.create_transform`` with the config's arguments (no prefetcher: a normalised float
  tensor).

Each pipeline runs in this process's main thread (one torch and one OpenCV thread, as a dataloader worker
runs), over the same images, after one warm-up pass; the two take turns image by image, seeded alike so that
their random augmentations draw the same values, and each pipeline's median CPU time per image over ``reps``
passes is its figure. Printed per row:
ms per image, images/s per core, the bytes per sample handed to the model (every array and tensor of the
pipeline's output), the speed ratio ours / reference (the median of the passes' ratios), and the dataloader
workers per GPU that feed ``target`` images/s (ceil(target / images/s per core)).

The data: the config's data root, ``data_root`` instead, or (``generate``) a small generated set in the
config's layout (``backbones.datasets.synthetic``: ADE 683x512 JPEG + PNG pairs, COCO 640x480 with polygon
masks, ImageNet class folders of 400x400 JPEGs).
"""
import contextlib
import copy
import math
import os.path as osp
import statistics
import tempfile
import time
from typing import Callable, Dict, List, Optional

import numpy as np

from backbones.utils.errors import UserInputError

SPLITS = ('train_dataloader', 'val_dataloader')
GENERATED_SIZE = {'seg': (683, 512), 'det': (640, 480), 'cls': 400}  # W x H (cls: a square side)


def task_of(cfg) -> str:
    scope = cfg.get('default_scope')
    task = {'mmseg': 'seg', 'mmdet': 'det', 'train_cls': 'cls'}.get(scope)
    if task is None:
        raise UserInputError(f"default_scope {scope!r}: the data benchmark reads mmseg, mmdet and train_cls "
                             "configs")
    return task


def _seg_classes(cfg) -> int:
    """The classes a segmentation config's labels must fall in (its head's, else its CheckSegMap's)."""
    head = (cfg.get('model') or {}).get('decode_head') or {}
    if isinstance(head, dict) and head.get('num_classes'):
        return head['num_classes']
    steps = cfg.train_dataloader.dataset.get('pipeline') or []
    return next((s['num_classes'] for s in steps if s.get('type') == 'CheckSegMap'), 150)


def generate(task: str, root: str, images: int, cfg=None) -> dict:
    """Writes a generated set in the task's layout under ``root``; returns dataset settings to apply."""
    from backbones.datasets.synthetic import write_ade, write_coco, write_imagenet
    if task == 'seg':  # shapes 1..k and background: labels 0..k after reduce_zero_label
        k = max(1, min(6, (_seg_classes(cfg) if cfg is not None else 150) - 1))
        write_ade(root, num_train=images, num_val=images, size=GENERATED_SIZE['seg'], num_classes=k)
        return {}
    if task == 'det':
        meta = write_coco(root, num_train=images, num_val=images, size=GENERATED_SIZE['det'], num_classes=3)
        return dict(metainfo=dict(classes=tuple(meta['classes'])))
    per_class = max(1, math.ceil(images / 4))
    write_imagenet(root, num_classes=4, num_train=per_class, num_val=per_class, size=GENERATED_SIZE['cls'])
    return {}


def _reference_pipeline(pipeline: List[dict]) -> List[dict]:
    """The pipeline with this package's steps put back to the stack's own."""
    out = []
    for step in pipeline:
        step = dict(step)
        if step.get('type') in ('CheckSegMap', 'backbones.CheckSegMap'):
            continue
        if step.get('type') in ('LoadImageFromFileChecked', 'backbones.LoadImageFromFile') or (
                step.get('type') == 'LoadImageFromFile' and step.pop('_scope_', None) == 'backbones'):
            step['type'] = 'mmcv.LoadImageFromFile'
            step.pop('_scope_', None)
        if step.get('type') == 'backbones.LoadAnnotations' or (
                step.get('type') == 'LoadAnnotations' and step.get('_scope_') == 'backbones'):
            step['type'] = 'mmseg.LoadAnnotations'
            step.pop('_scope_', None)
        out.append(step)
    return out


def _build_dataset(cfg_ds: dict, scope: str):
    from mmengine.registry import DATASETS, DefaultScope
    with DefaultScope.overwrite_default_scope(scope):
        return DATASETS.build(cfg_ds)


class _TimmReference:
    """timm's own classification data path for one image: PIL RGB + ``create_transform`` (no prefetcher)."""

    def __init__(self, step: dict):
        from timm.data import create_transform
        kw = {k: v for k, v in step.items() if k not in ('type', '_scope_')}
        size = kw.pop('input_size', 224)
        for k in ('scale', 'ratio'):
            if kw.get(k) is not None:
                kw[k] = tuple(kw[k])
        if 'mean' in kw:
            kw['mean'] = tuple(kw['mean'])
        self.transform = create_transform(input_size=tuple(size) if isinstance(size, (list, tuple)) else size,
                                          **kw)

    def __call__(self, path: str):
        from PIL import Image
        with open(path, 'rb') as f:
            img = Image.open(f).convert('RGB')
        return self.transform(img)


def build_pipelines(cfg, split: str, data_root: Optional[str], extra: dict):
    """({'ours': f, 'reference': f}, length): f(i) is the i-th sample as handed to the model."""
    task = task_of(cfg)
    scope = cfg.default_scope
    import importlib
    for module in (cfg.get('custom_imports') or {}).get('imports', []):
        importlib.import_module(module)
    if task in ('seg', 'det'):
        importlib.import_module(f'{scope}.utils').register_all_modules(init_default_scope=False)
    else:  # the classification datasets and steps register on import (the config's scope names the package)
        importlib.import_module(scope)
    ds_cfg = copy.deepcopy(cfg[split]['dataset'])
    if ds_cfg.get('type') in ('ConcatDataset', 'RepeatDataset', 'ClassBalancedDataset'):
        raise UserInputError(f'{split}.dataset is a {ds_cfg["type"]}: the data benchmark reads one data set')
    if data_root:
        ds_cfg['data_root'] = data_root
    ds_cfg.update(extra)
    if task == 'det':
        ds_cfg.pop('filter_cfg', None)  # every generated image has objects; a user's set is read as listed
    ours = _build_dataset(ds_cfg, scope)
    if task in ('seg', 'det'):
        ref_cfg = dict(ds_cfg, pipeline=_reference_pipeline(ds_cfg['pipeline']))
        ref = _build_dataset(ref_cfg, scope)
        return dict(ours=ours.__getitem__, reference=ref.__getitem__), len(ours)
    timm_steps = ('TimmTransform', 'train_cls.TimmTransform')
    step = next((s for s in ds_cfg['pipeline'] if s.get('type') in timm_steps), None)
    if step is None:
        raise UserInputError(f'{split}: no TimmTransform in the pipeline: nothing to set timm\'s transform '
                             'from')
    timm_ref = _TimmReference(step)
    return dict(ours=ours.__getitem__,
                reference=lambda i: timm_ref(ours.get_data_info(i)['img_path'])), len(ours)


def sample_bytes(obj) -> int:
    """Bytes of every array and tensor in a pipeline's output (data samples, masks and lists included)."""
    import torch
    from mmengine.structures import BaseDataElement
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if isinstance(obj, BaseDataElement):
        return sum(sample_bytes(getattr(obj, k)) for k in obj.all_keys())
    if isinstance(obj, dict):
        return sum(sample_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(sample_bytes(v) for v in obj)
    for attr in ('masks', 'tensor'):  # mmdet's BitmapMasks / PolygonMasks, its box types
        if hasattr(obj, attr):
            return sample_bytes(getattr(obj, attr))
    return 0


@contextlib.contextmanager
def _one_thread():
    """One torch thread, OpenCV in the calling thread (as in MMEngine's dataloader workers); restored
    after."""
    import cv2
    import torch
    before = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(1)
    cv2.setNumThreads(0)
    try:
        yield
    finally:
        torch.set_num_threads(before[0])
        cv2.setNumThreads(before[1])


def time_pipelines(fns: Dict[str, Callable], n: int, reps: int = 3) -> Dict[str, dict]:
    """Median CPU ms per image of each pipeline over ``reps`` passes of ``n`` images (after one warm-up
    pass), with the mean bytes per sample. The pipelines take turns image by image (which goes first
    alternates), each seeded alike for the image, so their random augmentations draw the same values and
    both see the same state of the machine."""
    import random

    import torch
    with _one_thread():
        names = list(fns)
        out = {name: dict(times=[], bytes=0) for name in names}
        for rep in range(reps + 1):
            spent, size = dict.fromkeys(names, 0.), dict.fromkeys(names, 0)
            for i in range(n):
                for name in (names if i % 2 == 0 else names[::-1]):
                    seed = rep * 100_003 + i
                    random.seed(seed)
                    np.random.seed(seed)
                    torch.manual_seed(seed)
                    t0 = time.process_time()
                    sample = fns[name](i)
                    spent[name] += time.process_time() - t0
                    size[name] += sample_bytes(sample)
            if rep:  # the first pass warms the file cache and the lazy imports
                for name in names:
                    out[name]['times'].append(spent[name] / n * 1e3)
                    out[name]['bytes'] = size[name] / n
    for v in out.values():
        v['ms'] = statistics.median(v['times'])
        v['per_core'] = 1e3 / v['ms']
    return out


def run(config: str, data_root: Optional[str] = None, gen: bool = False, images: int = 40, reps: int = 3,
        target: float = 1000., cfg_options: Optional[dict] = None, log=print) -> List[dict]:
    """Rows of the table (module doc) for the config's train and validation splits."""
    from backbones.utils.config import load_config
    cfg = load_config(config, cfg_options)
    task = task_of(cfg)
    rows = []
    with tempfile.TemporaryDirectory(prefix='data_bench_') as tmp:
        extra = {}
        if gen:
            data_root = osp.join(tmp, task)
            extra = generate(task, data_root, images, cfg)
        for split in SPLITS:
            if not cfg.get(split):
                continue
            fns, length = build_pipelines(cfg, split, data_root, extra)
            n = min(images, length)
            if n == 0:
                root = data_root or cfg.get('data_root')
                raise UserInputError(f'{split}: the data set has no images (data_root {root})')
            log(f'{split}: {n} images, {reps} passes, the pipelines taking turns', flush=True)
            res = time_pipelines(fns, n, reps)
            ref = res['reference']
            for name, r in res.items():
                rows.append(dict(task=task, split=split.split('_')[0], pipeline=name, images=n,
                                 ms=r['ms'], per_core=r['per_core'], bytes=r['bytes'],
                                 ratio=statistics.median(a / b for a, b in zip(ref['times'], r['times'])),
                                 workers=math.ceil(target / r['per_core']),
                                 times=r['times']))
    return rows


def markdown(rows: List[dict], target: float) -> str:
    head = (f'| task | split | pipeline | ms/img | img/s per core | KiB per sample | speed vs reference | '
            f'workers per GPU for {target:g} img/s |')
    lines = [head, '|' + '---|' * 8]
    for r in rows:
        lines.append(f'| {r["task"]} | {r["split"]} | {r["pipeline"]} | {r["ms"]:.2f} | '
                     f'{r["per_core"]:.1f} | {r["bytes"] / 1024:.0f} | {r["ratio"]:.2f}x | {r["workers"]} |')
    return '\n'.join(lines)
