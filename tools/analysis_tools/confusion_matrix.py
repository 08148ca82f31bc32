"""Confusion matrix of a segmentation test run, with the per-class IoU / accuracy read off it.

    python tools/test.py CONFIG CKPT --out results.pkl
    python tools/analysis_tools/confusion_matrix.py CONFIG results.pkl SAVE_DIR
    # or from mmseg's tools/test.py CONFIG CKPT --out PRED_DIR (one PNG per image):
    python tools/analysis_tools/confusion_matrix.py CONFIG PRED_DIR SAVE_DIR

Writes SAVE_DIR/confusion_matrix.png (rows: ground truth, normalised to percent) and confusion_matrix.csv
(pixel counts) and prints IoU / Acc per class with mIoU, mAcc, aAcc (the numbers of mmseg's IoUMetric).
The arguments are those of mmseg's analysis_tools/confusion_matrix.py, which counts wrong pairs on data sets
that reduce the zero label, ADE20K included (docs/ecosystem.md).
"""
import argparse
import os
import os.path as osp

from backbones.analysis.confusion import (
    confusion,
    from_pickle,
    from_png_folder,
    lazy_test_dataset,
    plot,
    scores,
    write_csv,
)
from backbones.utils.cli import add_cfg_options, run_cli
from backbones.utils.config import load_config
from backbones.utils.errors import UserInputError


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config', help='the config the predictions were tested with')
    p.add_argument('prediction_path', help='tools/test.py --out .pkl, or the PNG folder of mmseg test.py --out')
    p.add_argument('save_dir', help='where confusion_matrix.png / .csv go')
    p.add_argument('--show', action='store_true', help=argparse.SUPPRESS)  # mmseg's flag: the figure is a file here
    p.add_argument('--color-theme', default='winter', help='matplotlib colour map')
    p.add_argument('--title', default='Normalized confusion matrix')
    add_cfg_options(p)
    args = p.parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    path = osp.expanduser(args.prediction_path)
    if not osp.exists(path):
        raise UserInputError(f'{args.prediction_path}: no such file or folder')
    dataset = lazy_test_dataset(cfg)
    classes = tuple(dataset.metainfo.get('classes') or ())
    if not classes:
        raise UserInputError(f'{args.config}: test_dataloader.dataset has no classes (metainfo.classes)')
    pairs = from_png_folder(path, dataset) if osp.isdir(path) else from_pickle(path)
    cm = confusion(pairs, len(classes), dataset.ignore_index)
    os.makedirs(args.save_dir, exist_ok=True)
    png, csv = osp.join(args.save_dir, 'confusion_matrix.png'), osp.join(args.save_dir, 'confusion_matrix.csv')
    plot(cm, classes, png, args.title, args.color_theme)
    write_csv(cm, classes, csv)
    s = scores(cm)
    width = max(len(c) for c in classes)
    print(f'{"class":<{width}}    IoU    Acc')
    for c, iou, acc in zip(classes, s['IoU'], s['Acc']):
        print(f'{c:<{width}} {iou * 100:6.2f} {acc * 100:6.2f}')
    print(f'mIoU={s["mIoU"] * 100:.2f} mAcc={s["mAcc"] * 100:.2f} aAcc={s["aAcc"] * 100:.2f} '
          f'({int(cm.sum())} pixels)')
    print(f'wrote {png}\nwrote {csv}')
    return 0


if __name__ == '__main__':
    run_cli(main)
