"""Export a classifier, a bare backbone or a segmentor to ONNX (torch.export-based exporter), and check it.

    python tools/deployment/export_onnx.py configs/inceptionnext-atto_4xb320-600e_in1k.py CKPT --out atto.onnx \
        --dynamic --check
    python tools/deployment/export_onnx.py backbone:tiny CKPT --out tiny_backbone.onnx   # the four stage maps, 224
    python tools/deployment/export_onnx.py configs/upernet_inceptionnext_t.py CKPT --out upernet.onnx --dynamic \
        --deploy --check --argmax                               # (N, H, W) label map at the input's size
    python tools/deployment/export_onnx.py CONFIG CKPT --out m.onnx --check-only --check-shape 480 640  # existing file

CONFIG: a classification (train_cls) or segmentation (mmseg) config, or ``backbone:<arch>`` (InceptionNeXt,
all four stages, no config); ``--backbone`` exports only a config's backbone (also of an mmdet config; whole
detectors are not supported). The input is a normalised image batch (N, 3, H, W), float32; the file's
metadata holds the channel order and mean/std (see docs/export.md). Segmentors run mmseg's
whole-image inference (no slide inference) and return logits or labels at the input's size.
``--check`` runs the file in ONNX Runtime (CPU) on random inputs of the export size and, for a dynamic file,
of two other sizes, and fails (exit 2) when it differs from torch by more than 1e-4 of the output's scale.
"""
import argparse
import os.path as osp
import time

from backbones.utils.cli import add_cfg_options, run_cli
from backbones.utils.errors import UserInputError
from backbones.utils.io import refuse_output_over_input


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config', help='config file, or backbone:<arch> (e.g. backbone:atto)')
    p.add_argument('checkpoint', nargs='?', help='weights (default: the random init of the config)')
    p.add_argument('--out', required=True, help='the .onnx file to write (or to check, with --check-only)')
    p.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                   help='export size (default: 224 224, a segmentor its crop size)')
    p.add_argument('--batch', type=int, default=1, help='batch of a static file (default 1)')
    p.add_argument('--dynamic', action='store_true', help='batch, height and width dynamic (H, W >= 32)')
    p.add_argument('--deploy', action='store_true',
                   help='export the folded inference form (switch_to_deploy)')
    p.add_argument('--argmax', action='store_true', help='output class indices / the label map, not logits')
    p.add_argument('--backbone', action='store_true',
                   help='export only the config\'s backbone (its stage maps)')
    p.add_argument('--check', action='store_true', help='compare ONNX Runtime (CPU) with torch after export')
    p.add_argument('--check-only', action='store_true', help='do not export: check the existing --out file')
    p.add_argument('--check-shape', type=int, nargs=2, action='append', metavar=('H', 'W'),
                   help='check at this size too (repeatable; default for a dynamic file: two other sizes)')
    p.add_argument('--tol', type=float, default=1e-4, help='check tolerance, relative to max |torch output|')
    p.add_argument('--opset', type=int, default=18)
    add_cfg_options(p, 'model.decode_head.num_classes=19')
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from backbones.deploy import onnx as ex
    if args.backbone and args.config.startswith('backbone:'):
        raise UserInputError('--backbone is for a config; backbone:<arch> is a backbone already')
    if not args.check_only:
        if not args.out.endswith('.onnx'):
            raise UserInputError(f'--out {args.out}: name a .onnx file (the exporter writes an ONNX model '
                                 'there)')
        refuse_output_over_input(args.out, {'checkpoint': args.checkpoint, 'config': args.config}, '--out')
    if args.batch < 1:
        raise UserInputError(f'--batch {args.batch}: must be at least 1')
    exp = ex.build_exportable(args.config, args.checkpoint, backbone=args.backbone, deploy=args.deploy,
                              argmax=args.argmax, cfg_options=args.cfg_options)
    shape = tuple(args.shape or exp.default_shape)
    if args.check_only:
        if not osp.isfile(args.out):
            raise UserInputError(f'ONNX file not found: {args.out}')
    else:
        t0 = time.perf_counter()
        ex.export_exportable(exp, args.out, shape=shape, batch=args.batch, dynamic=args.dynamic,
                             opset=args.opset)
        dims = f'(batch, 3, height, width), H, W >= {ex.MIN_SIZE}' if args.dynamic else \
            f'({args.batch}, 3, {shape[0]}, {shape[1]})'
        deploy = ' (deploy)' if args.deploy else ''
        outs = ', '.join(exp.output_names)
        print(f'wrote {args.out}: {exp.kind} {exp.source}{deploy}, input {dims} -> {outs}; '
              f'{osp.getsize(args.out) / 2**20:.1f} MiB in {time.perf_counter() - t0:.1f} s', flush=True)
    if args.check or args.check_only:
        session = ex.ort_session(args.out)
        dynamic = not all(isinstance(d, int) for d in session.get_inputs()[0].shape)
        del session
        shapes = [shape] + (args.check_shape or (ex.other_sizes(shape) if dynamic else []))
        worst = ex.check(exp, args.out, shapes, batch=args.batch, tol=args.tol)
        print(f'ONNX Runtime matches torch: largest relative difference {worst:.2e} (tolerance {args.tol:g})')
    return 0


if __name__ == '__main__':
    run_cli(main)
