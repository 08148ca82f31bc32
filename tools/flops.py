"""Params and MACs of InceptionNeXt classifiers, or of any mmdet / mmseg / train_cls config.

    python tools/flops.py                                  # the paper's classification table (+ ablations)
    python tools/flops.py --arch tiny base --shape 384     # chosen variants / resolution
    python tools/flops.py configs/upernet_inceptionnext_t.py --shape 2048 512   # a dense model (W H)

Counted with mmengine.analysis (the fvcore counter: one multiply-add = one "FLOP", as the paper's
"MACs" column; convolutions, linear layers and norms counted, element-wise ops not).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
from mmengine.analysis import FlopAnalyzer, parameter_count  # noqa: E402

# The published table (seed README): params (M) and MACs (G) at 224 unless noted, as printed there.
PAPER = {
    ('atto', 224): (4.2, 0.51), ('tiny', 224): (28, 4.2), ('small', 224): (49, 8.4),
    ('base', 224): (87, 14.9), ('base', 384): (87, 43.6),
    ('tiny_k7', 224): (29, 4.5),  # the table's convnext_tiny row (LayerNorm there, BN here)
    ('tiny_k5', 224): (29, 4.4), ('tiny_k3', 224): (28, 4.4), ('tiny_k3_par1_2', 224): (28, 4.4),
    ('tiny_k3_par3_8', 224): (28, 4.4), ('tiny_k3_par1_4', 224): (28, 4.4), ('tiny_k3_par1_8', 224): (28, 4.4),
    ('tiny_k3_par1_16', 224): (28, 4.4),
}

# Dense models as the paper's tables print them (params M, FLOPs G): UperNet at 2048x512.
PAPER_DENSE = {
    ('upernet_inceptionnext-t', 2048, 512): (56, 933), ('upernet_inceptionnext-s', 2048, 512): (78, 1020),
    ('upernet_inceptionnext-b', 2048, 512): (115, 1159),
}


def classifier(arch: str, num_classes: int = 1000) -> torch.nn.Module:
    from backbones import InceptionNeXt, MlpHead

    class _Net(torch.nn.Module):  # backbone + head, the network the paper's table counts
        def __init__(self):
            super().__init__()
            self.backbone = InceptionNeXt(arch, out_indices=(3,))
            self.head = MlpHead(self.backbone.dims[-1], num_classes, mlp_ratio=self.backbone.head_mlp_ratio)

        def forward(self, x):
            return self.head(self.backbone(x)[-1])

    return _Net().eval()


def count(model: torch.nn.Module, inputs) -> tuple:
    """(params, MACs) of ``model`` on ``inputs`` (a tensor or a tuple of positional args)."""
    inputs = inputs if isinstance(inputs, tuple) else (inputs,)
    with torch.no_grad():
        fa = FlopAnalyzer(model, inputs)
        fa.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        macs = fa.total()
    return parameter_count(model)[''], macs


def count_arch(arch: str, size: int = 224) -> tuple:
    return count(classifier(arch), torch.zeros(1, 3, size, size))


def paper_precision(value: float, printed: float) -> float:
    """Rounds ``value`` the way the table printed ``printed`` (same number of decimals)."""
    decimals = len(str(printed).split('.')[1]) if '.' in str(printed) else 0
    return round(value, decimals)


def count_config(path: str, width: int, height: int, options=None) -> tuple:
    """Params and MACs of a dense model built from a config, on one (3, height, width) image."""
    import importlib

    from mmengine.config import Config
    from mmengine.registry import MODELS, DefaultScope, init_default_scope
    cfg = Config.fromfile(path)
    if options:
        cfg.merge_from_dict(options)
    init_default_scope(cfg.get('default_scope', 'mmengine'))
    for m in cfg.get('custom_imports', {}).get('imports', []):
        importlib.import_module(m)
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope')):
        model = MODELS.build(cfg.model).eval()
    # Backbone + neck + head on a tensor: the part every dense model shares and that the papers count.
    x = torch.zeros(1, 3, height, width)
    return count(DenseTensorForward(model), x)


class DenseTensorForward(torch.nn.Module):
    """An mmdet / mmseg model as tensor in, raw head outputs out (its ``_forward``): what counters and
    timers run."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model._forward(x)


def main(argv=None):
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
        return
    rows = [(a, width) for a in args.arch] if args.arch else list(PAPER)
    print(f'{"model":<18}{"res":>5}{"params (M)":>12}{"MACs (G)":>10}{"paper":>16}')
    for arch, size in rows:
        params, macs = count_arch(arch, size)
        paper = PAPER.get((arch, size))
        ref = f'{paper[0]}M / {paper[1]}G' if paper else '-'
        print(f'{arch:<18}{size:>5}{params / 1e6:>12.2f}{macs / 1e9:>10.3f}{ref:>16}', flush=True)


if __name__ == '__main__':
    main()
