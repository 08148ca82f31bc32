"""Check the data of a config (or one COCO annotation file) the way tools/train.py does before training.

    python tools/misc/check_data.py CONFIG [--splits train val test] [--labels sample|all|none] [--cfg-options k=v ...]
    python tools/misc/check_data.py --coco ANN_FILE [--img-dir DIR] [--classes A B ...] [--train] [--masks]

Segmentation sets (backbones/datasets/checks/segmentation.py): pairing, empty / truncated files, channels,
sizes, 16-bit values, label range (a sample per set by default, ``--labels all`` decodes every annotation),
head classes. COCO sets (backbones/datasets/checks/coco.py): ids, categories, boxes, polygons, RLEs, image
headers and sizes, head classes. What each check catches and costs: docs/data_checks.md.
Prints what was checked; bad data: one ``error:`` line naming the file / key / value, exit 2.
"""
import argparse
import time

from backbones.datasets.checks.coco import check_coco_annotations, check_coco_datasets
from backbones.datasets.checks.common import check_data_folders
from backbones.datasets.checks.segmentation import check_seg_datasets
from backbones.utils.cli import add_cfg_options, run_cli
from backbones.utils.config import load_config


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config', nargs='?', help='a config of this repo (its dataloaders are checked)')
    p.add_argument('--splits', nargs='+', default=['train', 'val', 'test'], choices=['train', 'val', 'test'])
    p.add_argument('--labels', choices=['sample', 'all', 'none'], default='sample',
                   help='segmentation: which annotations to decode for the label range (default: a sample)')
    p.add_argument('--label-sample', type=int, default=500)
    add_cfg_options(p, 'train_dataloader.dataset.data_root=DIR')
    p.add_argument('--coco', metavar='ANN_FILE', help='check one COCO-layout annotation file instead of a config')
    p.add_argument('--img-dir', help='--coco: folder of the images (file_name is relative to it)')
    p.add_argument('--classes', nargs='+', help='--coco: class names the dataset config uses')
    p.add_argument('--train', action='store_true', help='--coco: a training split (needs a usable object)')
    p.add_argument('--masks', action='store_true', help='--coco: the pipeline loads masks')
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    if args.coco:
        counts = check_coco_annotations(args.coco, args.img_dir, args.classes, for_training=args.train,
                                        with_mask=args.masks)
        print(', '.join(f'{k} {v}' for k, v in counts.items()))
    elif args.config:
        cfg = load_config(args.config, args.cfg_options)
        splits = tuple(f'{s}_dataloader' for s in args.splits)
        check_data_folders(cfg, splits)
        results = check_coco_datasets(cfg, splits) + check_seg_datasets(cfg, splits, labels=args.labels,
                                                                         label_sample=args.label_sample)
        for where, counts in results:
            print(f'{where}: ' + ', '.join(f'{k} {v}' for k, v in counts.items()))
    else:
        p.error('give a CONFIG or --coco ANN_FILE')
    print(f'checked in {time.perf_counter() - t0:.1f} s')
    return 0


if __name__ == '__main__':
    run_cli(main)
