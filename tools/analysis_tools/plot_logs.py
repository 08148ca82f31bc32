"""Plot a work dir's loss and metric curves into a PNG.

    python tools/analysis_tools/plot_logs.py work_dirs/upernet_inceptionnext_t [--out curves.png]

Reads every run (``<timestamp>/vis_data/scalars.json``) in the work dir in time order, so a resumed run
continues its curve; left panel the losses, right panel the evaluation metrics (backbones/analysis/curves.py).
"""
import argparse
import os.path as osp

from backbones.analysis.curves import plot
from backbones.utils.cli import run_cli


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('work_dir')
    p.add_argument('--out', help='PNG path (default: WORK_DIR/curves.png)')
    args = p.parse_args(argv)
    out = plot(args.work_dir, args.out or osp.join(args.work_dir, 'curves.png'))
    print(f'wrote {out}')
    return 0


if __name__ == '__main__':
    run_cli(main)
