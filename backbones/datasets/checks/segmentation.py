"""Segmentation data checks: the pre-flight check of a whole ADE-layout data set.

``check_seg_datasets(cfg, splits)`` reads every mmseg dataset of a config before the Runner starts (the tools
call it next to ``check_coco_datasets``): missing, empty, truncated or multi-channel files, image / annotation
size mismatches, 16-bit annotations, label values outside the classes (on a sample of the annotations), and
heads with another number of classes. Errors are ``DatasetError`` / ``AnnotationError`` (one ``error:`` line
from the tools); what mmseg handles is logged once. The pipeline steps that check each file as it is loaded
are in ``backbones.datasets.transforms``. The rules, their reasons and their cost: docs/data_checks.md.
Command line: ``python tools/misc/check_data.py CONFIG``.
"""
import os
import os.path as osp
import time
from collections import Counter
from typing import List, Optional

import numpy as np
from mmengine.logging import print_log

from backbones.datasets.checks.common import (
    _warn,
    _warned,
    classes_source,
    head_num_classes,
    iter_datasets,
    standalone_use,
)
from backbones.datasets.checks.images import (
    decoded_size,
    exif_note,
    honours_exif,
    image_loader_args,
    read_image_header,
    sixteen_bit_error,
    unusable,
    warn_sixteen_bit,
)
from backbones.utils.errors import AnnotationError, DatasetError, UserInputError
from backbones.utils.io import names

SEG_MODES = ('1', 'L', 'P', 'I;16', 'I;16B', 'I')  # single-channel: class indices


# --------------------------------------------------------------------------------------------------
# The pre-flight check of mmseg datasets
# --------------------------------------------------------------------------------------------------
def _seg_dataset_class(cfg, ds: dict):
    t = ds.get('type')
    scope = cfg.get('default_scope')
    if isinstance(t, str) and scope != 'mmseg' and not t.startswith('mmseg.'):
        return None
    try:
        from mmseg.datasets import BaseSegDataset
        from mmseg.registry import DATASETS
    except ImportError:
        return None
    if isinstance(t, str):
        from mmengine.registry import DefaultScope
        from mmseg.utils import register_all_modules
        register_all_modules(init_default_scope=False)
        with DefaultScope.overwrite_default_scope('mmseg'):
            t = DATASETS.get(t)
    return t if isinstance(t, type) and issubclass(t, BaseSegDataset) else None


def _build_lazy(cls, ds: dict, where: str):
    args = {k: v for k, v in ds.items() if k != 'type'}
    args.update(pipeline=[], lazy_init=True)
    try:
        return cls(**args)
    except (ValueError, AssertionError, KeyError, TypeError, FileNotFoundError) as e:
        raise DatasetError(f'{where}: cannot set up {cls.__name__}: {e}') from None


def _label_errors(path: str, counts: np.ndarray, num_classes: int, ignore_index: int, reduce_zero_label: bool,
                  label_map: Optional[dict]) -> Optional[str]:
    raw = np.nonzero(counts)[0]
    labels = raw.copy()
    if reduce_zero_label:  # as mmseg's LoadAnnotations: 0 -> ignore, v -> v - 1
        labels = np.where(raw == 0, 255, raw - 1)
        labels[labels == 254] = 255
    if label_map:
        labels = np.array([label_map.get(int(v), int(v)) for v in labels], dtype=np.int64)
    bad = (labels >= num_classes) & (labels != ignore_index)
    if not bad.any():
        return None
    return (f'{path}: label values {sorted(set(labels[bad].tolist()))} outside the {num_classes} classes '
            f'(valid: 0..{num_classes - 1}, ignore {ignore_index}; PNG values {raw[bad].tolist()}'
            f'{", reduce_zero_label: v - 1" if reduce_zero_label else ""})')


