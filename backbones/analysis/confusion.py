"""Confusion matrix of a semantic segmentation test run, in the label space the model is trained and scored in.

Predictions come from either test tool:

- ``tools/test.py CONFIG CKPT --out results.pkl``: each sample holds its prediction and its ground truth at the
  image's size (the data set's ``reduce_zero_label`` already applied to both); the config gives the classes.
- mmseg's ``tools/test.py CONFIG CKPT --out DIR``: one PNG per image, written by ``IoUMetric`` **one above** the
  model's labels where the data set reduces the zero label (ADE20K: 1..150 on disk for classes 0..149). The
  ground truth is read through the config's test data set (its pipeline reduces it) and matched by file name.

mmseg 1.2.2's ``analysis_tools/confusion_matrix.py`` takes the second form but subtracts 1 from the already
reduced ground truth (and not from the PNGs), so on any ``reduce_zero_label`` set (ADE20K included) it stops or
counts wrong pairs (mmseg issue #1687). Here each source is put into the trained label space once; pixels at
``ignore_index`` in the ground truth are left out, as ``IoUMetric`` does, so the per-class IoU read off the
matrix is mmseg's.
"""
from __future__ import annotations

import os
import os.path as osp
import pickle

import numpy as np

from backbones.utils.errors import UserInputError


def confusion(pairs, num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """Counts (ground truth, prediction) pixels: an int64 (num_classes, num_classes) matrix, rows = ground truth.

    pairs: iterable of (gt, pred) integer arrays of one shape. Ground-truth pixels at ``ignore_index`` are left
    out; any other label (ground truth or prediction) outside ``[0, num_classes)`` is an error, not a count.
    """
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    for name, gt, pred in pairs:
        gt, pred = np.asarray(gt).astype(np.int64).ravel(), np.asarray(pred).astype(np.int64).ravel()
        if gt.shape != pred.shape:
            raise UserInputError(f'{name}: the prediction has {pred.size} pixels, its ground truth {gt.size}: '
                                 'predictions of another data set, or of another test pipeline?')
        keep = gt != ignore_index
        gt, pred = gt[keep], pred[keep]
        for what, v in (('ground-truth', gt), ('predicted', pred)):
            bad = np.unique(v[(v < 0) | (v >= num_classes)])
            if bad.size:
                raise UserInputError(f'{name}: {what} labels {bad[:5].tolist()} outside the {num_classes} classes '
                                     f'(0..{num_classes - 1}, ignore {ignore_index})')
        cm += np.bincount(gt * num_classes + pred, minlength=num_classes ** 2).reshape(num_classes, num_classes)
    return cm


def scores(cm: np.ndarray) -> dict:
    """IoUMetric's numbers from the matrix: per-class IoU and accuracy (nan for classes absent from both), their
    means over the classes present, and the overall pixel accuracy."""
    cm = cm.astype(np.float64)
    tp, gt, pred = np.diag(cm), cm.sum(1), cm.sum(0)
    with np.errstate(divide='ignore', invalid='ignore'):
        iou, acc = tp / (gt + pred - tp), tp / gt
    return dict(IoU=iou, Acc=acc, mIoU=float(np.nanmean(iou)), mAcc=float(np.nanmean(acc)),
                aAcc=float(tp.sum() / cm.sum()))


def lazy_test_dataset(cfg):
    """The config's test data set, built without reading its folders (``lazy_init``): its ``metainfo`` (classes,
    as the config or the class gives them) and ``ignore_index``; ``from_png_folder`` loads the rest."""
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    return DATASETS.build({**cfg.test_dataloader.dataset, 'lazy_init': True})


def from_pickle(path: str):
    """(name, gt, pred) per sample of a ``tools/test.py --out`` pickle."""
    try:
        with open(path, 'rb') as f:
            samples = pickle.load(f)
    except Exception as e:  # noqa: BLE001 -- any unreadable file is the same user error
        raise UserInputError(f'{path}: not a readable predictions file ({e})') from None
    if not isinstance(samples, list) or not samples or not isinstance(samples[0], dict) \
            or 'pred_sem_seg' not in samples[0]:
        raise UserInputError(f'{path}: not the predictions of a segmentation test (a list of samples with '
                             "'pred_sem_seg', as tools/test.py --out writes)")
    if 'gt_sem_seg' not in samples[0]:
        raise UserInputError(f'{path}: the samples carry no ground truth (a test set without annotations)')
    for s in samples:
        yield (osp.basename(s.get('img_path', '?')), s['gt_sem_seg']['data'].squeeze().numpy(),
               s['pred_sem_seg']['data'].squeeze().numpy())


def from_png_folder(folder: str, dataset):
    """(name, gt, pred) per image of the test set (``lazy_test_dataset``), its prediction read from
    ``folder/<stem>.png``."""
    from PIL import Image
    files = {osp.splitext(f)[0]: f for f in os.listdir(folder) if f.endswith('.png')}
    if not files:
        raise UserInputError(f'{folder}: no .png predictions (mmseg tools/test.py --out {folder} writes them)')
    dataset.full_init()
    shift = 1 if dataset.reduce_zero_label else 0  # IoUMetric wrote label + 1 for such sets
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        stem = osp.splitext(osp.basename(info['img_path']))[0]
        if stem not in files:
            raise UserInputError(f'{folder}: no prediction {stem}.png for {info["img_path"]} of the test set')
        pred = np.asarray(Image.open(osp.join(folder, files[stem]))).astype(np.int64) - shift
        gt = dataset[i]['data_samples'].gt_sem_seg.data.squeeze().numpy()
        yield files[stem], gt, pred


def plot(cm: np.ndarray, classes, out_file: str, title: str = 'Normalized confusion matrix',
         cmap: str = 'winter') -> None:
    """Rows normalised to percent of each ground-truth class; class names on the axes up to 60 classes."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    n = len(classes)
    with np.errstate(divide='ignore', invalid='ignore'):
        pct = cm / cm.sum(1, keepdims=True) * 100
    side = min(max(4.0, 0.3 * n + 2), 40.0)
    fig, ax = plt.subplots(figsize=(side * 1.15, side), dpi=100)
    im = ax.imshow(pct, cmap=cmap, vmin=0, vmax=100)
    fig.colorbar(im, ax=ax, label='% of the ground-truth class')
    ax.set_title(title)
    ax.set_ylabel('ground truth')
    ax.set_xlabel('prediction')
    if n <= 60:
        ax.set_xticks(range(n), classes, rotation=90)
        ax.set_yticks(range(n), classes)
        if n <= 20:
            for i in range(n):
                for j in range(n):
                    if not np.isnan(pct[i, j]):
                        ax.text(j, i, f'{pct[i, j]:.0f}', ha='center', va='center', fontsize=7)
    fig.tight_layout()
    fig.savefig(out_file)
    plt.close(fig)


def write_csv(cm: np.ndarray, classes, out_file: str) -> None:
    """Counts with the class names as the first row and column (rows: ground truth)."""
    import csv
    with open(out_file, 'w', newline='') as f:
        w = csv.writer(f)
        w.writerow(['ground truth \\ prediction', *classes])
        for name, row in zip(classes, cm):
            w.writerow([name, *row.tolist()])
