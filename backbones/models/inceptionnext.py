"""InceptionNeXt (MetaNeXt with an Inception depthwise token mixer) as a multi-scale backbone.

`When Inception Meets ConvNeXt` (Yu et al., CVPR 2024). Built bottom-up: token mixers, MLP, block,
stage, backbone; the classification head (`MlpHead`) is separate, dense tasks take the stage maps.

One MetaNeXt implementation, configured per arch: the token mixer (Inception / plain or partial
depthwise), the norms and the MLP form. InceptionNeXt: BatchNorm and a 1x1-conv MLP on channels-first
maps. The paper's ConvNeXt ablation rows (``convnext_tiny`` ... ``convnext_tiny_k3_par1_16``, the released
networks): LayerNorm (channels-first in the stem and downsamples, over the channels-last features in the
blocks) and ConvNeXt's Linear MLP on channels-last features (the permute form).

Shapes for an input of (N, 3, H, W): the stem gives stride 4, stages 1..3 each halve it, so the four
outputs are (N, dims[i], H // 4 // 2**i, W // 4 // 2**i) (floor division at every step, as the
strided convolutions do); H and W must be at least 32 when the last stage is used.
"""
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmcv.cnn import build_activation_layer, build_norm_layer
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmengine.registry import MODELS
from torch.nn.modules.batchnorm import _BatchNorm

from backbones.models.layers import DropPath, trunc_normal_
from backbones.models.layers import LayerNorm2d as BaseLayerNorm2d
from backbones.models.ops import fast_block, onednn
from backbones.models.weights import (
    LAYOUTS,
    OTHER_LAYOUTS,
    StateDict,
    classifier_state_dict,
    describe_weights,
    extract_backbone,
    identify,
    load_strict,
)
from backbones.utils.errors import BadValueError, CheckpointError


