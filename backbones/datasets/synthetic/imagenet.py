"""A small generated ImageNet-layout classification dataset, for the learning test and quick trials.

    python tools/misc/synthetic_data.py imagenet data/synthetic_imagenet [--train 50 --val 20 --size 64 --classes 10]

Layout (what train_cls.ImageNet and timm's ImageFolder read):
    ROOT/train/<wnid>/<wnid>_<k>.JPEG                 --train images per class
    ROOT/val/<wnid>/ILSVRC2012_val_<k>.JPEG           --val images per class (held out, own seed stream)
    ROOT/meta/{train,val}.txt                         "<wnid>/<file> <label>" lines (the file-list variant)
    ROOT/meta/classes.txt, ROOT/meta.json             wnids in index order; names and counts

Classes: the drawn shapes of backbones.datasets.synthetic.ade (rectangle, disc, triangle, diamond, cross, hexagon)
then textures (stripes, checker, dots, rings), up to 10. One object or pattern per image, of random size,
position and rotation on a noisy, shaded background. Each class has a mean colour, jittered per image
so that neighbouring classes' colours overlap (as in backbones.datasets.synthetic.ade): colour is a cue that
gets a model started, shape and texture are needed to finish. wnids are fake ("n9000000<i>") and sort
in class order, so label i is the i-th class.
"""
import json
import os
import os.path as osp

import cv2
import numpy as np

from backbones.datasets.synthetic.ade import SHAPES, background, shape_polygon
from backbones.utils.errors import BadValueError

TEXTURES = ('stripes', 'checker', 'dots', 'rings')
CLASSES = SHAPES + TEXTURES


def wnid(i: int) -> str:
    return f'n9{i:07d}'


# Mean colour per class (BGR), hues around the colour wheel; each image jitters it by N(0, 35) per channel.
_COLOURS = np.array([(60, 60, 210), (60, 170, 60), (210, 60, 60), (40, 170, 200), (170, 50, 160),
                     (170, 170, 40), (40, 110, 230), (230, 130, 60), (120, 40, 110), (200, 200, 200)],
                    np.float32)


def _colour(rng: np.random.Generator, label: int) -> np.ndarray:
    return np.clip(_COLOURS[label] + rng.normal(0, 35, 3), 0, 255)


def draw(rng: np.random.Generator, label: int, size: int) -> np.ndarray:
    """One image (size x size x 3, uint8 BGR) of class ``CLASSES[label]``."""
    img = background(rng, size, size).astype(np.float32)
    colour = _colour(rng, label)
    kind = CLASSES[label]
    mask = np.zeros((size, size), np.float32)
    if kind in SHAPES:
        r = rng.uniform(0.26, 0.42) * size
        cx, cy = rng.uniform(r, size - r, 2)
        poly = shape_polygon(kind, cx, cy, r, rng.uniform(0, np.pi))
        m = np.zeros((size, size), np.uint8)
        cv2.fillPoly(m, [np.round(poly).astype(np.int32)], 1)
        mask = m.astype(np.float32)
    else:
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        period = rng.uniform(0.14, 0.24) * size
        theta = rng.uniform(0, np.pi)
        u = xx * np.cos(theta) + yy * np.sin(theta)
        v = -xx * np.sin(theta) + yy * np.cos(theta)
        phase = rng.uniform(0, period, 2)
        if kind == 'stripes':
            mask = (((u + phase[0]) / period) % 1.0 < 0.5).astype(np.float32)
        elif kind == 'checker':
            cells = np.floor((u + phase[0]) / period) + np.floor((v + phase[1]) / period)
            mask = (cells % 2).astype(np.float32)
        elif kind == 'dots':
            du = ((u + phase[0]) / period) % 1.0 - 0.5
            dv = ((v + phase[1]) / period) % 1.0 - 0.5
            mask = (du ** 2 + dv ** 2 < 0.28 ** 2).astype(np.float32)
        elif kind == 'rings':
            cx, cy = rng.uniform(0.2, 0.8, 2) * size
            d = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
            mask = (((d + phase[0]) / period) % 1.0 < 0.5).astype(np.float32)
        # the pattern covers a random window of the image, not always all of it
        x0, y0 = rng.uniform(0, 0.3, 2) * size
        x1, y1 = size - rng.uniform(0, 0.3, 2) * size
        mask *= ((xx >= x0) & (xx < x1) & (yy >= y0) & (yy < y1)).astype(np.float32)
    texture = colour[None, None] + rng.normal(0, 10, (size, size, 3))
    img = img * (1 - mask[..., None]) + texture * mask[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


def write_imagenet(root: str, num_classes: int = 10, num_train: int = 50, num_val: int = 20, size: int = 64,
                   seed: int = 0) -> dict:
    """Writes the dataset; returns its meta. ``num_train`` / ``num_val`` are images per class."""
    if not 2 <= num_classes <= len(CLASSES):
        raise BadValueError(f'num_classes must be 2..{len(CLASSES)}, got {num_classes}')
    wnids = [wnid(i) for i in range(num_classes)]
    os.makedirs(osp.join(root, 'meta'), exist_ok=True)
    counter = 0
    for split, n, split_seed in (('train', num_train, seed), ('val', num_val, seed + 10_000)):
        rng = np.random.default_rng(split_seed)
        lines = []
        for label, w in enumerate(wnids):
            os.makedirs(osp.join(root, split, w), exist_ok=True)
            for k in range(n):
                counter += 1
                name = f'{w}_{k}.JPEG' if split == 'train' else f'ILSVRC2012_val_{counter:08d}.JPEG'
                cv2.imwrite(osp.join(root, split, w, name), draw(rng, label, size),
                            [cv2.IMWRITE_JPEG_QUALITY, 92])
                lines.append(f'{w}/{name} {label}')
        with open(osp.join(root, 'meta', f'{split}.txt'), 'w') as f:
            f.write('\n'.join(lines) + '\n')
    with open(osp.join(root, 'meta', 'classes.txt'), 'w') as f:
        f.write('\n'.join(wnids) + '\n')
    meta = dict(wnids=wnids, names=list(CLASSES[:num_classes]), train_per_class=num_train,
                val_per_class=num_val, size=size, seed=seed)
    with open(osp.join(root, 'meta.json'), 'w') as f:
        json.dump(meta, f, indent=1)
    return meta