def suffix_case_problem(folder: str, suffix: str, what: str = 'images') -> str:
    """'' or a sentence on files of ``folder`` (recursively) whose name ends in ``suffix`` but for its case."""
    if not folder or not osp.isdir(folder):
        return ''
    exact, other = 0, Counter()
    for _, _, files in os.walk(folder):
        for f in files:
            if f.endswith(suffix):
                exact += 1
            elif f.lower().endswith(suffix.lower()):
                other[f[len(f) - len(suffix):]] += 1
    if not other:
        return ''
    found = ', '.join(f'{n} end in {s!r}' for s, n in other.most_common())
    used = (f'only the {exact} ending in {suffix!r} would be used' if exact else 'none would be found')
    return (f'{folder}: {found} but the suffix is {suffix!r} (case-sensitive): {used}; rename the {what} or set '
            'the suffix to match')


def folder_summary(folder: str) -> str:
    """What a folder holds, for a message: '12 files: 10 .JPG, 2 .txt' (recursively) or 'no files'."""
    if not osp.isdir(folder):
        return 'not a folder'
    kinds = Counter(osp.splitext(f)[1] or '(no suffix)' for _, _, files in os.walk(folder) for f in files)
    if not kinds:
        return 'no files'
    return f'{sum(kinds.values())} files: ' + ', '.join(f'{n} {k}' for k, n in kinds.most_common(4)) + (
        ', ...' if len(kinds) > 4 else '')


def _has_class_label(counts: np.ndarray, num_classes: int, ignore_index: int, reduce_zero_label: bool,
                     label_map: Optional[dict]) -> bool:
    labels = np.nonzero(counts)[0]
    if reduce_zero_label:
        labels = np.where(labels == 0, 255, labels - 1)
        labels[labels == 254] = 255
    if label_map:
        labels = np.array([label_map.get(int(v), int(v)) for v in labels], dtype=np.int64)
    return bool(((labels < num_classes) & (labels != ignore_index)).any())


