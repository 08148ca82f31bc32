"""The fast form of the MetaNeXt block (BN / SyncBN norm, ``ConvMlp``): the plain block's function with the
same parameters, state dict and BN running-statistics updates, BN folded into fc1 (also in training) and, on
CUDA, the token mixer and the fold as Triton kernels (``triton_dwconv``, ``triton_fold``).

``install(model, mode)`` / ``uninstall(model)`` set and clear the blocks' ``fast_mode``; ``plan(block, x)``
picks the form for an input (the switches below, the Triton checks, the first-use self-test of
``fast_self_test``) and ``fast_forward`` computes it (the BN parts: ``fast_bn``). Modes, safety and design:
docs/gpu.md.
"""
import os
import warnings
from typing import Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm

from backbones.models.layers import DropPath
from backbones.models.ops import fast_bn
from backbones.models.ops.fast_bn import update_running_stats as _update_running_stats
from backbones.models.ops.fast_self_test import self_test as _self_test
from backbones.utils.errors import BadValueError

# (``_update_running_stats`` and ``_self_test`` are called through this module's names: the tests replace them here)
ENV = 'INCEPTIONNEXT_FAST'
# Devices where the Triton mixer runs (the tests add 'cpu', under Triton's interpreter).
TRITON_DEVICES = {'cuda'}
# Where mode 'auto' takes the fast form: 'all' (training and eval-mode BN) or 'eval' (only where BN uses its
# running statistics). CPU: eval only -- in training torch's CPU var_mean is 3-10x slower than BN's own
# statistics kernel and BN is ~3% of the CPU train step (the 1x1-conv GEMMs ~75%), so the fold does not pay
# there; without batch statistics it drops BN's pass (measured on 2 cores). CUDA: see MEASURED_GPUS.
AUTO = {'cpu': 'eval'}
# CUDA: mode 'auto' takes the fast form only on the GPU classes (``torch.cuda.get_device_name``) where
# tools/analysis_tools/gpu_bench.sh has shown it faster than the plain block, with what it takes there
# ('all' / 'eval'). Empty: no GPU class is listed, so 'auto' is the plain block on every GPU and
# ``fast_path=True`` (or INCEPTIONNEXT_FAST=1) opts in. docs/gpu.md keeps the measurements.
MEASURED_GPUS = {}
# The Triton kernels need an NVIDIA GPU of compute capability 8.0 or newer (Triton's supported hardware; bf16
# loads and stores need sm_80); ROCm builds of torch (torch.version.hip) are not taken (not tested there).
MIN_CAPABILITY = (8, 0)
# fc1's input scaled by the BN running inverse std besides being centred on the running mean (the fast form's
# low-precision GEMMs see the plain block's normalised range); False only for the control test.
NORMALISE_GEMM_INPUT = True
_FLOATS = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
_ALIASES = {'1': 'on', 'true': 'on', 'yes': 'on', 'on': 'on', '0': 'off', 'false': 'off', 'no': 'off',
            'off': 'off', 'auto': 'auto', '': 'auto'}


def resolve_mode(mode: Union[str, bool, None] = 'auto') -> str:
    """'on' / 'off' / 'auto' for a ``fast_path`` argument; 'auto' (or None) defers to $INCEPTIONNEXT_FAST."""
    if mode is None:
        mode = 'auto'
    if isinstance(mode, bool):
        return 'on' if mode else 'off'
    name = _ALIASES.get(str(mode).strip().lower())
    if name is None:
        raise BadValueError(f"fast_path must be 'auto', True or False (or 'on' / 'off'), got {mode!r}")
    if name == 'auto':
        env = os.environ.get(ENV)
        if env is not None:
            name = _ALIASES.get(env.strip().lower())
            if name is None:
                raise BadValueError(f'{ENV}={env!r}: use 0, 1 or auto')
    return name


def _triton():
    """The Triton kernels, imported on first use (only where the CUDA path is taken): the mixer op, and the
    fold op as its ``fold`` (``triton_fold``)."""
    from backbones.models.ops import triton_dwconv
    return triton_dwconv


def _is_block(m: nn.Module) -> bool:
    return hasattr(type(m), 'fast_mode')  # the model's MetaNeXtBlock declares the flag


def _is_inception_mixer(mixer: nn.Module) -> bool:
    """The Inception depthwise mixer: identity | square | 1xb band | bx1 band channel groups."""
    return all(hasattr(mixer, a) for a in ('dwconv_hw', 'dwconv_w', 'dwconv_h', 'split_sizes'))


