"""Params and MACs of InceptionNeXt classifiers, or of any mmdet / mmseg / train_cls config.

    python tools/analysis_tools/flops.py                              # the paper's classification table (+ ablations)
    python tools/analysis_tools/flops.py --arch tiny base --shape 384     # chosen variants / resolution
    python tools/analysis_tools/flops.py configs/upernet_inceptionnext_t.py --shape 2048 512   # a dense model (W H)

Counted with mmengine.analysis (the fvcore counter: one multiply-add = one "FLOP", as the paper's
"MACs" column; convolutions, linear layers and norms counted, element-wise ops not).
"""
import torch
from mmengine.analysis import FlopAnalyzer, parameter_count

# The published table (seed README): params (M) and MACs (G) at 224 unless noted, as printed there.
PAPER = {
    ('atto', 224): (4.2, 0.51), ('tiny', 224): (28, 4.2), ('small', 224): (49, 8.4),
    ('base', 224): (87, 14.9), ('base', 384): (87, 43.6),
    # The ablation table's rows: the released ConvNeXt-T networks (Meta's convnext_tiny and the InceptionNeXt
    # release's kernel-size / partial-conv variants), under their names.
    ('convnext_tiny', 224): (29, 4.5), ('convnext_tiny_k5', 224): (29, 4.4), ('convnext_tiny_k3', 224): (28, 4.4),
    ('convnext_tiny_k3_par1_2', 224): (28, 4.4), ('convnext_tiny_k3_par3_8', 224): (28, 4.4),
    ('convnext_tiny_k3_par1_4', 224): (28, 4.4), ('convnext_tiny_k3_par1_8', 224): (28, 4.4),
    ('convnext_tiny_k3_par1_16', 224): (28, 4.4),
}

# Dense models as the paper's tables print them (params M, FLOPs G): UperNet at 2048x512.
PAPER_DENSE = {
    ('upernet_inceptionnext-t', 2048, 512): (56, 933), ('upernet_inceptionnext-s', 2048, 512): (78, 1020),
    ('upernet_inceptionnext-b', 2048, 512): (115, 1159),
}


def count(model: torch.nn.Module, inputs) -> tuple:
    """(params, MACs) of ``model`` on ``inputs`` (a tensor or a tuple of positional args)."""
    inputs = inputs if isinstance(inputs, tuple) else (inputs,)
    with torch.no_grad():
        fa = FlopAnalyzer(model, inputs)
        fa.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        macs = fa.total()
    return parameter_count(model)[''], macs


def count_arch(arch: str, size: int = 224) -> tuple:
    from backbones.apis.build import classifier
    return count(classifier(arch), torch.zeros(1, 3, size, size))


def paper_precision(value: float, printed: float) -> float:
    """Rounds ``value`` the way the table printed ``printed`` (same number of decimals)."""
    decimals = len(str(printed).split('.')[1]) if '.' in str(printed) else 0
    return round(value, decimals)


def count_config(config, width: int, height: int, options=None) -> tuple:
    """Params and MACs of a dense model built from a config, on one (3, height, width) image."""
    from backbones.apis.build import build_model
    model = build_model(config, options)
    # Backbone + neck + head on a tensor: the part every dense model shares and that the papers count.
    return count(DenseTensorForward(model), torch.zeros(1, 3, height, width))


class DenseTensorForward(torch.nn.Module):
    """An mmdet / mmseg model as tensor in, raw head outputs out (its ``_forward``): what counters and
    timers run."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model._forward(x)