def check_seg_dataset(data_list: List[dict], where: str, num_classes: Optional[int], ignore_index: int = 255,
                      color_type: str = 'color', backend: Optional[str] = 'cv2', labels: str = 'sample',
                      label_sample: int = 500, ann_dir: Optional[str] = None,
                      seg_map_suffix: str = '.png', evaluated: bool = False) -> dict:
    """Checks the (image, annotation) pairs of one mmseg data list (see the module doc); returns counts.
    ``evaluated``: the split is validated or tested (its annotations must hold some label to score)."""
    t0 = time.perf_counter()
    if not data_list:
        raise DatasetError('no images found (data_prefix.img_path and img_suffix)')
    exif = honours_exif(color_type, backend)
    missing, bad_img, bad_ann, channels, sizes, sixteen = [], [], [], [], [], []
    pairs, ann_dirs = [], set()
    for info in data_list:
        img_path, seg_path = info['img_path'], info.get('seg_map_path')
        try:
            img = read_image_header(img_path)
        except FileNotFoundError:
            missing.append(f'image {img_path}')
            continue
        why = unusable(img, backend, color_type)
        if why:
            bad_img.append(f'{img_path}: {why}')
            continue
        if seg_path is None:
            continue
        try:
            ann = read_image_header(seg_path)
        except FileNotFoundError:
            missing.append(f'annotation {seg_path} (of {img_path})')
            ann_dirs.add(osp.dirname(seg_path))
            continue
        why = unusable(ann, 'pillow', 'unchanged')
        if why:
            bad_ann.append(f'{seg_path}: {why}')
            continue
        if ann.mode not in SEG_MODES:
            channels.append(f'{seg_path}: mode {ann.mode}')
            continue
        w, h = decoded_size(img, exif)
        if (w, h) != tuple(ann.size):  # the words of CheckSegMap's message
            sizes.append(f'{seg_path}: annotation size {ann.size[0]}x{ann.size[1]} (WxH) differs from its '
                         f'image {img_path} {w}x{h}' + exif_note(img, ann.size, exif))
            continue
        if ann.mode in ('I;16', 'I;16B', 'I'):
            sixteen.append(seg_path)
        pairs.append(info)
    n = len(data_list)
    case = next((c for c in (suffix_case_problem(d, seg_map_suffix, 'annotations') for d in sorted(ann_dirs))
                 if c), '')
    if case:
        raise DatasetError(f'{len(missing)} of {n} files not found: {names(missing, 3, "; ")}; {case}')
    for problems, what, cls in (
            (missing, 'files not found', DatasetError),
            (bad_img, 'images cannot be loaded', DatasetError),
            (bad_ann, 'annotations cannot be loaded', AnnotationError),
            (channels, 'annotations are not single-channel (a segmentation map is a PNG of mode L, P or '
                       'I;16: one class index per pixel, not a colour image)', AnnotationError),
            (sizes, 'annotations differ in size from their image', AnnotationError)):
        if problems:
            raise cls(f'{len(problems)} of {n} {what}: {names(problems, 3, "; ")}')

    if ann_dir is not None and osp.isdir(ann_dir):  # annotation files that no image uses: never read
        used = {osp.normpath(i['seg_map_path']) for i in data_list if i.get('seg_map_path')}
        unused = []
        for folder, _, files in os.walk(ann_dir):
            paths = (osp.normpath(osp.join(folder, f)) for f in files if f.endswith(seg_map_suffix))
            unused += [p for p in paths if p not in used]
        if unused:
            _warn(f'{len(unused)} annotation files without an image (not used; {where}): '
                  f'{names(sorted(unused), 3, "; ")}')

    # label values: decoding, so a sample (all 16-bit files, and label_sample spread over the rest)
    checked = []
    if labels != 'none' and pairs and pairs[0].get('seg_map_path') is not None:
        if labels == 'all' or len(pairs) <= label_sample:
            chosen = pairs
        else:
            step = len(pairs) / label_sample
            chosen = [pairs[int(i * step)] for i in range(label_sample)]
        extra = set(sixteen) - {i['seg_map_path'] for i in chosen}
        chosen += [i for i in pairs if i['seg_map_path'] in extra]
        if len(chosen) > 2000:
            print_log(f'{where}: checking the label values of {len(chosen)} annotations (decoding them)',
                      logger='current')
        from PIL import Image
        errors, scored = [], 0
        for info in chosen:
            path = info['seg_map_path']
            with Image.open(path) as im:
                arr = np.asarray(im)
            if arr.dtype != np.uint8:  # 16-bit ('I;16'), 32-bit ('I') or 1-bit ('1', bool) maps
                if arr.size and arr.max() > 255:
                    raise sixteen_bit_error(path, np.unique(arr[arr > 255]))
                arr = arr.astype(np.uint8)
            checked.append(path)
            if num_classes is None:
                continue
            counts = np.bincount(arr.ravel(), minlength=256)
            err = _label_errors(path, counts, num_classes,
                                ignore_index, info.get('reduce_zero_label', False), info.get('label_map'))
            if err:
                errors.append(err)
            elif _has_class_label(counts, num_classes, ignore_index, info.get('reduce_zero_label', False),
                                  info.get('label_map')):
                scored += 1
        if errors:
            raise AnnotationError(f'{len(errors)} of {len(checked)} checked annotations have labels outside '
                                  f'the classes: {names(errors, 3, "; ")}')
        if evaluated and num_classes is not None and checked and not scored:
            zero = ' (reduce_zero_label: PNG value 0 is ignore too)' if chosen[0].get('reduce_zero_label') else ''
            raise AnnotationError(f'all {len(checked)} checked annotations hold only the ignore label '
                                  f'{ignore_index}{zero}: every class IoU of this evaluated split would be nan '
                                  f'(mIoU: nan); e.g. {names(checked, 3, "; ")}')
    if sixteen:
        warn_sixteen_bit(sixteen[0], len(sixteen))
    return dict(images=len(data_list), annotations=len(pairs), labels_checked=len(checked),
                sixteen_bit=len(sixteen), seconds=round(time.perf_counter() - t0, 2))