def is_deployed(block: nn.Module) -> bool:
    """A block of the deploy form: its BN folded into fc1 (``switch_to_deploy``: the norm is an Identity)."""
    return isinstance(getattr(block, 'norm', None), nn.Identity)


def qualifies(block: nn.Module) -> bool:
    """Whether ``block`` is a MetaNeXt block of the form the fast path computes: a BatchNorm / SyncBN norm (or
    one folded into fc1: the deploy form) and a 1x1-conv MLP on channels-first maps (any token mixer)."""
    if not _is_block(block) or not (isinstance(block.norm, _BatchNorm) or is_deployed(block)):
        return False
    mlp = block.mlp
    if getattr(mlp, 'channels_last', True) or not isinstance(block.drop_path, (DropPath, nn.Identity)):
        return False
    return all(isinstance(c, nn.Conv2d) and c.kernel_size == (1, 1) and c.stride == (1, 1) and c.groups == 1
               and c.padding == (0, 0) and c.dilation == (1, 1) and c.bias is not None for c in (mlp.fc1, mlp.fc2))


def install(model: nn.Module, mode: Union[str, bool, None] = 'auto') -> str:
    """Swaps the fast form into every qualifying block of ``model`` (mode 'on' / 'auto'), or the plain form
    back (mode 'off'); returns the resolved mode."""
    mode = resolve_mode(mode)
    uninstall(model)
    if mode != 'off':
        for m in model.modules():
            if qualifies(m):
                m.fast_mode = mode
    return mode


def uninstall(model: nn.Module) -> None:
    """Clears the blocks' ``fast_mode`` (the class default, None: the plain forward)."""
    for m in model.modules():
        if 'fast_mode' in m.__dict__:
            del m.fast_mode


# --------------------------------------------------------------------------------------------------
def _constant_at_trace(fn):
    """``torch.compiler.assume_constant_result`` without importing dynamo (and with it Triton) at import time:
    dynamo calls the function while tracing and keeps its result as a constant of the graph (tested:
    tests/models/test_fast_block.py, test_triton_self_test_under_compile)."""
    fn._dynamo_marked_constant = True
    return fn


@_constant_at_trace
def _auto_cuda(device: torch.device) -> str:
    """What mode 'auto' takes on this GPU: ``MEASURED_GPUS`` for its name ('' where not measured)."""
    if not MEASURED_GPUS:
        return ''
    try:
        return MEASURED_GPUS.get(torch.cuda.get_device_name(device), '')
    except Exception:  # noqa: BLE001  (no driver: not a measured GPU)
        return ''


def triton_unusable(device: torch.device) -> Optional[str]:
    """Why the Triton kernels cannot be tried on ``device`` (None: they can): not a Triton device, Triton
    missing, a ROCm build of torch, compute capability below ``MIN_CAPABILITY``."""
    if device.type not in TRITON_DEVICES:
        return f'{device.type} is not a Triton device'
    if not _triton().AVAILABLE:
        return 'Triton is not installed (or this torch has no torch.library.triton_op)'
    if device.type == 'cuda':
        if getattr(torch.version, 'hip', None):
            return 'a ROCm / HIP build of torch (the Triton kernels are built and tested for CUDA only)'
        try:
            cap = tuple(torch.cuda.get_device_capability(device))
        except Exception as e:  # noqa: BLE001
            return f'no compute capability for {device}: {type(e).__name__}: {e}'
        if cap < MIN_CAPABILITY:
            return f'compute capability {cap[0]}.{cap[1]} < {MIN_CAPABILITY[0]}.{MIN_CAPABILITY[1]}'
    return None


# Self-test results per (device, x dtype, weight dtype, out dtype, channels, group, square, band): None if
# passed, else the failure; and the devices already warned about.
SELF_TESTS = {}
_WARNED = set()


def _warn_once(device: torch.device, text: str) -> None:
    if str(device) not in _WARNED:
        _WARNED.add(str(device))
        warnings.warn(f'InceptionNeXt fast path on {device}: {text}', RuntimeWarning, stacklevel=3)


@_constant_at_trace
def _triton_route(device: torch.device, on: bool) -> Optional[str]:
    """'triton' where the kernels can be tried on ``device``; otherwise (one warning) torch's mixer ('torch')
    in mode 'on', the plain forward (None) in mode 'auto'."""
    why = triton_unusable(device)
    if why is None:
        return 'triton'
    _warn_once(device, f'the Triton token-mixer kernel cannot run here: {why}. '
                       + ("Blocks with fast_path=True use torch's mixer." if on
                          else 'The blocks run the plain forward.'))
    return 'torch' if on else 'plain'


