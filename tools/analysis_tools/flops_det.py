"""Params and FLOPs of mmdet detectors built from this repo's configs (backbone + neck + heads).

    python tools/analysis_tools/flops_det.py                                   # Mask R-CNN T / S / B at 1280x800
    python tools/analysis_tools/flops_det.py \
        configs/cascade-mask-rcnn_inceptionnext-t_fpn_4conv1fc-giou_ms-crop-3x_coco.py
    python tools/analysis_tools/flops_det.py CONFIG [CONFIG ...] --shape 1333 800 [--proposals 1000]

How it counts: ``backbones/analysis/flops_det.py`` (one image through backbone, neck and RPN head, and the
RoI heads on ``--proposals`` fixed boxes, the mask head on the first 100, as mmdet's ``forward_dummy`` did).
"""
import argparse
import os.path as osp

from backbones.analysis.flops_det import DEFAULT_CONFIGS, count_detector
from backbones.utils.cli import run_cli

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('configs', nargs='*', help='mmdet configs (default: Mask R-CNN T, S, B 1x)')
    p.add_argument('--shape', type=int, nargs=2, default=(1280, 800), metavar=('W', 'H'))
    p.add_argument('--proposals', type=int, default=1000, help='RoIs given to the RoI heads (mask head: 100)')
    args = p.parse_args(argv)
    configs = args.configs or [osp.join(REPO, c) for c in DEFAULT_CONFIGS]
    w, h = args.shape
    name_w = max(len(osp.splitext(osp.basename(c))[0]) for c in configs)
    print(f'params and FLOPs (multiply-adds, mmengine.analysis) at {w}x{h}, {args.proposals} proposals')
    print(f'{"config":<{name_w}}  {"params (M)":>10}  {"FLOPs (G)":>9}  {"backbone params (M)":>19}  '
          f'{"backbone FLOPs (G)":>18}')
    for c in configs:
        r = count_detector(c, w, h, args.proposals)
        name = osp.splitext(osp.basename(c))[0]
        print(f'{name:<{name_w}}  {r["params"] / 1e6:>10.2f}  {r["flops"] / 1e9:>9.1f}  '
              f'{r["backbone_params"] / 1e6:>19.2f}  {r["backbone_flops"] / 1e9:>18.1f}', flush=True)
    return 0


if __name__ == '__main__':
    run_cli(main)
