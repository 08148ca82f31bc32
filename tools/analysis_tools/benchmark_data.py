"""Data-pipeline throughput per core of a config's training and validation pipelines, beside the stack's own
(mmseg's / mmdet's base pipelines, timm's create_transform), and the dataloader workers one GPU needs.

    python tools/analysis_tools/benchmark_data.py \
        configs/upernet_inceptionnext-t_8xb2-160k_ade20k-512x512.py --generate --target 200
    python tools/analysis_tools/benchmark_data.py CONFIG --data-root data/ade/ADEChallengeData2016 \
        --images 100
    python tools/analysis_tools/benchmark_data.py CONFIG --generate --out-md table.md

One process, the main thread (one torch and one OpenCV thread, as in a dataloader worker); interleaved
passes, medians of --reps. The method and the reference pipelines: backbones/analysis/data_bench.py.
"""
import argparse

from backbones.utils.cli import add_cfg_options, run_cli


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('configs', nargs='+', metavar='CONFIG', help='mmseg, mmdet or train_cls configs')
    src = p.add_mutually_exclusive_group()
    src.add_argument('--data-root', help="read this data root instead of the config's")
    src.add_argument('--generate', action='store_true',
                     help='generate a small set in the config\'s layout (ADE 683x512, COCO 640x480, '
                          'ImageNet 400x400)')
    p.add_argument('--images', type=int, default=40, help='images per pass (default 40)')
    p.add_argument('--reps', type=int, default=3, help='timed passes per pipeline, interleaved (median)')
    p.add_argument('--target', type=float, default=1000.,
                   help='images/s one GPU consumes: the workers column is ceil(target / img/s per core)')
    p.add_argument('--out-md', help='also write the table to this Markdown file')
    add_cfg_options(p)
    args = p.parse_args(argv)
    for k in ('images', 'reps'):
        if getattr(args, k) < 1:
            p.error(f'--{k} must be at least 1')
    if args.target <= 0:
        p.error('--target must be positive')
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    from backbones.analysis.data_bench import markdown, run
    rows = []
    for config in args.configs:
        rows += run(config, data_root=args.data_root, gen=args.generate, images=args.images, reps=args.reps,
                    target=args.target, cfg_options=args.cfg_options)
    table = markdown(rows, args.target)
    print(table)
    if args.out_md:
        from backbones.utils.io import atomic_write
        atomic_write(args.out_md, lambda f: f.write((table + '\n').encode()))
    return 0


if __name__ == '__main__':
    run_cli(main)