@_constant_at_trace
def triton_verified(device: torch.device, x_dtype, w_dtype, out_dtype, c: int, g: int, ks: int, kb: int) -> bool:
    """Whether the Triton op passed its first-use self-test for this configuration (run once per process;
    a failure warns once per device and the blocks run their plain forward)."""
    key = (str(device), x_dtype, w_dtype, out_dtype, c, g, ks, kb)
    if key not in SELF_TESTS:
        SELF_TESTS[key] = _self_test(_triton(), device, x_dtype, w_dtype, out_dtype, c, g, ks, kb)
        if SELF_TESTS[key] is not None:
            _warn_once(device, f'the Triton token-mixer kernel failed its self-test ({x_dtype} input, {out_dtype} '
                               f'output, {c} channels, groups of {g}, {ks}x{ks} / 1x{kb}): {SELF_TESTS[key]}. '
                               'These blocks run the plain forward (fast_path=False silences this).')
    return SELF_TESTS[key] is None


def plan(block: nn.Module, x: torch.Tensor) -> Optional[str]:
    """'triton' (the mixer kernel), 'torch' (torch's mixer) or None (the plain forward) for input ``x``.

    Mode 'auto' takes the fast form where ``AUTO`` (CPU) or ``MEASURED_GPUS`` (CUDA) says; mode 'on'
    everywhere. The Triton mixer where it applies (device, mixer, dtype, sizes), can run (``triton_unusable``)
    and passed its self-test (``triton_verified``); a failed self-test gives the plain forward, a device
    where Triton cannot run gives torch's mixer in mode 'on' (one warning) and the plain forward in 'auto'."""
    if torch.jit.is_tracing() or torch.jit.is_scripting():
        return None
    if is_deployed(block):
        return _plan_deployed(block, x)
    bn = block.norm
    if not isinstance(bn, _BatchNorm) or x.dim() != 4 or x.dtype not in _FLOATS:
        return None
    dev, bn_training = x.device.type, fast_bn.bn_training(bn)
    if block.fast_mode != 'on':
        auto = _auto_cuda(x.device) if dev == 'cuda' else AUTO.get(dev)
        if not (auto == 'all' or (auto == 'eval' and not bn_training)):
            return None
    if bn_training and x.shape[0] * x.shape[2] * x.shape[3] <= 1 and fast_bn.sync_group(bn, True) is None:
        return None  # the plain BN raises its error (one value per channel)
    mixer = block.token_mixer
    if (dev in TRITON_DEVICES and _is_inception_mixer(mixer) and x.dtype != torch.float64
            and all(c.bias is not None for c in (mixer.dwconv_hw, mixer.dwconv_w, mixer.dwconv_h))
            and mixer.dwconv_hw.kernel_size[0] == mixer.dwconv_hw.kernel_size[1]):
        ks, kb = mixer.dwconv_hw.kernel_size[0], mixer.dwconv_w.kernel_size[1]
        route = _triton_route(x.device, block.fast_mode == 'on')
        if route != 'triton':
            return None if route == 'plain' else route
        if _triton().supported(x, ks, kb):
            out_dtype = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else x.dtype
            if not triton_verified(x.device, x.dtype, mixer.dwconv_hw.weight.dtype, out_dtype, bn.num_features,
                                   mixer.dwconv_hw.weight.shape[0], ks, kb):
                return None
            return 'triton'
    return 'torch'


def _plan_deployed(block: nn.Module, x: torch.Tensor) -> Optional[str]:
    """The deploy form (BN folded): 'triton' where the mixer kernel (without statistics) applies, as in
    ``plan`` (mode 'on', or 'auto' on a GPU class of ``MEASURED_GPUS``; Triton usable; self-test passed);
    else None: the plain folded forward (on CPU the oneDNN kernels come first, ``MetaNeXtBlock.forward``)."""
    mixer, dev = block.token_mixer, x.device.type
    if (dev not in TRITON_DEVICES or x.dim() != 4 or x.dtype not in (torch.float32, torch.float16, torch.bfloat16)
            or not _is_inception_mixer(mixer)
            or any(c.bias is None for c in (mixer.dwconv_hw, mixer.dwconv_w, mixer.dwconv_h))
            or mixer.dwconv_hw.kernel_size[0] != mixer.dwconv_hw.kernel_size[1]):
        return None
    if block.fast_mode != 'on' and not (dev == 'cuda' and _auto_cuda(x.device) in ('all', 'eval')):
        return None
    if _triton_route(x.device, block.fast_mode == 'on') != 'triton':
        return None
    ks, kb = mixer.dwconv_hw.kernel_size[0], mixer.dwconv_w.kernel_size[1]
    if not _triton().supported(x, ks, kb):
        return None
    out_dtype = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else x.dtype
    if not triton_verified(x.device, x.dtype, mixer.dwconv_hw.weight.dtype, out_dtype, x.shape[1],
                           mixer.dwconv_hw.weight.shape[0], ks, kb):
        return None
    return 'triton'


