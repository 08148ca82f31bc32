"""Detect (and segment) objects in one image with an mmdet config + checkpoint; write a PNG of the result.

    python tools/misc/demo_det.py IMAGE CONFIG CHECKPOINT [--out result.png] [--score-thr 0.3] [--device cpu]

The model comes from mmdet's ``init_detector`` (SyncBN -> BN, no pretrained backbone loading) and runs
through ``inference_detector`` with the config's test pipeline. The checkpoint (a training checkpoint of
``tools/train.py`` or a plain state dict) must fit the model exactly (init_detector alone only warns).
Boxes, masks and class labels scoring at least ``--score-thr`` are drawn by mmdet's ``DetLocalVisualizer``;
class names come from the checkpoint's ``dataset_meta`` (saved by training), else from the config's test
dataset. Prints one line per drawn detection.
"""
import argparse

from backbones.apis.inference import detect
from backbones.utils.cli import add_cfg_options, run_cli


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('image', help='an image file (jpg, png, ...)')
    p.add_argument('config', help='an mmdet config, e.g. configs/mask-rcnn_inceptionnext-t_fpn_1x_coco.py')
    p.add_argument('checkpoint', help='weights for that config (tools/train.py checkpoint or state dict)')
    p.add_argument('--out', help='output PNG (default: <image name>_det.png in the current folder)')
    p.add_argument('--score-thr', type=float, default=0.3, help='draw detections scoring at least this')
    p.add_argument('--device', default=None, help='cpu, cuda:0, ... (default: cuda:0 if available, else cpu)')
    add_cfg_options(p, 'model.test_cfg.rcnn.score_thr=0.1')
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    r = detect(args.image, args.config, args.checkpoint, args.out, args.score_thr, args.device, args.cfg_options)
    for name, score, box in r['detections']:
        print(f'{name:<16} {score:.3f}  box [{", ".join(f"{v:.1f}" for v in box)}]')
    masks = ' with masks' if r['masks'] else ''
    print(f'{len(r["detections"])} detections{masks} with score >= {args.score_thr} (of {r["total"]}); '
          f'wrote {r["out"]}')
    return 0


if __name__ == '__main__':
    run_cli(main)
