"""Checks of COCO-layout annotation files: what mmdet's ``CocoDataset`` would drop without a word, or fail on
in a dataloader worker or at the first evaluation, becomes one error naming the file and the entries; what
mmdet handles in a documented way (empty images, clipped boxes, crowd objects, unusable polygons) is counted
in the log. One function per rule, grouped by what they read: ``coco_annotations`` (the file), ``coco_images``
(its image files), ``coco_eval`` (what the evaluator reads), and here the model's heads; the rules and their
reasons: docs/data_checks.md.

``check_coco_datasets(cfg, splits)`` runs them on every CocoDataset of a config (``backbones.apis.run``, before
the Runner); ``check_coco_annotations`` on one file (``tools/misc/check_data.py --coco ANN_FILE ...``).
"""
import os.path as osp
from typing import Optional, Sequence

from mmengine.logging import print_log

from backbones.datasets.checks.coco_annotations import (
    Tally,
    config_category_ids,
    handling_notes,
    index_categories,
    index_images,
    raise_annotation_problems,
    read_instances,
    sort_annotation,
)
from backbones.datasets.checks.coco_eval import check_coco_eval_file, eval_key_problems
from backbones.datasets.checks.coco_images import check_image_files
from backbones.datasets.checks.common import classes_source, head_num_classes, iter_datasets, standalone_use
from backbones.datasets.checks.images import image_loader_args
from backbones.utils.errors import AnnotationError, DatasetError, UserInputError
from backbones.utils.io import names


def check_coco_annotations(ann_file: str, img_dir: Optional[str] = None,
                           classes: Optional[Sequence[str]] = None, for_training: bool = False,
                           filter_empty_gt: bool = True, with_mask: bool = False, color_type: str = 'color',
                           imdecode_backend: Optional[str] = 'cv2', poly2mask: bool = True,
                           for_evaluation: bool = False) -> dict:
    """Checks one COCO-layout annotation file; raises ``UserInputError`` or returns counts (see module doc).

    ``img_dir``: where the ``file_name``s are (skipped when None); ``classes``: the dataset's class names
    (None: do not check); ``for_training``: the split trains (at least one usable object is then required);
    ``with_mask``: the pipeline loads masks (every object then needs a ``segmentation``; polygons and RLEs
    are judged as mmdet's ``LoadAnnotations(poly2mask=...)`` judges them); ``color_type`` /
    ``imdecode_backend``: the pipeline's image loader (whether it applies the EXIF orientation);
    ``for_evaluation``: CocoMetric evaluates on the file (its annotations need the keys pycocotools reads,
    ``coco_eval.EVAL_KEYS``).
    """
    where = f'{ann_file}'
    data = read_instances(ann_file)
    images = index_images(data, where)
    categories = index_categories(data, where)
    wanted = config_category_ids(classes, categories, where)
    t = Tally()
    for ann in data['annotations']:
        if not isinstance(ann, dict):
            raise AnnotationError(f'{where}: an annotation entry that is not an object: {str(ann)[:200]}')
        sort_annotation(t, ann, images, categories, wanted, with_mask, poly2mask)
    raise_annotation_problems(t, categories, where)
    problems = eval_key_problems(data['annotations']) if for_evaluation else ''
    if problems:
        raise AnnotationError(f'{where}: {problems}')
    turned = [] if img_dir is None else check_image_files(images, img_dir, color_type, imdecode_backend, where)

    empty = [i for i in images if not t.usable[i]]
    bare = [i for i in empty if i not in t.in_classes]  # what filter_empty_gt removes
    if for_training and not t.usable:
        raise DatasetError(f'{where}: no object left to train on ({len(data["annotations"])} annotations, '
                           f'none of the classes {names(classes or [], 5)} with a usable box)')
    notes = handling_notes(t, empty, bare, turned, for_training, filter_empty_gt)
    if notes:
        print_log(f'{osp.basename(ann_file)}: ' + '; '.join(notes), logger='current', level=30)
    return dict(images=len(images), annotations=len(data['annotations']), objects=sum(t.usable.values()),
                empty_images=len(empty), clipped=t.clipped, small=t.small, other_class=t.other_class,
                crowd=t.crowd, bad_polygons=len(t.bad_poly), dropped_polygons=t.dropped_parts,
                bad_rle=len(t.bad_rle))


def _is_coco(ds: dict) -> bool:
    t = ds.get('type')
    name = t if isinstance(t, str) else getattr(t, '__name__', '')
    return name.split('.')[-1] == 'CocoDataset'


