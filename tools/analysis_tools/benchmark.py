"""Throughput of InceptionNeXt side by side with timm's models, in one process and one table.

    python tools/analysis_tools/benchmark.py        # tiny vs peers, CPU fp32, inference + train
    python tools/analysis_tools/benchmark.py --models ours_tiny ours_tiny_deploy timm:inception_next_tiny \
        timm:convnext_tiny timm:resnet50 --batch 32 --train-batch 16 --size 224 --reps 5 --ref timm:inception_next_tiny
    python tools/analysis_tools/benchmark.py --mode seg --size 512 --batch 2   # UperNet: ours-T vs ConvNeXt-T
    python tools/analysis_tools/benchmark.py ... --out-md table.md --out-csv table.csv --out-png bars.png

Model names and the method (interleaved runs, medians, both memory formats): backbones/analysis/benchmark.py.
The tool runs with glibc malloc keeping freed memory (tools/launch/malloc_env.py); ``INCEPTIONNEXT_MALLOC=default``
measures glibc's defaults.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # tools/, as for the tools at its top
from launch import malloc_env  # noqa: E402  (tools/launch/malloc_env.py: imports nothing heavy)

if __name__ == '__main__':  # before torch is imported: glibc reads its malloc settings at start-up
    malloc_env.ensure()

import torch  # noqa: E402

from backbones.analysis.benchmark import (  # noqa: E402
    bar_chart,
    describe_device,
    markdown,
    run_benchmark,
    set_tf32,
    write_csv,
)
from backbones.utils.cli import run_cli  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--mode', choices=['cls', 'seg'], default='cls')
    p.add_argument('--models', nargs='+', default=['ours_tiny', 'ours_tiny_deploy', 'timm:inception_next_tiny',
                                                   'timm:convnext_tiny', 'timm:resnet50'])
    p.add_argument('--ref', help='model the ratios are relative to (default: the first)')
    p.add_argument('--measure', nargs='+', choices=['infer', 'train'], default=['infer', 'train'])
    p.add_argument('--batch', type=int, default=32, help='inference batch')
    p.add_argument('--train-batch', type=int, default=16)
    p.add_argument('--size', type=int, default=224)
    p.add_argument('--warmup', type=int, default=2)
    p.add_argument('--iters', type=int, default=2, help='steps per timed run')
    p.add_argument('--reps', type=int, default=5, help='timed runs per model (median reported)')
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--amp', action='store_true',
                   help='also time autocast: fp16 on CUDA, bf16 on CPU (fast where the CPU has AVX512-BF16 / AMX)')
    p.add_argument('--gemm', action='store_true', help='also print the fraction of the torch.mm fp32 rate')
    p.add_argument('--threads', type=int,
                   help='torch intra-op threads (default: torch\'s); ONNX Runtime rows use as many')
    p.add_argument('--ort', action='store_true', help='also time ONNX Runtime (CPU) rows ort:<our model>')
    p.add_argument('--no-cudnn-benchmark', action='store_true', help='CUDA: leave cudnn.benchmark off')
    p.add_argument('--tf32', choices=['on', 'off'], default='on',
                   help='CUDA fp32: TF32 for matmuls and cuDNN convolutions alike (default on)')
    p.add_argument('--out-md')
    p.add_argument('--out-csv')
    p.add_argument('--out-png')
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.mode == 'seg':
        args.ref = args.ref or 'upernet_timm_convnext_tiny'
        args.measure = [m for m in args.measure if m == 'infer'] or ['infer']
    torch.manual_seed(0)
    if torch.device(args.device).type == 'cuda':
        torch.backends.cudnn.benchmark = not args.no_cudnn_benchmark
        set_tf32(args.tf32 == 'on')
    print(f'device {args.device}, {describe_device(torch.device(args.device))}, {torch.get_num_threads()} threads, '
          f'{malloc_env.describe()}', flush=True)
    rows = run_benchmark(args)
    ref = args.ref or rows[0]['model']
    table = markdown(rows, ref)
    print(table)
    if args.out_md:
        with open(args.out_md, 'w') as f:
            f.write(table + '\n')
    if args.out_csv:
        write_csv(rows, args.out_csv)
    if args.out_png:
        bar_chart(rows, args.out_png, ref)
    return 0


if __name__ == '__main__':
    run_cli(main)
