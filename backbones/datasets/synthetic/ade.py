"""Small generated datasets in the real on-disk layouts, for the main job and the tests (no downloads).

Scenes are drawn shapes (one class per shape kind) with jittered colours on noisy, shaded backgrounds,
so a model has to use shape and context, not one colour, and the true labels are known exactly.

    python tools/misc/synthetic_data.py ade data/synthetic_ade [--train 200 --val 50 --size 160 128]

ADE20K layout (mmseg's ADE20KDataset / BaseSegDataset with reduce_zero_label=True):
    images/{training,validation}/*.jpg, annotations/{training,validation}/*.png
    label 0 = ignore (a 1-px band on shape borders, as ADE leaves ambiguous pixels unlabelled),
    1 = background, 2.. = the shape classes; after reduce_zero_label: 0 = background, 1.. = shapes.
"""
import json
import os
import os.path as osp
from typing import List, Tuple

import cv2
import numpy as np

from backbones.utils.errors import BadValueError

SHAPES = ('rectangle', 'disc', 'triangle', 'diamond', 'cross', 'hexagon')
# Mean colour per shape (BGR); each drawn instance jitters it, and neighbours' ranges overlap.
_COLOURS = np.array([(200, 60, 60), (60, 170, 60), (60, 60, 200), (170, 150, 40), (150, 50, 160),
                     (40, 150, 170)], dtype=np.float32)
# The shapes' display colours (RGB, the mean colours above): the data sets' palette (visualisers draw with it).
SHAPE_PALETTE = [[int(c) for c in bgr[::-1]] for bgr in _COLOURS]


def shape_polygon(kind: str, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    """(K, 2) float polygon of a shape of radius ``r`` centred at (cx, cy), rotated by ``angle``."""
    if kind == 'rectangle':
        pts = [(-1, -0.6), (1, -0.6), (1, 0.6), (-1, 0.6)]
    elif kind == 'disc':
        t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        pts = np.stack([np.cos(t), np.sin(t)], 1)
    elif kind == 'triangle':
        t = np.array([-np.pi / 2, np.pi / 6, 5 * np.pi / 6])
        pts = np.stack([np.cos(t), np.sin(t)], 1)
    elif kind == 'diamond':
        pts = [(0, -1), (0.6, 0), (0, 1), (-0.6, 0)]
    elif kind == 'cross':
        a, b = 1.0, 0.33
        pts = [(-b, -a), (b, -a), (b, -b), (a, -b), (a, b), (b, b), (b, a), (-b, a), (-b, b), (-a, b), (-a, -b),
               (-b, -b)]
    elif kind == 'hexagon':
        t = np.linspace(0, 2 * np.pi, 6, endpoint=False)
        pts = np.stack([np.cos(t), np.sin(t)], 1)
    else:
        raise ValueError(f'unknown shape {kind!r}; known: {SHAPES}')
    pts = np.asarray(pts, dtype=np.float64) * r
    c, s = np.cos(angle), np.sin(angle)
    return pts @ np.array([[c, s], [-s, c]]) + (cx, cy)


def background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A shaded, noisy background (uint8 BGR)."""
    base = rng.uniform(60, 190, 3)
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
    shade = (gx / w - 0.5) * rng.uniform(-60, 60) + (gy / h - 0.5) * rng.uniform(-60, 60)
    img = base[None, None] + shade[..., None] + rng.normal(0, 12, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def draw_scene(rng: np.random.Generator, h: int, w: int, num_classes: int, max_objects: int = 4,
               overlap: bool = True, min_r: float = 0.12, max_r: float = 0.28
               ) -> Tuple[np.ndarray, List[dict]]:
    """One scene: image (h, w, 3) uint8 and its objects, each dict(label, polygon (K, 2), mask (h, w) bool).

    ``label`` is 0-based over ``SHAPES[:num_classes]``. Masks are of what stays visible after later
    objects are drawn; with ``overlap=False`` objects are placed apart (boxes do not intersect).
    """
    img = background(rng, h, w)
    objects, boxes = [], []
    for _ in range(rng.integers(1, max_objects + 1)):
        for _try in range(20):
            r = rng.uniform(min_r, max_r) * min(h, w)
            cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
            box = (cx - r, cy - r, cx + r, cy + r)
            if overlap or all(box[2] < b[0] or b[2] < box[0] or box[3] < b[1] or b[3] < box[1] for b in boxes):
                break
        else:
            continue
        label = int(rng.integers(num_classes))
        poly = shape_polygon(SHAPES[label], cx, cy, r, rng.uniform(0, np.pi))
        mask = np.zeros((h, w), np.uint8)
        cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], 1)
        colour = np.clip(_COLOURS[label] + rng.normal(0, 25, 3), 0, 255)
        texture = rng.normal(0, 10, (h, w, 3))
        painted = np.clip(colour[None, None] + texture, 0, 255).astype(np.uint8)
        img[mask.astype(bool)] = painted[mask.astype(bool)]
        for o in objects:  # later shapes hide earlier ones
            o['mask'] &= ~mask.astype(bool)
        objects.append(dict(label=label, polygon=poly, mask=mask.astype(bool)))
        boxes.append(box)
    return img, objects


def shape_classes(num_classes: int) -> Tuple[str, ...]:
    """The first ``num_classes`` shape kinds (the class names of the ADE and COCO layouts)."""
    if not 1 <= num_classes <= len(SHAPES):
        raise BadValueError(f'num_classes must be 1..{len(SHAPES)} (the shape kinds {SHAPES}), '
                            f'got {num_classes}')
    return SHAPES[:num_classes]


def write_ade(root: str, num_train: int = 200, num_val: int = 50, size=(160, 128), num_classes: int = 5,
              seed: int = 0) -> dict:
    """Writes an ADE20K-layout dataset; returns its meta (class names, counts)."""
    classes = ('background',) + shape_classes(num_classes)
    w, h = size
    rng = np.random.default_rng(seed)
    for split, n in (('training', num_train), ('validation', num_val)):
        os.makedirs(osp.join(root, 'images', split), exist_ok=True)
        os.makedirs(osp.join(root, 'annotations', split), exist_ok=True)
        for i in range(n):
            img, objects = draw_scene(rng, h, w, num_classes)
            seg = np.ones((h, w), np.uint8)  # 1 = background
            for o in objects:
                seg[o['mask']] = o['label'] + 2
            edges = cv2.morphologyEx(seg, cv2.MORPH_GRADIENT, np.ones((2, 2), np.uint8)) > 0
            seg[edges] = 0  # ignore band on borders
            name = f'ADE_{split[:5]}_{i:06d}'
            cv2.imwrite(osp.join(root, 'images', split, name + '.jpg'), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
            cv2.imwrite(osp.join(root, 'annotations', split, name + '.png'), seg)
    meta = dict(classes=list(classes), num_train=num_train, num_val=num_val, size=[w, h])
    with open(osp.join(root, 'meta.json'), 'w') as f:
        json.dump(meta, f, indent=1)
    return meta
