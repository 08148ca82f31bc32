"""A small generated dataset in the COCO instance layout, for the detection tests and demos (no downloads).

    python tools/misc/synthetic_data.py coco data/synthetic_coco [--train 200 --val 50 --size 160 128 --classes 3]

Layout (mmdet's ``CocoDataset`` / ``CocoMetric`` read it unchanged):
    annotations/instances_train2017.json, annotations/instances_val2017.json
    train2017/000000000001.jpg ..., val2017/000000100001.jpg ...

Scenes come from ``backbones.datasets.synthetic.ade.draw_scene`` with ``overlap=False`` (objects placed apart), so every
object is fully visible and its annotation is exact: the polygon it was drawn from (``segmentation``), that
polygon's extent as ``bbox`` ([x, y, w, h], COCO style) and its area as ``area``. Category ids
start at 1, one per shape kind (``SHAPES[:classes]``), as in COCO's categories list.
"""
import json
import os
import os.path as osp

import cv2
import numpy as np

from backbones.datasets.synthetic.ade import draw_scene, shape_classes

SPLITS = ('train2017', 'val2017')


def coco_annotation(ann_id: int, img_id: int, label: int, polygon: np.ndarray, width: int,
                    height: int) -> dict:
    """One COCO ``annotations`` entry for a drawn object (category id = label + 1): the polygon, its extent as
    ``bbox`` [x, y, w, h] and its area (shoelace; what COCO's mask area is, up to rasterisation)."""
    poly = polygon.copy()
    poly[:, 0] = poly[:, 0].clip(0, width)
    poly[:, 1] = poly[:, 1].clip(0, height)
    x0, y0 = poly.min(0)
    x1, y1 = poly.max(0)
    x, y = poly[:, 0], poly[:, 1]
    area = 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))
    return dict(id=ann_id, image_id=img_id, category_id=label + 1,
                bbox=[round(float(v), 2) for v in (x0, y0, x1 - x0, y1 - y0)],
                area=round(area, 2), segmentation=[[round(float(v), 2) for v in poly.reshape(-1)]], iscrowd=0)


def write_coco(root: str, num_train: int = 200, num_val: int = 50, size=(160, 128), num_classes: int = 3,
               max_objects: int = 4, seed: int = 0) -> dict:
    """Writes the COCO-layout dataset under ``root``; returns its meta (class names, image/object counts)."""
    classes = shape_classes(num_classes)
    w, h = size
    rng = np.random.default_rng(seed)
    categories = [dict(id=i + 1, name=name, supercategory='shape') for i, name in enumerate(classes)]
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    meta = dict(classes=list(classes), size=[w, h])
    ann_id = 1
    for split, n, first_id in (('train2017', num_train, 1), ('val2017', num_val, 100001)):
        os.makedirs(osp.join(root, split), exist_ok=True)
        images, annotations = [], []
        for i in range(n):
            img_id = first_id + i
            img, objects = draw_scene(rng, h, w, num_classes, max_objects=max_objects, overlap=False)
            name = f'{img_id:012d}.jpg'
            cv2.imwrite(osp.join(root, split, name), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
            images.append(dict(id=img_id, file_name=name, width=w, height=h))
            for o in objects:
                annotations.append(coco_annotation(ann_id, img_id, o['label'], o['polygon'], w, h))
                ann_id += 1
        with open(osp.join(root, 'annotations', f'instances_{split}.json'), 'w') as f:
            json.dump(dict(info=dict(description='generated shapes (backbones.datasets.synthetic.coco)'), licenses=[],
                           images=images, annotations=annotations, categories=categories), f)
        meta[f'num_{split[:-4]}'] = n
        meta[f'objects_{split[:-4]}'] = len(annotations)
    return meta
