"""Segment an image with a config + checkpoint and write the overlay PNG (mmseg's visualizer).

    python tools/misc/demo_seg.py IMAGE CONFIG CHECKPOINT [--out overlay.png] [--opacity 0.5] [--device cpu]

Works on any image file OpenCV reads; the overlay shows the predicted classes in the dataset's palette
with a legend of the classes present.
"""
import argparse
import os

from backbones.apis.inference import segment
from backbones.utils.cli import run_cli


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('image')
    p.add_argument('config')
    p.add_argument('checkpoint')
    p.add_argument('--out', default='overlay.png')
    p.add_argument('--opacity', type=float, default=0.5)
    p.add_argument('--device', default='cpu')
    args = p.parse_args(argv)
    labels = segment(args.image, args.config, args.checkpoint, args.out, args.opacity, args.device)
    print(f'wrote {os.path.abspath(args.out)} ({labels.shape[1]}x{labels.shape[0]}, classes present: '
          f'{sorted(set(labels.ravel().tolist()))})')
    return 0


if __name__ == '__main__':
    run_cli(main)