# --------------------------------------------------------------------------------------------------
# Token mixers: (N, C, H, W) -> (N, C, H, W)
# --------------------------------------------------------------------------------------------------
class InceptionDWConv2d(nn.Module):
    """Inception depthwise conv: channels split into identity | kxk square | 1xb band | bx1 band.

    Each conv branch gets ``int(dim * branch_ratio)`` channels, the identity branch the rest
    (5/8 of them at the default ratio 1/8), so most channels pass through untouched.
    """

    def __init__(self, dim: int, square_kernel_size: int = 3, band_kernel_size: int = 11,
                 branch_ratio: float = 0.125):
        super().__init__()
        gc = int(dim * branch_ratio)
        if gc < 1:
            raise BadValueError(f'InceptionDWConv2d: dim={dim} x branch_ratio={branch_ratio} leaves no channel '
                                'for the conv branches')
        self.dwconv_hw = nn.Conv2d(gc, gc, square_kernel_size, padding=square_kernel_size // 2, groups=gc)
        self.dwconv_w = nn.Conv2d(gc, gc, (1, band_kernel_size), padding=(0, band_kernel_size // 2), groups=gc)
        self.dwconv_h = nn.Conv2d(gc, gc, (band_kernel_size, 1), padding=(band_kernel_size // 2, 0), groups=gc)
        self.split_sizes = (dim - 3 * gc, gc, gc, gc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_id, x_hw, x_w, x_h = torch.split(x, self.split_sizes, dim=1)
        return torch.cat((x_id, self.dwconv_hw(x_hw), self.dwconv_w(x_w), self.dwconv_h(x_h)), dim=1)


class PartialDWConv2d(nn.Module):
    """Depthwise kxk conv on ``int(dim * ratio)`` of the channels, identity on the rest.

    ``position='last'`` (the released ConvNeXt ablations' ``PartialConv2d``): the channels split into
    identity | conv, concatenated in that order; ``'first'``: conv | identity (the ``metanext_bn_tiny_k3_par*``
    variants). ``ratio=1`` is the plain depthwise conv (ConvNeXt's, ``k7`` / ``k5`` / ``k3``); the parameters are
    ``dwconv.{weight,bias}`` either way.
    """

    def __init__(self, dim: int, kernel_size: int = 7, ratio: float = 1.0, position: str = 'last'):
        super().__init__()
        self.conv_channels = int(dim * ratio)
        if not 1 <= self.conv_channels <= dim:
            raise BadValueError(f'PartialDWConv2d: ratio={ratio} gives {self.conv_channels} of {dim} channels')
        if position not in ('first', 'last'):
            raise BadValueError(f"PartialDWConv2d: position must be 'first' or 'last', got {position!r}")
        self.position = position
        c = self.conv_channels
        self.dwconv = nn.Conv2d(c, c, kernel_size, padding=kernel_size // 2, groups=c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, rest = self.conv_channels, x.shape[1] - self.conv_channels
        if rest == 0:
            return self.dwconv(x)
        if self.position == 'last':
            x_id, x_conv = torch.split(x, (rest, c), dim=1)
            return torch.cat((x_id, self.dwconv(x_conv)), dim=1)
        x_conv, x_id = torch.split(x, (c, rest), dim=1)
        return torch.cat((self.dwconv(x_conv), x_id), dim=1)


TOKEN_MIXERS = {'InceptionDWConv2d': InceptionDWConv2d, 'PartialDWConv2d': PartialDWConv2d}


def build_token_mixer(cfg: dict, dim: int) -> nn.Module:
    cfg = dict(cfg)
    name = cfg.pop('type')
    if name not in TOKEN_MIXERS:
        raise BadValueError(f'unknown token mixer {name!r}; known: {sorted(TOKEN_MIXERS)}')
    return TOKEN_MIXERS[name](dim, **cfg)


# --------------------------------------------------------------------------------------------------
# Block parts
# --------------------------------------------------------------------------------------------------
class ConvMlp(nn.Module):
    """1x1 conv -> act -> 1x1 conv on channels-first maps (N, C, H, W), keeping the spatial dims."""

    channels_last = False

    def __init__(self, dim: int, hidden: int, act_cfg: dict):
        super().__init__()
        self.hidden_features = hidden
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.act = build_activation_layer(act_cfg)
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor, scale: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``scale`` (one per output channel, a layer scale) multiplies the output. It is applied to fc2's
        weight and bias (dim x hidden numbers) rather than to the map: the same function with one
        elementwise pass over the map fewer each way. Under autocast the result gets the (fp32) dtype
        that scaling the map would give, as timm's blocks have it (a no-op otherwise)."""
        h = self.act(self.fc1(x))
        if scale is None:
            return self.fc2(h)
        y = F.conv2d(h, self.fc2.weight * scale.view(-1, 1, 1, 1), self.fc2.bias * scale)
        return y.to(torch.promote_types(y.dtype, scale.dtype))

    @torch.no_grad()
    def fold_scale(self, scale: torch.Tensor) -> None:
        self.fc2.weight.mul_(scale.view(-1, 1, 1, 1))
        self.fc2.bias.mul_(scale)


class LinearMlp(nn.Module):
    """Linear -> act -> Linear on channels-last features (N, H, W, C): ConvNeXt's MLP (``pwconv1/2``).

    The same function as ``ConvMlp`` in the other memory layout; ``scale`` as there."""

    channels_last = True

    def __init__(self, dim: int, hidden: int, act_cfg: dict):
        super().__init__()
        self.hidden_features = hidden
        self.fc1 = nn.Linear(dim, hidden)
        self.act = build_activation_layer(act_cfg)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, scale: Optional[torch.Tensor] = None) -> torch.Tensor:
        h = self.act(self.fc1(x))
        if scale is None:
            return self.fc2(h)
        y = F.linear(h, self.fc2.weight * scale.view(-1, 1), self.fc2.bias * scale)
        return y.to(torch.promote_types(y.dtype, scale.dtype))

    @torch.no_grad()
    def fold_scale(self, scale: torch.Tensor) -> None:
        self.fc2.weight.mul_(scale.view(-1, 1))
        self.fc2.bias.mul_(scale)


MLP_FORMS = {'conv': ConvMlp, 'linear': LinearMlp}


class MetaNeXtBlock(nn.Module):
    """x + drop_path(gamma * mlp(norm(token_mixer(x)))): one shortcut per block.

    ``mlp_form='conv'`` (InceptionNeXt): norm and a 1x1-conv MLP on the channels-first map.
    ``mlp_form='linear'`` (ConvNeXt): the mixer's output is permuted to (N, H, W, C), normed over the
    channels (``norm_cfg`` a channels-last norm, LayerNorm), run through the Linear MLP and scaled, then
    permuted back. The block's input and output are (N, C, H, W) either way.

    Kernels (``backbones.models.ops``) are chosen here, by two flags their ``install`` functions set:
    ``fast_mode`` (the fast form of ``ops.fast_block``, where its ``plan`` applies) and ``post_op`` (the
    deploy form's oneDNN ops on CPU, where ``ops.onednn.applies``). Either way the plain forward is the
    reference and the fallback.
    """

    fast_mode: Optional[str] = None
    post_op: Optional[tuple] = None

    def __init__(self, dim: int, token_mixer: dict, mlp_ratio: float, norm_cfg: dict, act_cfg: dict,
                 layer_scale_init_value: float = 1e-6, drop_path: float = 0., mlp_form: str = 'conv'):
        super().__init__()
        if mlp_form not in MLP_FORMS:
            raise BadValueError(f'mlp_form must be one of {sorted(MLP_FORMS)}, got {mlp_form!r}')
        self.token_mixer = build_token_mixer(token_mixer, dim)
        self.norm = build_norm_layer(norm_cfg, dim)[1]
        if mlp_form == 'linear' and isinstance(self.norm, (_BatchNorm, BaseLayerNorm2d)):
            raise BadValueError(f"mlp_form='linear' norms channels-last features: norm_cfg must be a channels-last "
                                f"norm such as dict(type='LN', eps=1e-6), got {norm_cfg}")
        self.mlp = MLP_FORMS[mlp_form](dim, int(mlp_ratio * dim), act_cfg)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale_init_value)) if layer_scale_init_value else None
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.post_op is not None and onednn.applies(x):
            return onednn.block_forward(self, x)
        if self.fast_mode is not None:
            how = fast_block.plan(self, x)
            if how is not None:
                return fast_block.fast_forward(self, x, how)
        return self.forward_plain(x)

    def forward_plain(self, x: torch.Tensor) -> torch.Tensor:
        y = self.token_mixer(x)
        if self.mlp.channels_last:
            y = self.mlp(self.norm(y.permute(0, 2, 3, 1)), self.gamma).permute(0, 3, 1, 2)
        else:
            y = self.mlp(self.norm(y), self.gamma)
        y = self.drop_path(y)
        if y.dtype != torch.promote_types(x.dtype, y.dtype):
            return x + y
        return y.add_(x)  # in place: neither fc2 nor DropPath keeps its output for backward

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        """Folds a BN into mlp.fc1 and the layer scale into mlp.fc2 (exact in eval mode).

        A LayerNorm normalises with the statistics of each position, so it stays (ConvNeXt blocks get
        only the layer scale folded)."""
        if isinstance(self.norm, _BatchNorm):
            scale, shift = _bn_affine(self.norm)
            fc1 = self.mlp.fc1
            fc1.bias.add_(fc1.weight.sum((2, 3)) @ shift)
            fc1.weight.mul_(scale.view(1, -1, 1, 1))
            self.norm = nn.Identity()
        if self.gamma is not None:
            self.mlp.fold_scale(self.gamma)
            self.gamma = None


class Stem(nn.Sequential):
    """4x4 stride-4 patchify conv + norm: (N, C_in, H, W) -> (N, dim, H//4, W//4).

    ``cpu_channels_last`` (set by ``ops.onednn.install``): the input goes channels-last, oneDNN's layout,
    where the deploy form's CPU kernels apply."""

    cpu_channels_last = False

    def __init__(self, in_channels: int, dim: int, norm_cfg: dict):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, dim, kernel_size=4, stride=4)
        self.norm = build_norm_layer(norm_cfg, dim)[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.cpu_channels_last and onednn.applies(x):
            x = x.contiguous(memory_format=torch.channels_last)
        return super().forward(x)

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        """Folds the BN after the conv into the conv."""
        if isinstance(self.norm, _BatchNorm):
            scale, shift = _bn_affine(self.norm)
            self.conv.bias.mul_(scale).add_(shift)
            self.conv.weight.mul_(scale.view(-1, 1, 1, 1))
            self.norm = nn.Identity()


class Downsample(nn.Sequential):
    """norm + 2x2 stride-2 conv: (N, C, H, W) -> (N, C', H//2, W//2)."""

    def __init__(self, in_dim: int, out_dim: int, norm_cfg: dict):
        super().__init__()
        self.norm = build_norm_layer(norm_cfg, in_dim)[1]
        self.conv = nn.Conv2d(in_dim, out_dim, kernel_size=2, stride=2)

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        """Folds the BN before the conv into the conv (exact: the conv has no padding)."""
        if isinstance(self.norm, _BatchNorm):
            scale, shift = _bn_affine(self.norm)
            self.conv.bias.add_(self.conv.weight.sum((2, 3)) @ shift)
            self.conv.weight.mul_(scale.view(1, -1, 1, 1))
            self.norm = nn.Identity()


class MetaNeXtStage(nn.Module):
    """Optional downsample, then ``depth`` blocks; ``with_cp`` recomputes each block in backward.

    ``downsample_norm_cfg``: the downsample's norm (a channels-first one), by default the blocks' ``norm_cfg``.
    ``chunk_bytes`` (set by ``ops.onednn.install``): the deploy form's CPU sub-batch size.
    """

    chunk_bytes = 0

    def __init__(self, in_dim: int, dim: int, depth: int, downsample: bool, drop_paths: Sequence[float],
                 with_cp: bool = False, downsample_norm_cfg: Optional[dict] = None, **block_kwargs):
        super().__init__()
        self.downsample = (Downsample(in_dim, dim, downsample_norm_cfg or block_kwargs['norm_cfg'])
                           if downsample else nn.Identity())
        self.blocks = nn.Sequential(*[MetaNeXtBlock(dim, drop_path=drop_paths[i], **block_kwargs)
                                      for i in range(depth)])
        self.with_cp = with_cp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        if self.chunk_bytes and onednn.applies(x):
            return onednn.chunked_blocks(self, x)
        return self.forward_blocks(x)

    def forward_blocks(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            if self.with_cp and x.requires_grad:
                x = cp.checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return x


class MlpHead(nn.Module):
    """Classification head: global average pool -> fc (C -> ratio*C) -> GELU -> LayerNorm -> fc.

    (N, C, H, W) -> (N, num_classes). The hidden width ``mlp_ratio * C`` takes the parameters that
    stage 4's smaller MLP ratio (3 instead of 4) saved. ``mlp_ratio=0`` gives ConvNeXt's head
    (pool -> LayerNorm -> fc), which the paper's MetaNeXt ablation rows use.
    """

    def __init__(self, in_channels: int, num_classes: int = 1000, mlp_ratio: float = 3,
                 drop_rate: float = 0., norm_eps: float = 1e-6):
        super().__init__()
        hidden = int(mlp_ratio * in_channels) or in_channels
        self.fc1 = nn.Linear(in_channels, hidden) if mlp_ratio else nn.Identity()
        self.act = nn.GELU() if mlp_ratio else nn.Identity()
        self.norm = nn.LayerNorm(hidden, eps=norm_eps)
        self.drop = nn.Dropout(drop_rate)
        self.fc2 = nn.Linear(hidden, num_classes)
        self.apply(_init_weights)

    def pre_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.norm(self.act(self.fc1(F.adaptive_avg_pool2d(x, 1).flatten(1)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.pre_logits(x))


@MODELS.register_module('ChannelsFirstLN')
class LayerNorm2d(BaseLayerNorm2d):
    """LayerNorm over the channels of a (N, C, H, W) map (ConvNeXt's ``channels_first`` LayerNorm; timm's
    ``LayerNorm2d``). Registered for mmcv's ``build_norm_layer`` as ``ChannelsFirstLN`` in MMEngine's root
    registry (not ``LN2d``, mmpretrain's name for its own): ``norm_cfg=dict(type='ChannelsFirstLN', eps=1e-6)``."""


def _bn_affine(bn: _BatchNorm) -> Tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode BN as y = x * scale + shift (per channel)."""
    scale = bn.running_var.add(bn.eps).rsqrt()
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    return scale, shift


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, (nn.Conv2d, nn.Linear)):
        trunc_normal_(m.weight, std=.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


# --------------------------------------------------------------------------------------------------
# The backbone
# --------------------------------------------------------------------------------------------------
def _inception(band: int = 11, branch_ratio: float = 0.125) -> dict:
    return dict(type='InceptionDWConv2d', square_kernel_size=3, band_kernel_size=band, branch_ratio=branch_ratio)


def _dwconv(kernel_size: int, ratio: float = 1.0, position: str = 'last') -> dict:
    return dict(type='PartialDWConv2d', kernel_size=kernel_size, ratio=ratio, position=position)


_T = dict(depths=(3, 3, 9, 3), dims=(96, 192, 384, 768))
_LN = dict(type='LN', eps=1e-6)  # nn.LayerNorm: over the channels of channels-last features
_LN_CF = dict(type='ChannelsFirstLN', eps=1e-6)  # over the channels of a (N, C, H, W) map
# The seed's ablation table is a family of released networks: ConvNeXt-T (Meta's) and the InceptionNeXt
# authors' ConvNeXt-T with a 5x5 / 3x3 depthwise conv, or a 3x3 one on the last int(C * r) channels (par<r>).
# ConvNeXt: LayerNorm (channels-first in the stem and downsamples, channels-last in the blocks), the Linear
# MLP on channels-last features, MLP ratio 4 in every stage, its head (pool -> LayerNorm -> Linear:
# head_mlp_ratio 0). These arches fix their norms (norm_cfg in the arch): a BN norm_cfg is an error.
_CONVNEXT_T = dict(**_T, mlp_ratios=(4, 4, 4, 4), head_mlp_ratio=0, mlp_form='linear', norm_cfg=_LN_CF,
                   block_norm_cfg=_LN)
# The same sizes as MetaNeXt proper (BN, 1x1-conv MLP, partial conv on the *first* channels): the variants
# this repo had under the ablation names before. No released weights; kept for the CPU speed comparison.
_METANEXT_BN_T = dict(**_T, mlp_ratios=(4, 4, 4, 4), head_mlp_ratio=0)
_PARTIAL_RATIOS = {'par1_2': 1 / 2, 'par3_8': 3 / 8, 'par1_4': 1 / 4, 'par1_8': 1 / 8, 'par1_16': 1 / 16}
CONVNEXT_ABLATIONS = ('convnext_tiny', 'convnext_tiny_k5', 'convnext_tiny_k3',
                      *(f'convnext_tiny_k3_{p}' for p in _PARTIAL_RATIOS))


def _ablation_settings() -> Dict[str, dict]:
    out = {'convnext_tiny': dict(**_CONVNEXT_T, token_mixer=_dwconv(7))}
    for k in (5, 3):
        out[f'convnext_tiny_k{k}'] = dict(**_CONVNEXT_T, token_mixer=_dwconv(k))
    for p, r in _PARTIAL_RATIOS.items():
        out[f'convnext_tiny_k3_{p}'] = dict(**_CONVNEXT_T, token_mixer=_dwconv(3, r))
    for k in (7, 5, 3):
        out[f'metanext_bn_tiny_k{k}'] = dict(**_METANEXT_BN_T, token_mixer=_dwconv(k))
    for p, r in _PARTIAL_RATIOS.items():
        out[f'metanext_bn_tiny_k3_{p}'] = dict(**_METANEXT_BN_T, token_mixer=_dwconv(3, r, 'first'))
    return out


@MODELS.register_module()
class InceptionNeXt(BaseModule):
    """InceptionNeXt backbone (MetaNeXt); ``forward`` returns a tuple of the ``out_indices`` stage maps.

    Args:
        arch: a name in ``arch_settings`` or a dict with ``depths``, ``dims`` and optionally ``token_mixer``,
            ``mlp_ratios``, ``head_mlp_ratio`` (the classifier head's, see ``MlpHead``), ``mlp_form``
            (``'conv'``: 1x1-conv MLP on channels-first maps; ``'linear'``: ConvNeXt's Linear MLP on
            channels-last features), ``norm_cfg`` (fixes the stem / downsample / output norm) and
            ``block_norm_cfg`` (the blocks' norm, in the MLP's layout; default: ``norm_cfg``).
            Names: InceptionNeXt ``atto``, ``tiny`` (``t``), ``small`` (``s``), ``base`` (``b``); the paper's
            ConvNeXt ablations as released, ``convnext_tiny``, ``convnext_tiny_k5``, ``convnext_tiny_k3``,
            ``convnext_tiny_k3_par{1_2,3_8,1_4,1_8,1_16}``; ``metanext_bn_tiny_k*``: the same sizes with BN
            and 1x1 convs (no released weights).
        in_channels: input image channels.
        mlp_ratios: MLP expansion per stage (default: the arch's, (4, 4, 4, 3) for InceptionNeXt).
        drop_path_rate: stochastic depth, rising linearly over all blocks from 0 to this value.
        layer_scale_init_value: initial layer scale (0 disables it).
        out_indices: stages whose output is returned (0..3 -> strides 4, 8, 16, 32).
        out_norm: add a norm (``norm_cfg``) on each returned map, as dense heads want.
        frozen_stages: -1 trains all; 0 freezes the stem; k > 0 the stem and stages 0..k-1.
        norm_eval: keep the BatchNorm layers in eval mode while training.
        norm_cfg: mmcv norm config of the stem, downsamples and output norms (and of the blocks, unless the
            arch has a ``block_norm_cfg``); ``None``: the arch's (BN; ``SyncBN`` for multi-GPU dense runs).
            Arches that fix their norm (the ConvNeXt rows: ``ChannelsFirstLN``) accept only that type.
        act_cfg: mmcv activation config.
        with_cp: gradient checkpointing per block (less memory, more compute).
        deploy: build the folded inference form (see ``switch_to_deploy``), e.g. to load its state dict.
        fast_path: 'auto' | True | False, the blocks' fast forms (``set_fast_path``).
        init_cfg: e.g. ``dict(type='Pretrained', checkpoint='x.pth', prefix='backbone.')``; the file may
            be ours, a classifier checkpoint of ``train_cls``, or an official / timm checkpoint of
            InceptionNeXt or ConvNeXt (converted on the fly). Unlike mmengine's loader, mismatched keys and
            shapes raise.
    """

    arch_settings: Dict[str, dict] = {
        'atto': dict(depths=(2, 2, 6, 2), dims=(40, 80, 160, 320), token_mixer=_inception(9, 0.25)),
        'tiny': dict(**_T, token_mixer=_inception()),
        'small': dict(depths=(3, 3, 27, 3), dims=(96, 192, 384, 768), token_mixer=_inception()),
        'base': dict(depths=(3, 3, 27, 3), dims=(128, 256, 512, 1024), token_mixer=_inception()),
        **_ablation_settings(),
    }
    arch_aliases = {'t': 'tiny', 's': 'small', 'b': 'base'}
    _DEFAULTS = dict(token_mixer=_inception(), mlp_ratios=(4, 4, 4, 3), head_mlp_ratio=3, mlp_form='conv',
                     norm_cfg=dict(type='BN', requires_grad=True), block_norm_cfg=None)
    num_stages = 4

    def __init__(self,
                 arch: Union[str, dict] = 'tiny',
                 in_channels: int = 3,
                 mlp_ratios: Optional[Sequence[float]] = None,
                 drop_path_rate: float = 0.,
                 layer_scale_init_value: float = 1e-6,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 out_norm: bool = False,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 norm_cfg: Optional[dict] = None,
                 act_cfg: dict = dict(type='GELU'),
                 with_cp: bool = False,
                 deploy: bool = False,
                 fast_path: Union[str, bool] = 'auto',
                 init_cfg: Optional[Union[dict, List[dict]]] = None):
        super().__init__(init_cfg=init_cfg)
        self.arch = self.resolve_arch(arch)
        self.arch_name = arch if isinstance(arch, str) else None
        depths, dims = self.arch['depths'], self.arch['dims']
        mlp_ratios = tuple(mlp_ratios or self.arch['mlp_ratios'])
        self.head_mlp_ratio = self.arch['head_mlp_ratio']  # for the classifiers built on this backbone
        if isinstance(out_indices, int):
            out_indices = (out_indices,)
        bad = [i for i in out_indices if not -self.num_stages <= i < self.num_stages]
        if bad or not out_indices:
            raise BadValueError(f'out_indices {tuple(out_indices)} out of range: use stage ids 0..3 '
                                '(strides 4, 8, 16, 32)')
        self.out_indices = tuple(sorted(i % self.num_stages for i in out_indices))
        if not -1 <= frozen_stages <= self.num_stages:
            raise BadValueError(f'frozen_stages={frozen_stages} out of range: -1 (none), 0 (stem) .. 4 (all)')
        if isinstance(drop_path_rate, bool) or not isinstance(drop_path_rate, (int, float)) \
                or not 0 <= drop_path_rate < 1:
            raise BadValueError(f'drop_path_rate={drop_path_rate!r} out of range: a probability in [0, 1) '
                                '(0 turns stochastic depth off; the recipes use 0.1-0.4)')
        if len(mlp_ratios) != self.num_stages:
            raise BadValueError(f'mlp_ratios needs {self.num_stages} values, got {tuple(mlp_ratios)}')
        self.in_channels = in_channels
        self.dims = tuple(dims)
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        norm_cfg = self._norm_cfg(arch, norm_cfg)
        block_norm_cfg = self.arch['block_norm_cfg'] or norm_cfg

        self.stem = Stem(in_channels, dims[0], norm_cfg)
        rates = torch.linspace(0, drop_path_rate, sum(depths), device='cpu').tolist()  # (also under a meta device)
        self.stages = nn.ModuleList()
        for i in range(self.num_stages):
            start = sum(depths[:i])
            self.stages.append(MetaNeXtStage(
                dims[i - 1] if i else dims[0], dims[i], depths[i], downsample=i > 0,
                drop_paths=rates[start:start + depths[i]], with_cp=with_cp,
                downsample_norm_cfg=norm_cfg, token_mixer=self.arch['token_mixer'], mlp_ratio=mlp_ratios[i],
                norm_cfg=block_norm_cfg, mlp_form=self.arch['mlp_form'], act_cfg=act_cfg,
                layer_scale_init_value=layer_scale_init_value))
        # One norm per returned map (named ``out_norms.<stage>``), what dense heads were tuned with.
        self.out_norms = nn.ModuleDict({str(i): build_norm_layer(norm_cfg, dims[i])[1]
                                        for i in self.out_indices}) if out_norm else None
        self.feature_info = [dict(num_chs=dims[i], reduction=4 * 2 ** i, module=f'stages.{i}')
                             for i in range(self.num_stages)]
        self.apply(_init_weights)
        self._freeze_stages()
        self.deploy = self.cpu_kernels = False
        self.set_fast_path(fast_path)
        if deploy:
            self.switch_to_deploy()

    @classmethod
    def resolve_arch(cls, arch: Union[str, dict]) -> dict:
        """The full arch dict of a name in ``arch_settings`` (or an alias) or a custom dict; ValueError if unknown."""
        if isinstance(arch, str):
            name = cls.arch_aliases.get(arch.lower(), arch.lower())
            if name not in cls.arch_settings:
                hint, seed_row = '', 'convnext_tiny' if name == 'tiny_k7' else f'convnext_{name}'
                if seed_row in cls.arch_settings:  # 'tiny_k3' etc.: the ablation rows' BN variants' short names
                    hint = (f"; the paper's ablation rows are the released ConvNeXt networks, named as released: "
                            f'{seed_row}; with BN and 1x1 convs: metanext_bn_{name}')
                raise BadValueError(f'unknown InceptionNeXt arch {arch!r}; known: '
                                    f'{", ".join(cls.arch_settings)} (or a dict with depths, dims, token_mixer){hint}')
            return {**cls._DEFAULTS, **cls.arch_settings[name]}
        missing = {'depths', 'dims'} - set(arch)
        if missing or len(arch['depths']) != cls.num_stages or len(arch['dims']) != cls.num_stages:
            raise BadValueError(f'a custom arch needs 4 depths and 4 dims, got {arch}')
        return {**cls._DEFAULTS, **arch}

    @classmethod
    def _norm_cfg(cls, arch: Union[str, dict], norm_cfg: Optional[dict]) -> dict:
        """``norm_cfg`` or the arch's; an arch that fixes its norm (``norm_cfg`` in its settings) takes only
        that type, so that nothing built under a released network's name computes another one."""
        own = cls.resolve_arch(arch)['norm_cfg']
        fixed = 'norm_cfg' in (arch if isinstance(arch, dict)
                               else cls.arch_settings[cls.arch_aliases.get(arch.lower(), arch.lower())])
        if norm_cfg is None:
            return dict(own)
        if fixed and norm_cfg.get('type') != own['type']:
            raise BadValueError(f'arch {arch if isinstance(arch, str) else "(dict)"} is normed with {own} (as '
                                f'released); norm_cfg={dict(norm_cfg)} would build another network: leave norm_cfg '
                                f'unset (None) or give type {own["type"]!r}')
        return dict(norm_cfg)

    # ----------------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """(N, in_channels, H, W) -> tuple of (N, dims[i], H / 2**(i+2), W / 2**(i+2)) for i in out_indices."""
        self._check_input(x)
        x = self.stem(x)
        outs = []
        for i, stage in enumerate(self.stages[:self.out_indices[-1] + 1]):
            x = stage(x)
            if i in self.out_indices:
                outs.append(self.out_norms[str(i)](x) if self.out_norms is not None else x)
        return tuple(outs)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise BadValueError(f'InceptionNeXt expects (N, {self.in_channels}, H, W) input, got {tuple(x.shape)}')
        need = 4 * 2 ** self.out_indices[-1]
        if x.shape[2] < need or x.shape[3] < need:
            raise BadValueError(f'input {tuple(x.shape[2:])} is too small: stage {self.out_indices[-1]} has '
                                f'stride {need}, so H and W must be at least {need}')

    # ----------------------------------------------------------------------------------------------
    def _freeze_stages(self) -> None:
        frozen = ([self.stem] if self.frozen_stages >= 0 else []) + list(self.stages[:max(self.frozen_stages, 0)])
        if self.out_norms is not None:
            frozen += [self.out_norms[str(i)] for i in range(max(self.frozen_stages, 0)) if str(i) in self.out_norms]
        for m in frozen:
            m.eval()
            for p in m.parameters():
                p.requires_grad = False

    def train(self, mode: bool = True):
        if mode and getattr(self, 'deploy', False):
            raise RuntimeError('a deployed InceptionNeXt (BN and layer scale folded) is for inference only')
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    @torch.no_grad()
    def switch_to_deploy(self, cpu_kernels: bool = True, chunk_bytes: Optional[int] = None) -> 'InceptionNeXt':
        """Inference form: every BN next to a conv and every layer scale folded into that conv (or Linear).

        LayerNorms (the ConvNeXt rows) normalise with per-position statistics and stay: those blocks get
        their layer scale folded into ``mlp.fc2`` and keep the plain forward. Exact algebra with the BN
        running statistics, so outputs equal the eval-mode outputs (to float rounding, ~1e-6); the model is
        then for inference only (``self.deploy`` is True; training it would train a different
        parameterisation). Build with ``deploy=True`` to load a deployed
        model's state dict. Returns ``self``.

        ``cpu_kernels``: install ``backbones.models.ops.onednn`` (under ``torch.no_grad`` on CPU, fp32, no
        autocast: channels-last, oneDNN's fused conv + activation and conv + shortcut ops for the BN
        blocks, sub-batches of ``chunk_bytes`` of hidden map per block, 0 for whole batches). Other devices
        and dtypes, autograd and tracing use the plain folded ops. Calling it again only re-sets these options.
        """
        for m in self.modules():  # folding is idempotent
            if isinstance(m, (MetaNeXtBlock, Stem, Downsample)):
                m.switch_to_deploy()
        # the folded blocks keep the model's fast_path: on a GPU the mixer kernel without statistics (where
        # that mode takes it, fast_block.plan); on CPU the oneDNN kernels below come first
        fast_block.install(self, getattr(self, 'fast_path', 'auto'))
        if cpu_kernels:
            self.cpu_kernels = onednn.install(self, onednn.CPU_CHUNK_BYTES if chunk_bytes is None else chunk_bytes)
        else:
            onednn.uninstall(self)
            self.cpu_kernels = False
        self.deploy = True
        return self.eval()

    def set_fast_path(self, mode: Union[str, bool] = 'auto') -> 'InceptionNeXt':
        """The blocks' fast forms (``backbones/models/ops/fast_block.py``: the same function, parameters and state
        dict): 'auto' (where faster; $INCEPTIONNEXT_FAST = 0 / 1 / auto decides when set), True or False."""
        self.fast_path = fast_block.install(self, mode)
        return self

    def get_layer_depth(self, param_name: str, prefix: str = '', num_layers: int = 6,
                        decay_type: str = 'layer_wise') -> Tuple[int, int]:
        """The depth of a parameter for layer-wise lr decay, and the number of depths (mmpretrain's API).

        ``stage_wise``: stem and downsamples 0, stage i's blocks i + 1. ``layer_wise`` (ConvNeXt's rule):
        stem 0; stage 0 -> 1; stage 1 (and its downsample) -> 2; stage 2 block j -> 3 + j // 3 (its
        downsample 3); stage 3 -> ``num_layers``. Anything else (out norms; names outside ``prefix``: necks,
        heads) -> ``num_layers + 1``. Returns ``(depth, num_layers + 2)``.
        """
        if decay_type not in ('layer_wise', 'stage_wise'):
            raise ValueError(f"decay_type must be 'layer_wise' or 'stage_wise', got {decay_type!r}")
        rest, total = num_layers + 1, num_layers + 2
        if not param_name.startswith(prefix):
            return rest, total
        parts = param_name[len(prefix):].split('.')
        if parts[0] == 'stem':
            return 0, total
        if parts[0] != 'stages' or len(parts) < 3:
            return rest, total
        stage = int(parts[1])
        if parts[2] == 'downsample':
            return (0 if decay_type == 'stage_wise' else {1: 2, 2: 3}.get(stage, num_layers)), total
        block = int(parts[3])
        if decay_type == 'stage_wise':
            return stage + 1, total
        return {0: 1, 1: 2, 2: 3 + block // 3}.get(stage, num_layers), total

    def init_weights(self) -> None:
        """Loads ``init_cfg`` Pretrained weights strictly (``models.weights``); else mmengine's init."""
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            from backbones.models.inceptionnext import load_backbone_weights
            load_backbone_weights(self, cfg['checkpoint'], prefix=cfg.get('prefix'))
            self._is_init = True
        else:
            super().init_weights()


_ARCH_SHAPES: Dict[str, Dict[str, tuple]] = {}


def _arch_shapes(arch: str) -> Dict[str, tuple]:
    """Backbone state-dict shapes of a named arch (built on the meta device: no memory, no init cost)."""
    if arch not in _ARCH_SHAPES:
        from backbones.models.inceptionnext import InceptionNeXt
        with torch.device('meta'):
            model = InceptionNeXt(arch)
        _ARCH_SHAPES[arch] = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    return _ARCH_SHAPES[arch]


def _mixer_shape(settings: dict) -> Optional[tuple]:
    """Stage 0's first mixer weight shape an arch's settings give (a cheap first test before building it)."""
    mixer, c = settings['token_mixer'], settings['dims'][0]
    if mixer['type'] == 'PartialDWConv2d':
        k = mixer.get('kernel_size', 7)
        return ('token_mixer.dwconv.weight', (int(c * mixer.get('ratio', 1.0)), 1, k, k))
    if mixer['type'] == 'InceptionDWConv2d':
        k = mixer.get('square_kernel_size', 3)
        return ('token_mixer.dwconv_hw.weight', (int(c * mixer.get('branch_ratio', 0.125)), 1, k, k))
    return None


def fitting_arches(sd: StateDict) -> List[str]:
    """The named arches whose backbone (and classifier head, when ``sd`` has one) take ``sd`` strictly."""
    from backbones.models.inceptionnext import InceptionNeXt, MlpHead
    b = {k[len('backbone.'):]: tuple(v.shape) for k, v in sd.items() if k.startswith('backbone.')}
    fits = []
    for arch in InceptionNeXt.arch_settings:
        settings = InceptionNeXt.resolve_arch(arch)
        key_shape = _mixer_shape(settings)
        if key_shape is not None and b.get('stages.0.blocks.0.' + key_shape[0]) != key_shape[1]:
            continue
        if b.get('stem.conv.weight', (None,))[0] != settings['dims'][0]:
            continue
        own = _arch_shapes(arch)
        if any(k not in b and not (k.startswith('out_norms.') or k.endswith('num_batches_tracked')) for k in own):
            continue
        if any(k not in own or own[k] != shape for k, shape in b.items() if not k.startswith('out_norms.')):
            continue
        if 'head.fc2.weight' in sd:
            with torch.device('meta'):
                head = MlpHead(settings['dims'][-1], sd['head.fc2.weight'].shape[0], settings['head_mlp_ratio'])
            h = {'head.' + k: tuple(v.shape) for k, v in head.state_dict().items()}
            given = {k: tuple(v.shape) for k, v in sd.items() if k.startswith('head.')}
            if h != given:
                continue
        fits.append(arch)
    return fits


def explain(layout: str, sd: StateDict) -> str:
    """One sentence for errors: the layout detected, what the weights are, which arches fit them."""
    what = LAYOUTS[layout][0] if layout in LAYOUTS else OTHER_LAYOUTS.get(layout, layout)
    fits = fitting_arches(sd) if layout != 'unknown' else []
    return (f'the file: {what} layout ({describe_weights(sd)}); '
            + (f'arches that fit it: {", ".join(fits)}' if fits else 'no arch of ours fits it'))


def load_backbone_weights(model: nn.Module, path_or_sd, prefix: Optional[str] = None) -> None:
    """Loads a checkpoint into an ``InceptionNeXt`` strictly.

    Every backbone parameter must come from the file with its exact shape, and the file may not hold
    backbone keys the model lacks; only the optional output norms (``out_norms.*``, new for dense heads)
    may be absent. Anything else raises ``CheckpointError`` naming the keys.
    """
    layout, sd = identify(path_or_sd)
    src = extract_backbone(sd, prefix)
    own = model.state_dict()
    if not any(k.startswith('out_norms.') for k in own) and any(k.startswith('out_norms.') for k in src):
        # a backbone of a dense model (its per-output norms) into one without them: the norms belong to the
        # dense head's input, not to the backbone's weights
        src = OrderedDict((k, v) for k, v in src.items() if not k.startswith('out_norms.'))
        print_log('the checkpoint\'s out_norms.* (the per-output norms of a dense model) are left out: this '
                  'backbone has none', logger='current')
    problems = load_strict(model, src, optional=lambda k: k.startswith('out_norms.'))
    if problems:
        hint = ''
        if 'stem.conv.weight' in src and src['stem.conv.weight'].shape[1] != own['stem.conv.weight'].shape[1]:
            hint = (f' (stem.conv.weight is (dims[0], in_channels, 4, 4): the model has in_channels='
                    f'{own["stem.conv.weight"].shape[1]}, the checkpoint {src["stem.conv.weight"].shape[1]})')
        name = getattr(model, 'arch_name', None)
        arch = (f' arch {name!r}' if name else '') + f' (dims={getattr(model, "dims", None)})'
        about = ''
        if prefix in (None, 'backbone.'):
            about = '. ' + explain(layout, sd)
        raise CheckpointError(f'checkpoint does not fit InceptionNeXt{arch}{hint}: {problems}{about}')


def load_classifier_weights(model: nn.Module, path_or_sd) -> None:
    """Loads a classifier checkpoint (ours, converted, official or timm) with every key and shape checked."""
    problems = load_strict(model, classifier_state_dict(path_or_sd))
    if problems:
        raise CheckpointError(f'classifier checkpoint does not fit the model: {problems}')