def check_head_classes(heads, n_data: int, source: str) -> None:
    """Segmentation: a head with fewer classes than the data set is an error, more is one warning."""
    fewer = [(k, n) for k, n in heads if n < n_data]
    if fewer:
        low = min(n for _, n in fewer)
        labels = f'label {low}' if low == n_data - 1 else f'labels {low}..{n_data - 1}'
        raise UserInputError(f'{names((f"{k} = {n}" for k, n in fewer), 3, "; ")} but the data set has '
                             f'{n_data} '
                             f'classes ({source}): {labels} would have no output in the head (an IndexError '
                             f'in the loss); set num_classes = {n_data}')
    more = [(k, n) for k, n in heads if n > n_data]
    key = ('more_classes', tuple(more), n_data)
    if more and key not in _warned:
        _warned.add(key)
        _warn(f'{names((f"{k} = {n}" for k, n in more), 3, "; ")} but the data set has {n_data} classes '
              f'({source}): '
              f'trained as configured, the extra outputs ({n_data}..{max(n for _, n in more) - 1}) only ever '
              'see negatives and the metric counts the data set\'s classes; set num_classes = '
              f'{n_data} unless that is intended')


def check_seg_datasets(cfg, splits=('train_dataloader', 'val_dataloader', 'test_dataloader'),
                       labels: str = 'sample', label_sample: int = 500) -> list:
    """Runs the pre-flight checks (module doc) on every mmseg dataset of the config's dataloaders in
    ``splits``; returns (where, counts) per checked dataset. Local files only (``backend_args`` set: skipped).

    ``labels``: 'sample' (default: ``label_sample`` annotations spread over each set, and all 16-bit ones),
    'all' (decode every annotation), 'none'.
    """
    done, out = set(), []
    model = cfg.get('model') or {}
    heads = head_num_classes(model, ('decode_head', 'auxiliary_head'))
    for where, ds in iter_datasets(cfg):
        if not where.startswith(tuple(splits)) or ds.get('backend_args'):
            continue
        cls = _seg_dataset_class(cfg, ds)
        if cls is None:
            continue
        dataset = _build_lazy(cls, ds, where)
        classes = dataset.metainfo.get('classes')
        n_data = len(classes) if classes else None
        if n_data and heads:
            check_head_classes(heads, n_data, classes_source(ds, where, cls.__name__))
        num_classes = n_data or (heads[0][1] if heads else None)
        ignore = next((h.get('ignore_index', 255) for h in [model.get('decode_head')] if isinstance(h, dict)),
                      255)
        prefix = dataset.data_prefix
        key = (prefix.get('img_path'), prefix.get('seg_map_path'), dataset.ann_file, dataset.img_suffix,
               dataset.seg_map_suffix, num_classes, bool(dataset.reduce_zero_label))
        if key in done:
            continue
        done.add(key)
        color_type, backend = image_loader_args(ds.get('pipeline'))
        try:
            data_list = dataset.load_data_list()
        except (AssertionError, FileNotFoundError, OSError) as e:
            raise DatasetError(f'{where}: cannot list the data: {e}') from None
        listed = not (dataset.ann_file and osp.isfile(dataset.ann_file))
        img_dir = prefix.get('img_path')
        case = suffix_case_problem(img_dir, dataset.img_suffix) if listed else ''
        if case:
            raise DatasetError(f'{case} ({where})')
        if not data_list:
            source = (f'{dataset.ann_file} lists no image' if not listed else
                      f'no file ending in {dataset.img_suffix!r} in {img_dir} ({folder_summary(img_dir)})')
            raise DatasetError(f'no images found: {source} ({where}: data_prefix.img_path, img_suffix)')
        try:
            counts = check_seg_dataset(data_list, where, num_classes,
                                       ignore_index=255 if ignore is None else ignore, color_type=color_type,
                                       backend=backend, labels=labels, label_sample=label_sample,
                                       ann_dir=prefix.get('seg_map_path') if listed else None,
                                       seg_map_suffix=dataset.seg_map_suffix,
                                       evaluated=not where.startswith('train'))
        except UserInputError as e:
            raise type(e)(f'{e} ({where})') from None
        out.append((where, counts))
    return out


if __name__ == '__main__':  # python -m backbones.datasets.checks.segmentation: points to tools/misc/check_data.py
    standalone_use()
