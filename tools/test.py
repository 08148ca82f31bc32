"""Evaluate a checkpoint of any config of this repo with MMEngine's Runner and the config's evaluator.

    python tools/test.py CONFIG CHECKPOINT [--out results.pkl] [--show-dir DIR] [--cfg-options k=v ...]
    tools/dist_test.sh CONFIG CHECKPOINT GPUS [same options]

Prints a progress bar over the test set and the metrics (mmseg IoUMetric, mmdet CocoMetric, top-1/5).
``--tta`` evaluates with the config's multi-scale + flip ``tta_pipeline`` (the papers' "MS" numbers).
"""
import argparse

from launch import malloc_env  # tools/launch/malloc_env.py: imports nothing heavy

if __name__ == '__main__':  # before torch is imported: glibc reads its malloc settings at start-up
    malloc_env.ensure()


from backbones.apis.run import check_out_file, run_test  # noqa: E402,F401 (check_out_file: for callers of this tool)
from backbones.utils.cli import add_common_args, run_cli  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config')
    p.add_argument('checkpoint')
    p.add_argument('--out', help='also dump the raw predictions to this .pkl file')
    p.add_argument('--show-dir', help='write prediction overlays (PNG) into this folder')
    p.add_argument('--tta', action='store_true',
                   help="test-time augmentation: the config's tta_pipeline (multi-scale + flip) and tta_model")
    add_common_args(p)
    return p.parse_args(argv)


def main(argv=None) -> int:
    return run_test(parse_args(argv))


if __name__ == '__main__':
    run_cli(main)
