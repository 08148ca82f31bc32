"""Write a small generated dataset in a real on-disk layout (backbones.datasets.synthetic); nothing is downloaded.

    python tools/misc/synthetic_data.py ade data/synthetic_ade [--train 200 --val 50 --size 160 128 --classes 5]
    python tools/misc/synthetic_data.py coco data/synthetic_coco [--train 200 --val 50 --size 160 128 --classes 3]
    python tools/misc/synthetic_data.py imagenet data/synthetic_imagenet [--train 50 --val 20 --size 64 --classes 10]

ade: ADE20K layout (images/, annotations/; label 0 ignored), coco: COCO instances (annotations/*.json,
train2017/, val2017/), imagenet: class folders (train/<wnid>/, val/<wnid>/) and meta/ file lists.
--train / --val count images (per class for imagenet).
"""
import argparse

from backbones.datasets.synthetic import CLASSES, SHAPES, write_ade, write_coco, write_imagenet
from backbones.utils.cli import run_cli
from backbones.utils.errors import BadValueError

DEFAULTS = dict(ade=dict(train=200, val=50, size=(160, 128), classes=5),
                coco=dict(train=200, val=50, size=(160, 128), classes=3),
                imagenet=dict(train=50, val=20, size=(64,), classes=10))
CLASS_RANGE = dict(ade=(1, len(SHAPES)), coco=(1, len(SHAPES)), imagenet=(2, len(CLASSES)))
MIN_SIZE = 16  # px: smaller scenes leave the shapes (12-28% of the shorter side) a few pixels


def check_args(args) -> None:
    """Each value in its range for the layout; the message names the option."""
    lo, hi = CLASS_RANGE[args.layout]
    if not lo <= args.classes <= hi:
        raise BadValueError(f'--classes {args.classes}: {args.layout} takes {lo}..{hi}')
    want = 1 if args.layout == 'imagenet' else 2
    if len(args.size) != want:
        raise BadValueError(f'--size {" ".join(map(str, args.size))}: {args.layout} takes '
                            + ('S (square images)' if want == 1 else 'W H'))
    if min(args.size) < MIN_SIZE:
        raise BadValueError(f'--size {" ".join(map(str, args.size))}: at least {MIN_SIZE} px')
    for name in ('train', 'val'):
        if getattr(args, name) < 0:
            raise BadValueError(f'--{name} {getattr(args, name)}: a count of images, 0 or more')
    if args.max_objects < 1:
        raise BadValueError(f'--max-objects {args.max_objects}: at least 1')


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('layout', choices=sorted(DEFAULTS))
    p.add_argument('root')
    p.add_argument('--train', type=int, help='train images (per class for imagenet)')
    p.add_argument('--val', type=int, help='val images (per class for imagenet)')
    p.add_argument('--size', type=int, nargs='+', metavar='W H', help='image size: W H (imagenet: S)')
    p.add_argument('--classes', type=int, help=f'at most {len(SHAPES)} (ade, coco) or {len(CLASSES)} (imagenet)')
    p.add_argument('--max-objects', type=int, default=4, help='coco: objects per image at most')
    p.add_argument('--seed', type=int, default=0)
    args = p.parse_args(argv)
    for k, v in DEFAULTS[args.layout].items():  # (0 is a value, not "the default")
        if getattr(args, k) is None:
            setattr(args, k, v)
    check_args(args)
    train, val, size, classes = args.train, args.val, tuple(args.size), args.classes
    if args.layout == 'ade':
        meta = write_ade(args.root, train, val, size, classes, args.seed)
    elif args.layout == 'coco':
        meta = write_coco(args.root, train, val, size, classes, args.max_objects, args.seed)
    else:
        meta = write_imagenet(args.root, classes, train, val, size[0], args.seed)
    counts = {k: v for k, v in meta.items() if k.startswith(('num_', 'objects_'))}
    print(f'wrote {args.layout} data to {args.root}: ' + ', '.join(f'{k}={v}' for k, v in counts.items())
          + f', classes {meta.get("classes", meta.get("names"))}')
    return 0


if __name__ == '__main__':
    run_cli(main)