def _tf32_alike() -> bool:
    """Whether fp32 matmuls (F.linear) and cuDNN convolutions run in the same precision (TF32 or not)."""
    try:
        return bool(torch.backends.cuda.matmul.allow_tf32) == bool(torch.backends.cudnn.allow_tf32)
    except Exception:  # noqa: BLE001  (a torch that refuses the legacy flags next to its newer precision API)
        return False


# Devices where the fold kernel failed at run time (a launch on a size its self-test did not cover): the
# torch ops fold there from then on.
_FOLD_FAILED = set()


def _fold_kernel(device, mean, var, center, rscale, bn, w1, b1, gamma, w2, b2):
    """The fold by the Triton kernel (``triton_fold``, one launch; its backward two), or None where it does
    not apply or failed (then the torch ops fold, with one warning on a failure)."""
    triton_fold = _triton().fold
    if str(device) in _FOLD_FAILED or not triton_fold.supported(mean, var, center, rscale, bn.weight, bn.bias, w1,
                                                                 b1, gamma, w2, b2):
        return None
    try:
        return triton_fold.fold_mlp(mean, var, center, rscale, bn.weight, bn.bias, bn.eps, w1, b1, gamma, w2, b2)
    except Exception as e:  # noqa: BLE001  (eager: fall back to the torch ops, same function)
        if torch.compiler.is_compiling() or isinstance(e, torch.OutOfMemoryError):
            raise
        _FOLD_FAILED.add(str(device))
        _warn_once(device, f'the Triton fold kernel failed ({type(e).__name__}: {str(e).strip()[:300]}); the BN '
                           'fold runs in torch ops from now on.')
        return None