def check_coco_head_classes(cfg, n_data: int, source: str) -> None:
    """Every detection head of ``cfg.model`` predicts exactly the data set's classes. More outputs train to
    the end and then fail in evaluation (CocoMetric maps each label to a category id: IndexError in
    results2json); fewer fail in the loss (IndexError)."""
    heads = head_num_classes(cfg.get('model') or {},
                             ('roi_head.bbox_head', 'roi_head.mask_head', 'bbox_head'))
    wrong = [(k, n) for k, n in heads if n != n_data]
    if not wrong:
        return
    what = '; '.join(f'{k} = {n}' for k, n in wrong)
    if any(n < n_data for _, n in wrong):
        low = min(n for _, n in wrong)
        labels = f'label {low}' if low == n_data - 1 else f'labels {low}..{n_data - 1}'
        why = f'{labels} would have no output in the head (an IndexError in the loss)'
    else:
        why = (f'training would run to its end and then fail in evaluation (CocoMetric has no category for '
               f'labels {n_data}..{max(n for _, n in wrong) - 1})')
    raise UserInputError(f'{what} but the data set has {n_data} classes ({source}): {why}; set num_classes = '
                         f'{n_data}')


def check_coco_datasets(cfg, splits=('train_dataloader', 'val_dataloader', 'test_dataloader')) -> list:
    """Runs ``check_coco_annotations`` on every ``CocoDataset`` of the config's dataloaders in ``splits``.

    Local files only (a dataset with ``backend_args`` set, e.g. object storage, is skipped). Returns the
    counts per checked dataset as (where, counts).
    """
    done, out = set(), []
    for where, ds in iter_datasets(cfg):
        if not where.startswith(tuple(splits)) or not _is_coco(ds) or ds.get('backend_args'):
            continue
        root = ds.get('data_root') or ''
        ann = ds.get('ann_file') or ''
        ann = ann if osp.isabs(ann) or not root else osp.join(root, ann)
        img = (ds.get('data_prefix') or {}).get('img')
        img = None if img is None else (img if osp.isabs(img) or not root else osp.join(root, img))
        classes = (ds.get('metainfo') or {}).get('classes')
        if classes is None:
            from mmdet.datasets import CocoDataset
            classes = CocoDataset.METAINFO['classes']
        training = where.startswith('train') and not ds.get('test_mode', False)
        filter_empty = bool((ds.get('filter_cfg') or {}).get('filter_empty_gt', False))
        loads = [t for t in ds.get('pipeline') or [] if isinstance(t, dict)
                 and str(t.get('type', '')).split('.')[-1] == 'LoadAnnotations']
        with_mask = any(t.get('with_mask') for t in loads)
        poly2mask = all(t.get('poly2mask', True) for t in loads if t.get('with_mask'))
        color_type, backend = image_loader_args(ds.get('pipeline'))
        key = (osp.realpath(ann), img, tuple(classes), training, with_mask, poly2mask, color_type, backend)
        if key in done:
            continue
        done.add(key)
        try:
            out.append((where, check_coco_annotations(ann, img, classes, for_training=training,
                                                      filter_empty_gt=filter_empty, with_mask=with_mask,
                                                      color_type=color_type, imdecode_backend=backend,
                                                      poly2mask=poly2mask, for_evaluation=not training)))
        except UserInputError as e:
            raise type(e)(f'{e} ({where})') from None
        # after the file's check: class names that the file lacks are the first thing to fix
        check_coco_head_classes(cfg, len(classes), classes_source(ds, where, 'CocoDataset'))
    checked = {osp.realpath(k[0]) for k in done if not k[3]}  # evaluated splits' files: keys checked
    for split in splits:
        key = split.replace('_dataloader', '_evaluator')
        evaluators = cfg.get(key) if split != 'train_dataloader' else None
        evaluators = evaluators if isinstance(evaluators, (list, tuple)) else [evaluators]
        for i, ev in enumerate(evaluators):
            if not isinstance(ev, dict) or str(ev.get('type', '')).split('.')[-1] != 'CocoMetric':
                continue
            ann = ev.get('ann_file')
            if ann and osp.isfile(ann) and not ev.get('backend_args') and osp.realpath(ann) not in checked:
                checked.add(osp.realpath(ann))
                try:
                    check_coco_eval_file(ann)
                except UserInputError as e:
                    raise type(e)(f'{e} ({key}.ann_file)') from None
    return out


if __name__ == '__main__':  # python -m backbones.datasets.checks.coco: points to tools/misc/check_data.py
    standalone_use()
