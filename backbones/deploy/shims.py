"""Export shims: modules that export with the bins / sizes of the runtime input, swapped in for the ones
that export with the traced size.

Dynamic export (batch, height and width symbolic) works for any H, W >= 32 (the backbone's stride), not
only multiples of 32. mmseg's PPM (UperNet) pools with ``nn.AdaptiveAvgPool2d((1, 2, 3, 6))``, which
exports with the bins of the traced size (wrong, or an ONNX Runtime error, at other sizes);
``prepare_for_export`` swaps those modules (in the model being exported only) for
``ExportableAdaptiveAvgPool2d``: the same bins, averaged from cumulative sums at indices computed from the
runtime size. Semantic FPN's scale-factor ``Upsample`` gets the same treatment (``ExportableUpsample``).
"""
from fractions import Fraction
from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F


def adaptive_bins(size, bins: int, device=None) -> Tuple[torch.Tensor, torch.Tensor]:
    """(start, end) of the ``bins`` adaptive-pooling windows over ``size``: [floor(i*size/bins),
    ceil((i+1)*size/bins)), as ``F.adaptive_avg_pool*d``. ``size`` may be a symbolic int (export)."""
    i = torch.arange(bins, device=device)
    start = torch.div(i * size, bins, rounding_mode='floor')
    end = torch.div((i + 1) * size + bins - 1, bins, rounding_mode='floor')
    return start, end


def adaptive_mean(x: torch.Tensor, dim: int, bins: int) -> torch.Tensor:
    """Adaptive average over one dim (size -> ``bins``) as differences of a cumulative sum taken at the
    windows' ends: cumsum, two index_selects and a division, no shape-dependent branch."""
    start, end = adaptive_bins(x.shape[dim], bins, x.device)
    cs = torch.cat((torch.zeros_like(x.narrow(dim, 0, 1)), x.cumsum(dim)), dim)  # cs[k] = sum of x[:k]
    shape = [1] * x.dim()
    shape[dim] = bins
    return (cs.index_select(dim, end) - cs.index_select(dim, start)) / (end - start).to(x.dtype).view(shape)


class ExportableAdaptiveAvgPool2d(nn.Module):
    """``nn.AdaptiveAvgPool2d`` for any input size under ``torch.export``: (N, C, H, W) -> (N, C, oh, ow).

    The same windows as torch's kernel, averaged from cumulative sums (``adaptive_mean``) whose indices are
    computed from the input's size at run time, so the exported graph takes any size. Same values to
    float rounding (the sums run in another order: ~1e-7 relative in float32).
    """

    def __init__(self, output_size):
        super().__init__()
        self.output_size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        oh, ow = self.output_size
        if oh is not None:
            x = adaptive_mean(x, -2, oh)
        return adaptive_mean(x, -1, ow) if ow is not None else x

    def extra_repr(self) -> str:
        return f'output_size={self.output_size}'


class ExportableUpsample(nn.Module):
    """mmseg's ``Upsample`` by a scale factor with the output size kept symbolic: (N, C, H, W) ->
    (N, C, floor(H * s), floor(W * s)). mmseg computes ``int(H * s)`` in Python, which pins H to the example's
    size under ``torch.export``; here an integral factor multiplies the size, any other is an exact fraction.
    """

    def __init__(self, scale_factor, mode: str = 'nearest', align_corners=None):
        super().__init__()
        factors = scale_factor if isinstance(scale_factor, tuple) else (scale_factor, scale_factor)
        self.factors = tuple(Fraction(float(f)) for f in factors)
        self.mode, self.align_corners = mode, align_corners

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = [d * f.numerator // f.denominator for d, f in zip(x.shape[-2:], self.factors)]
        return F.interpolate(x, size, mode=self.mode, align_corners=self.align_corners)

    def extra_repr(self) -> str:
        return f'factors={tuple(str(f) for f in self.factors)}, mode={self.mode}'


def _swap(module: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, attr = name.rpartition('.')
    setattr(module.get_submodule(parent) if parent else module, attr, new)


def replace_adaptive_pools(module: nn.Module) -> int:
    """Swaps every ``nn.AdaptiveAvgPool2d`` in ``module`` (in place) for ``ExportableAdaptiveAvgPool2d``;
    returns how many."""
    swaps = [(name, m) for name, m in module.named_modules() if isinstance(m, nn.AdaptiveAvgPool2d)]
    for name, m in swaps:
        _swap(module, name, ExportableAdaptiveAvgPool2d(m.output_size))
    return len(swaps)


def replace_upsamples(module: nn.Module) -> int:
    """Swaps every mmseg ``Upsample`` with a scale factor (Semantic FPN's head) for ``ExportableUpsample``."""
    try:
        from mmseg.models.utils import Upsample
    except ImportError:
        return 0
    swaps = [(name, m) for name, m in module.named_modules() if isinstance(m, Upsample) and not m.size]
    for name, m in swaps:
        _swap(module, name, ExportableUpsample(m.scale_factor, m.mode, m.align_corners))
    return len(swaps)


def prepare_for_export(module: nn.Module, deploy: bool = False) -> nn.Module:
    """In place: eval mode, SyncBN reverted to BN, adaptive pools and mmseg's scale-factor upsamplings swapped
    for forms that keep sizes symbolic, and every InceptionNeXt on its
    plain ops (``deploy``: folded first). The oneDNN kernels of the deploy form are not ONNX ops, and its
    sub-batching reads the batch size, which would pin a dynamic batch."""
    from mmengine.model import revert_sync_batchnorm

    from backbones.models.inceptionnext import InceptionNeXt
    module = revert_sync_batchnorm(module)
    replace_adaptive_pools(module)
    replace_upsamples(module)
    for m in module.modules():
        if isinstance(m, InceptionNeXt) and (deploy or m.deploy):
            m.switch_to_deploy(cpu_kernels=False)
    return module.eval()
