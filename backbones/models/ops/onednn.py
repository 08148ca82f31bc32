"""CPU inference kernels of the deploy form: oneDNN's fused conv ops, channels-last, cache-sized sub-batches.

On CPU the MLP's elementwise passes (the activation over the 4x-wide hidden map, the shortcut add) cost
about as much as its 1x1 convs. oneDNN runs them as post-ops of the convs (the fused ops that
torch.compile's CPU backend emits), so each map is written once; channels-last is oneDNN's layout.

``install(model, chunk_bytes)`` sets the flags the deployed model's stem, stages and blocks read
(``cpu_channels_last``, ``chunk_bytes``, ``post_op``: same parameters and state dict); ``uninstall(model)``
clears them. The model's modules call the functions here only where ``applies(x)``: CPU, no autograd, no
autocast, fp32 (oneDNN has no fp64 and
needs CPU support for fp16), not while tracing or compiling (FLOP counters, ONNX export and torch.compile
should see, and fuse, the plain ops); anything else takes the plain (folded) forward.
"""
from typing import Optional

import torch
import torch.nn as nn

AVAILABLE = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, '_convolution_pointwise')
# Sub-batch size for CPU inference, in bytes of one block's hidden map: it should sit in the last-level
# cache (on a 32 MiB-L3 EPYC, docs/benchmarks.md: 8-24 MiB within a few %, 1.4x faster than whole batches).
CPU_CHUNK_BYTES = 16 << 20

_conv_pointwise = torch.ops.mkldnn._convolution_pointwise if AVAILABLE else None
_1X1 = dict(padding=[0, 0], stride=[1, 1], dilation=[1, 1], groups=1)  # fc1 / fc2 are 1x1 convs


def applies(x: torch.Tensor) -> bool:
    """Whether the oneDNN forms may run on ``x`` (see the module docstring)."""
    return (x.device.type == 'cpu' and not torch.is_grad_enabled() and x.dtype == torch.float32
            and not torch.is_autocast_enabled('cpu') and not torch.jit.is_tracing()
            and not torch.compiler.is_compiling())


def post_op(act: nn.Module) -> Optional[tuple]:
    """oneDNN's (attr, scalars, algorithm) computing the activation ``act``; None when it has none."""
    if isinstance(act, nn.GELU):
        return 'gelu', [], act.approximate
    if isinstance(act, nn.ReLU):
        return 'relu', [], ''
    return None


def _fused_conv(x, conv: nn.Conv2d, *op):
    p = _1X1
    return _conv_pointwise(x, conv.weight, conv.bias, p['padding'], p['stride'], p['dilation'], p['groups'], *op)


def _fused_conv_add(h, shortcut, conv: nn.Conv2d):
    p = _1X1
    return _conv_pointwise.binary(h, shortcut, conv.weight, conv.bias, p['padding'], p['stride'], p['dilation'],
                                  p['groups'], 'add', None, None, [], None)


def block_forward(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A deployed block (norm folded away, ``ConvMlp``): fc1 + activation and fc2 + shortcut, each one oneDNN op."""
    h = _fused_conv(block.norm(block.token_mixer(x)), block.mlp.fc1, *block.post_op)
    return _fused_conv_add(h, x, block.mlp.fc2)


def chunked_blocks(stage: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A stage's blocks on sub-batches with hidden maps of at most ``stage.chunk_bytes`` each.

    Stages 1-3 are bound by memory traffic on CPU, not by arithmetic: sub-batches whose MLP hidden maps
    fit in the cache run faster. Per-image computation, so the values are the same.
    """
    if x.shape[0] > 1:
        hidden = stage.blocks[0].mlp.hidden_features * x.shape[2] * x.shape[3] * x.element_size()
        n = max(1, stage.chunk_bytes // hidden)
        if n < x.shape[0]:
            return torch.cat([stage.blocks(c) for c in x.split(n)])
    return stage.forward_blocks(x)


def _role(m: nn.Module) -> str:
    """'block' / 'stage' / 'stem' for the model's modules that read a flag of this module, else ''."""
    for flag, role in (('post_op', 'block'), ('chunk_bytes', 'stage'), ('cpu_channels_last', 'stem')):
        if hasattr(type(m), flag):
            return role
    return ''


def install(model: nn.Module, chunk_bytes: int = CPU_CHUNK_BYTES) -> bool:
    """Sets the oneDNN flags of a deployed ``model`` (BN and layer scale folded); returns whether it did.

    Blocks qualify when their norm is folded away and their MLP is a 1x1-conv MLP (``channels_last``
    False) with an activation oneDNN has as a post-op; others keep the plain forward.
    """
    uninstall(model)
    if not AVAILABLE:
        return False
    for m in model.modules():
        role = _role(m)
        if role == 'block':
            conv_mlp = not getattr(m.mlp, 'channels_last', True)
            op = post_op(m.mlp.act) if conv_mlp else None
            if op is not None and isinstance(m.norm, nn.Identity) and m.gamma is None:
                m.post_op = op
        elif role == 'stage':
            m.chunk_bytes = chunk_bytes
        elif role == 'stem':
            m.cpu_channels_last = True
    return True


def uninstall(model: nn.Module) -> None:
    """Clears the flags (the class defaults: plain forwards)."""
    for m in model.modules():
        for flag in ('post_op', 'chunk_bytes', 'cpu_channels_last'):
            if flag in m.__dict__:
                delattr(m, flag)
