"""The three small layers the model takes from timm's design, here so that ``import backbones`` does not
import timm (whose package import pulls in torchvision, ``torch._dynamo`` and ``torch.fx``: about half of
the start-up of a command; docs/benchmarks.md).

Each computes what timm's namesake computes, draw for draw: ``DropPath`` draws one Bernoulli value per
sample from the tensor's generator and scales the kept ones by 1 / keep (timm's ``drop_path`` with
``scale_by_keep``), ``LayerNorm2d`` is ``F.layer_norm`` over the channels of an (N, C, H, W) map, and
``trunc_normal_`` draws uniforms and maps them through the inverse normal CDF (timm's sampler; torch's own
``nn.init.trunc_normal_`` rejection-samples since 2.14, other numbers from the same seed). The tests compare
each with timm's on the same seed.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class DropPath(nn.Module):
    """Stochastic depth: in training, zeroes a residual branch for a random ``drop_prob`` share of the samples
    and scales the others by ``1 / (1 - drop_prob)``; the identity in eval mode or at ``drop_prob`` 0."""

    def __init__(self, drop_prob: float = 0., scale_by_keep: bool = True):
        super().__init__()
        self.drop_prob = drop_prob
        self.scale_by_keep = scale_by_keep

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0. or not self.training:
            return x
        keep = 1 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        if keep > 0. and self.scale_by_keep:
            mask.div_(keep)
        return x * mask

    def extra_repr(self) -> str:
        return f'drop_prob={round(self.drop_prob, 3):0.3f}'


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an (N, C, H, W) map (``eps`` 1e-6 by default)."""

    def __init__(self, num_channels: int, eps: float = 1e-6, affine: bool = True, **kwargs):
        super().__init__(num_channels, eps=eps, elementwise_affine=affine, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


def trunc_normal_(tensor: torch.Tensor, mean: float = 0., std: float = 1., a: float = -2., b: float = 2.):
    """Fills ``tensor`` in place from N(mean, std^2) truncated to [a, b] (absolute bounds): uniform draws
    between the bounds' CDF values, mapped through the inverse CDF."""
    def cdf(v: float) -> float:
        return (1. + math.erf((v - mean) / std / math.sqrt(2.))) / 2.

    with torch.no_grad():
        tensor.uniform_(2 * cdf(a) - 1, 2 * cdf(b) - 1)  # in erf's range: erfinv gives N(0, 1) / sqrt 2
        tensor.erfinv_().mul_(std * math.sqrt(2.)).add_(mean)
        return tensor.clamp_(min=a, max=b)