def fast_forward(block: nn.Module, x: torch.Tensor, how: str) -> torch.Tensor:
    """The block's function in its fast form (docs/gpu.md, "The fast block"); ``how``: 'triton' or 'torch'
    (``plan``)."""
    bn, mlp, mixer = block.norm, block.mlp, block.token_mixer
    dev = x.device.type
    lowp = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else None
    deployed = is_deployed(block)
    bn_training = False if deployed else fast_bn.bn_training(bn)
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32  # statistics and fold: fp32 at least
    # The running mean and inverse std (copies: they are updated in place below, and saved for backward) centre
    # and scale fc1's input: its low-precision GEMMs then see normalised values, as the plain block's do --
    # forward, and the weight gradient, which would otherwise carry each channel's std (fp16 over- / underflow
    # under a GradScaler: tests/models/test_fast_block.py).
    center = rscale = None
    if not deployed and bn.running_mean is not None:
        center = fast_bn.snapshot(bn.running_mean.detach().to(acc))
        if NORMALISE_GEMM_INPUT and bn.running_var is not None:
            rscale = torch.rsqrt(fast_bn.snapshot(bn.running_var.detach().to(acc)) + bn.eps)
    # ---- token mixer and batch statistics
    if how == 'triton':
        x_in, x = x, x.contiguous(memory_format=torch.channels_last)
        if center is None:
            center = x.new_zeros(x.shape[1], dtype=torch.float32)
        if rscale is None:
            rscale = x.new_ones(x.shape[1], dtype=torch.float32)
        try:
            t, mean, var = _triton().inception_dw(
                x, mixer.dwconv_hw.weight, mixer.dwconv_hw.bias, mixer.dwconv_w.weight, mixer.dwconv_w.bias,
                mixer.dwconv_h.weight, mixer.dwconv_h.bias, center, rscale, lowp or x.dtype, bn_training)
        except Exception as e:  # noqa: BLE001  (eager: a shape the self-test did not cover failed to compile / launch)
            if torch.compiler.is_compiling() or isinstance(e, torch.OutOfMemoryError):
                raise
            key = (str(x.device), x.dtype, mixer.dwconv_hw.weight.dtype, lowp or x.dtype, x.shape[1],
                   mixer.dwconv_hw.weight.shape[0], mixer.dwconv_hw.kernel_size[0], mixer.dwconv_w.kernel_size[1])
            SELF_TESTS[key] = f'{type(e).__name__}: {str(e).strip()[:300]}'
            _warn_once(x.device, f'the Triton token-mixer kernel failed ({SELF_TESTS[key]}); these blocks run the '
                                 'plain forward from now on (fast_path=False silences this).')
            return block.forward_plain(x_in)
    else:
        t = mixer(x)
        if bn_training:
            var, mean = torch.var_mean(t if t.dtype in (torch.float32, torch.float64) else t.float(),
                                       dim=(0, 2, 3), unbiased=False)
        if center is not None and (lowp is not None or t.dtype in (torch.float16, torch.bfloat16)):
            if rscale is None:  # before the low-precision GEMM rounds it
                t = t - center.to(t.dtype).view(1, -1, 1, 1)
            else:  # (t - center) * rscale in one pass (fp32 arithmetic inside)
                r = rscale.to(t.dtype).view(1, -1, 1, 1)
                t = torch.addcmul((-center * rscale).to(t.dtype).view(1, -1, 1, 1), t, r)
        else:
            center = rscale = None
    count = x.shape[0] * x.shape[2] * x.shape[3]
    if deployed:
        pass  # BN folded into fc1 already (the kernel ran without statistics and without centring)
    elif bn_training:
        group = fast_bn.sync_group(bn, bn_training)
        if group is not None:
            mean, var, count = fast_bn.sync_stats(mean, var, count, group)
        _update_running_stats(bn, mean, var, count)
    else:
        mean, var = bn.running_mean, bn.running_var
    # ---- BN folded into fc1, layer scale into fc2 (fp32, as the parameters)
    fc1, fc2, gamma = mlp.fc1, mlp.fc2, block.gamma
    with torch.autocast(dev, enabled=False):
        w1, w2 = fc1.weight.flatten(1), fc2.weight.flatten(1)
        if deployed:
            w1f, b1f, w2f, b2f = w1, fc1.bias, w2, fc2.bias
            if gamma is not None:
                w2f, b2f = w2f * gamma.view(-1, 1), b2f * gamma
        else:
            folded = None
            if how == 'triton' and mean.dtype == var.dtype == torch.float32:
                folded = _fold_kernel(x.device, mean, var, center, rscale, bn, w1, fc1.bias, gamma, w2, fc2.bias)
            if folded is None:
                folded = fast_bn.fold_torch(mean, var, center, rscale, bn, w1, fc1.bias, gamma, w2, fc2.bias, acc)
            w1f, b1f, w2f, b2f = folded
    # ---- the MLP. The kernel's channels-last output viewed as (N, H, W, C) rows: fc1 / fc2 as F.linear,
    # GEMMs with the bias in their epilogue, where that computes in the plain block's precision (autocast or
    # half maps, CPU, or TF32 set alike for matmuls and cuDNN); else the plain block's 1x1 convs (on
    # channels-last maps cuDNN runs them as GEMMs too; TF32 as there).
    if how == 'triton' and (lowp is not None or t.dtype != torch.float32 or dev != 'cuda' or _tf32_alike()):
        h = mlp.act(F.linear(t.permute(0, 2, 3, 1), w1f, b1f))
        y = F.linear(h, w2f, b2f).permute(0, 3, 1, 2)
    else:
        h = mlp.act(F.conv2d(t, w1f.view(*w1f.shape, 1, 1), b1f))
        y = F.conv2d(h, w2f.view(*w2f.shape, 1, 1), b2f)
    n = x.shape[0]
    # ---- drop path and shortcut; dtypes as the plain block's (ConvMlp promotes to the layer scale's dtype)
    ref_dtype = torch.promote_types(y.dtype, gamma.dtype) if gamma is not None else y.dtype
    out_dtype = torch.promote_types(x.dtype, ref_dtype)
    dp = block.drop_path
    if isinstance(dp, DropPath) and dp.training and dp.drop_prob > 0:
        keep = 1 - dp.drop_prob  # timm's drop_path: the same draw from the same generator
        mask = y.new_empty((n, 1, 1, 1), dtype=ref_dtype).bernoulli_(keep)
        if keep > 0 and dp.scale_by_keep:
            mask.div_(keep)
        return torch.addcmul(x, y, mask).to(out_dtype)
    if y.dtype == out_dtype:
        return y.add_(x)  # neither fc2 nor the drop path keeps its output for backward
    return torch.add(x, y if torch.promote_types(x.dtype, y.dtype) == out_dtype else y.to(ref_dtype))
