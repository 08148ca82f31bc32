"""Params and MACs of InceptionNeXt classifiers, or of any mmdet / mmseg / train_cls config.

    python tools/analysis_tools/flops.py                              # the paper's classification table (+ ablations)
    python tools/analysis_tools/flops.py --arch tiny base --shape 384     # chosen variants / resolution
    python tools/analysis_tools/flops.py configs/upernet_inceptionnext_t.py --shape 2048 512   # a dense model (W H)

Counted with mmengine.analysis (the fvcore counter: one multiply-add = one "FLOP", as the paper's
"MACs" column; convolutions, linear layers and norms counted, element-wise ops not).
"""
import argparse
import os

from backbones.analysis.flops import PAPER, PAPER_DENSE, count_arch, count_config
from backbones.utils.cli import run_cli


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config', nargs='?', help='a model config (mmdet/mmseg/train_cls); omit for the paper table')
    p.add_argument('--arch', nargs='+', help='InceptionNeXt variants (default: the paper table rows)')
    p.add_argument('--shape', type=int, nargs='+', default=None, help='input size: S, or W H')
    args = p.parse_args(argv)
    shape = args.shape or ([224] if not args.config else [2048, 512])
    width, height = (shape[0], shape[0]) if len(shape) == 1 else shape[:2]

    if args.config:
        params, macs = count_config(args.config, width, height)
        name = os.path.basename(args.config)
        paper = next((v for (prefix, w, h), v in PAPER_DENSE.items()
                      if name.startswith(prefix) and (w, h) == (width, height)), None)
        print(f'{name} at {width}x{height}: params {params / 1e6:.2f}M  FLOPs(MACs) {macs / 1e9:.1f}G'
              + (f'  (paper: {paper[0]}M / {paper[1]}G)' if paper else ''))
        return 0
    rows = [(a, width) for a in args.arch] if args.arch else list(PAPER)
    print(f'{"model":<18}{"res":>5}{"params (M)":>12}{"MACs (G)":>10}{"paper":>16}')
    for arch, size in rows:
        params, macs = count_arch(arch, size)
        paper = PAPER.get((arch, size))
        ref = f'{paper[0]}M / {paper[1]}G' if paper else '-'
        print(f'{arch:<18}{size:>5}{params / 1e6:>12.2f}{macs / 1e9:>10.3f}{ref:>16}', flush=True)
    return 0


if __name__ == '__main__':
    run_cli(main)
