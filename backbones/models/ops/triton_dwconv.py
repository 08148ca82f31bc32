"""InceptionNeXt's token mixer (identity | kxk | 1xb | bx1 depthwise branches) as one Triton kernel each way:
the launch wrappers, their block sizes and shape logic, the custom ops and their autograd, and the same function
in torch ops (``reference``). The kernels: ``triton_dwconv_kernels``.

``inception_dw(x, w_sq, b_sq, w_w, b_w, w_h, b_h, center, rscale, out_dtype, stats)`` reads a channels-last map
``x`` (N, C, H, W) in place and writes ``u = (t - center) * rscale`` with ``t = cat(x_id, dw_sq(x_sq), dw_w(x_w),
dw_h(x_h))`` as one channels-last map of ``out_dtype`` (the dtype fc1 takes; ``center`` / ``rscale``: the BN
running mean and inverse std); with ``stats``, also the per-channel mean and biased variance of ``t`` over
(N, H, W), fp32, from the values before rounding. Its backward (``inception_dw_backward``) takes
``g = du * rscale + dmean / M + 2 dvar (t - mean) / M`` to the input, weight and bias gradients.

Registered with ``torch.library.triton_op`` (``inceptionnext::inception_dw``, ``inceptionnext::inception_dw_backward``)
and ``register_autograd``, so torch.compile keeps the kernels in its graphs. They run wherever Triton runs: CUDA, and
CPU tensors under Triton's interpreter (``TRITON_INTERPRET=1`` set before triton is imported). docs/gpu.md.
"""
from typing import Tuple

import torch

from backbones.models.ops import triton_fold as fold  # noqa: F401  (the fold kernel: fast_block._triton().fold)
from backbones.models.ops.launch import device_guard

try:
    import triton
    from torch.library import triton_op, wrap_triton

    from backbones.models.ops import triton_dwconv_kernels as kernels
    AVAILABLE = True
except Exception:  # noqa: BLE001  (no triton, or a torch without triton_op)
    AVAILABLE = False

# int32 offsets in the kernels: maps up to 2**31 elements (N*H*W*C)
MAX_NUMEL = 2 ** 31 - 1
FWD_TILE, BWD_TILE = 512, 512  # elements per tile (see _blocks); 1024 took 164 registers with the output scale
FWD_SUBTILES = 4  # tiles per forward program: 4x fewer partial statistics to merge
FWD_WARPS, BWD_WARPS = 8, 8  # 2 elements of a tile per thread
BAND_TW = 8  # columns of the KBx1 band's 2-D tiles (rows: the rest of the tile; ``triton_dwconv_kernels._positions``)


def supported(x: torch.Tensor, square: int, band: int) -> bool:
    """Whether the kernels take ``x`` (any device Triton runs on; the caller decides which)."""
    return (AVAILABLE and x.dim() == 4 and x.dtype in (torch.float32, torch.float16, torch.bfloat16)
            and x.numel() + (band // 2 + 1) * x.shape[1] * x.shape[3] < MAX_NUMEL
            and square % 2 == 1 and band % 2 == 1)


def _blocks(g: int, elements: int) -> Tuple[int, int]:
    """(BLOCK_P rows, BLOCK_C channels) of a program's tile of ``elements``: channels a power of 2 near g
    (the identity channels take the same width). Registers and spills per kernel, dtype and arch:
    tests/models/test_triton_compile.py (compiled for sm_80 and sm_90 at 4 warps, no spills)."""
    block_c = max(4, min(32, 1 << (max(g, 1) - 1).bit_length()))
    return elements // block_c, block_c


def _align(cid: int, g: int, block_c: int) -> int:
    """The largest power of 2 (at most 8 and ``block_c``) dividing the identity and group widths: every
    channel block then starts at a multiple of it and its mask changes only at multiples of it, which lets
    the compiler load and store ALIGN channels per instruction (vector loads; InceptionNeXt's widths
    are multiples of 4)."""
    a = 1
    while a < min(8, block_c) and cid % (2 * a) == 0 and g % (2 * a) == 0:
        a *= 2
    return a


if AVAILABLE:
    def _check(x: torch.Tensor, w_sq: torch.Tensor, w_w: torch.Tensor, w_h: torch.Tensor) -> Tuple[int, ...]:
        n, c, hgt, wid = x.shape
        g, ks, kb = w_sq.shape[0], w_sq.shape[-1], w_w.shape[-1]
        torch._check(x.permute(0, 2, 3, 1).is_contiguous(), lambda: 'inception_dw: x must be channels-last')
        torch._check(w_sq.shape == (g, 1, ks, ks) and w_w.shape == (g, 1, 1, kb) and w_h.shape == (g, 1, kb, 1)
                     and all(w.is_contiguous() for w in (w_sq, w_w, w_h)),
                     lambda: 'inception_dw: weights must be contiguous (g,1,k,k), (g,1,1,b), (g,1,b,1)')
        return n, c, hgt, wid, g, ks, kb

    def _geometry(x, g, elements):
        n, c, hgt, wid = x.shape
        m, cid = n * hgt * wid, c - 3 * g
        block_p, block_c = _blocks(g, elements)
        align = _align(cid, g, block_c)
        return m, cid, block_p, block_c, align, triton.cdiv(cid, block_c), triton.cdiv(g, block_c)

    def _band_tiles(x, rows_per_tile: int):
        """(tiles per image down, across, all) of the KBx1 band's 2-D tiles of rows_per_tile x BAND_TW."""
        n, _, hgt, wid = x.shape
        n_th, n_tw = triton.cdiv(hgt, rows_per_tile), triton.cdiv(wid, BAND_TW)
        return n_th, n_tw, n * n_th * n_tw

    @triton_op('inceptionnext::inception_dw', mutates_args=())
    def inception_dw(x: torch.Tensor, w_sq: torch.Tensor, b_sq: torch.Tensor, w_w: torch.Tensor,
                     b_w: torch.Tensor, w_h: torch.Tensor, b_h: torch.Tensor, center: torch.Tensor,
                     rscale: torch.Tensor, out_dtype: torch.dtype,
                     stats: bool) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """((t - center) * rscale in ``out_dtype``, channels-last; mean; biased var) -- see the module docstring."""
        n, c, hgt, wid, g, ks, kb = _check(x, w_sq, w_w, w_h)
        m, cid, block_p, block_c, align, id_blocks, g_blocks = _geometry(x, g, FWD_TILE)
        band_th = FWD_SUBTILES * (block_p // BAND_TW)
        n_th, n_tw, band_tiles = _band_tiles(x, band_th)
        tiles = max(triton.cdiv(m, block_p * FWD_SUBTILES), band_tiles)  # (programs past a tiling's end: empty)
        t = torch.empty((n, c, hgt, wid), device=x.device, dtype=out_dtype, memory_format=torch.channels_last)
        mean = torch.zeros(c, device=x.device, dtype=torch.float32)
        var = torch.zeros(c, device=x.device, dtype=torch.float32)
        psum = torch.empty((tiles if stats else 1, c), device=x.device, dtype=torch.float32)
        pm2 = torch.empty_like(psum)
        with device_guard(x.device):
            wrap_triton(kernels.inception_dw_fwd_kernel)[((id_blocks + 3 * g_blocks) * tiles,)](
                x, t, center, rscale, w_sq, b_sq, w_w, b_w, w_h, b_h, psum, pm2, m, hgt, wid, cid // align, g // align,
                id_blocks, g_blocks, n_th, n_tw, KS=ks, KB=kb, STATS=stats, BLOCK_P=block_p, BLOCK_C=block_c,
                SUBTILES=FWD_SUBTILES, ALIGN=align, TW=BAND_TW, num_warps=FWD_WARPS)
            if stats:
                wrap_triton(kernels.stats_merge_kernel)[(triton.cdiv(c, 16),)](
                    psum, pm2, center, rscale, mean, var, m, c, tiles, hgt, wid, n_th, n_tw, cid + 2 * g,
                    BLOCK_P=block_p * FWD_SUBTILES, TH=band_th, TW=BAND_TW, BLOCK_T=128, BLOCK_C=16, num_warps=4)
        return t, mean, var

    @triton_op('inceptionnext::inception_dw_backward', mutates_args=())
    def inception_dw_backward(x: torch.Tensor, t: torch.Tensor, dt: torch.Tensor, a: torch.Tensor, k1: torch.Tensor,
                              k0: torch.Tensor, w_sq: torch.Tensor, w_w: torch.Tensor,
                              w_h: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                                                          torch.Tensor, torch.Tensor, torch.Tensor]:
        """(dx, dw_sq, db_sq, dw_w, db_w, dw_h, db_h) for ``g = a * dt + k1 * t + k0`` (per channel a, k1, k0)."""
        n, c, hgt, wid, g, ks, kb = _check(x, w_sq, w_w, w_h)
        m, cid, block_p, block_c, align, id_blocks, g_blocks = _geometry(x, g, BWD_TILE)
        n_th, n_tw, band_tiles = _band_tiles(x, block_p // BAND_TW)
        tiles = max(triton.cdiv(m, block_p), band_tiles)
        dt = dt.contiguous(memory_format=torch.channels_last)
        dx = torch.empty_like(x, memory_format=torch.channels_last)
        kw = dict(device=x.device, dtype=torch.float32)
        dwp_sq, dwp_w, dwp_h = (torch.empty((tiles, k, g), **kw) for k in (ks * ks, kb, kb))
        dbp = torch.empty((tiles, 3, g), **kw)
        with device_guard(x.device):
            wrap_triton(kernels.inception_dw_bwd_kernel)[((id_blocks + 3 * g_blocks) * tiles,)](
                x, t, dt, a, k1, k0, w_sq, w_w, w_h, dx, dwp_sq, dwp_w, dwp_h, dbp, m, hgt, wid, cid // align,
                g // align, id_blocks, g_blocks, n_th, n_tw, KS=ks, KB=kb, BLOCK_P=block_p, BLOCK_C=block_c,
                ALIGN=align, TW=BAND_TW, num_warps=BWD_WARPS)
        return (dx, dwp_sq.sum(0).t().reshape(g, 1, ks, ks).to(w_sq.dtype), dbp[:, 0].sum(0).to(w_sq.dtype),
                dwp_w.sum(0).t().reshape(g, 1, 1, kb).to(w_w.dtype), dbp[:, 1].sum(0).to(w_w.dtype),
                dwp_h.sum(0).t().reshape(g, 1, kb, 1).to(w_h.dtype), dbp[:, 2].sum(0).to(w_h.dtype))

    def _setup_context(ctx, inputs, output):
        x, w_sq, _, w_w, _, w_h, _, center, rscale, _, stats = inputs
        t, mean, _ = output
        ctx.stats = stats
        ctx.m = x.shape[0] * x.shape[2] * x.shape[3]
        ctx.save_for_backward(x, t, mean, center, rscale, w_sq, w_w, w_h)

    def _backward(ctx, dt, dmean, dvar):
        x, u, mean, center, rscale, w_sq, w_w, w_h = ctx.saved_tensors
        if dt is None:
            dt = torch.zeros_like(u)
        # u = (t - center) * r; d mean / dt = 1/M; d var / dt = 2 (t - mean) / M with t = u / r + center:
        # g = r du + k1 u + k0, k1 = 2 dvar / (M r), k0 = dmean / M + 2 dvar (center - mean) / M
        r = rscale.float()
        kv = torch.zeros_like(mean) if (dvar is None or not ctx.stats) else dvar.float() * (2.0 / ctx.m)
        k0 = kv * (center.float() - mean)
        if dmean is not None and ctx.stats:
            k0 = k0 + dmean.float() / ctx.m
        grads = inception_dw_backward(x, u, dt, r, kv / r, k0, w_sq, w_w, w_h)
        return (*grads, None, None, None, None)

    inception_dw.register_autograd(_backward, setup_context=_setup_context)
else:
    inception_dw = inception_dw_backward = None


_TRITON_TYPES = {torch.float32: 'fp32', torch.float16: 'fp16', torch.bfloat16: 'bf16'}


def kernel_specs(c: int, g: int, ks: int, kb: int, x_dtype: torch.dtype, out_dtype: torch.dtype,
                 w_dtype: torch.dtype = None) -> list:
    """The kernels that ``inception_dw`` / ``inception_dw_backward`` launch for a (N, c, H, W) map with groups
    of ``g`` channels, as (name, jit function, signature, constexprs, attrs, options) for
    ``triton.compile(ASTSource(fn, signature, constexprs, attrs), target, options)``: the same block sizes and
    specialisations as the launches (pointers 16-byte aligned, as torch allocates), so that the GPU compiler
    can be run on them without a GPU (tests/models/test_triton_compile.py)."""
    w_dtype = w_dtype or x_dtype
    xt, wt, ot = (_TRITON_TYPES[d] for d in (x_dtype, w_dtype, out_dtype))
    cid = c - 3 * g
    specs = []

    def sig(fn, types):
        ints = ('M', 'H', 'W', 'C', 'T', 'N_TH', 'N_TW', 'H_START')
        signature = {n: types.get(n, 'i32') if not n.isupper() or n in ints
                     or n.endswith('_A') or n.endswith('_BLOCKS') else 'constexpr' for n in fn.arg_names}
        attrs = {(i,): [['tt.divisibility', 16]] for i, n in enumerate(fn.arg_names) if signature[n].startswith('*')}
        return signature, attrs

    for stats in (True, False):
        block_p, block_c = _blocks(g, FWD_TILE)
        fn = kernels.inception_dw_fwd_kernel
        types = {n: f'*{wt}' for n in fn.arg_names if n.startswith(('w_', 'b_'))}
        types.update(x_ptr=f'*{xt}', t_ptr=f'*{ot}', center_ptr='*fp32', rscale_ptr='*fp32', psum_ptr='*fp32',
                     pm2_ptr='*fp32')
        signature, attrs = sig(fn, types)
        specs.append((f'forward{"+stats" if stats else ""}', fn, signature,
                      dict(KS=ks, KB=kb, STATS=stats, BLOCK_P=block_p, BLOCK_C=block_c, SUBTILES=FWD_SUBTILES,
                           ALIGN=_align(cid, g, block_c), TW=BAND_TW), attrs, dict(num_warps=FWD_WARPS)))
    fn = kernels.stats_merge_kernel
    signature, attrs = sig(fn, {n: '*fp32' for n in fn.arg_names if n.endswith('_ptr')})
    block_p, _ = _blocks(g, FWD_TILE)
    consts = dict(BLOCK_P=block_p * FWD_SUBTILES, TH=FWD_SUBTILES * (block_p // BAND_TW), TW=BAND_TW, BLOCK_T=128,
                  BLOCK_C=16)
    specs.append(('stats-merge', fn, signature, consts, attrs, dict(num_warps=4)))
    fn = kernels.inception_dw_bwd_kernel
    block_p, block_c = _blocks(g, BWD_TILE)
    types = {n: '*fp32' for n in fn.arg_names if n.endswith('_ptr')}
    types.update(x_ptr=f'*{xt}', dx_ptr=f'*{xt}', t_ptr=f'*{ot}', dt_ptr=f'*{ot}', w_sq_ptr=f'*{wt}',
                 w_w_ptr=f'*{wt}', w_h_ptr=f'*{wt}')
    signature, attrs = sig(fn, types)
    specs.append(('backward', fn, signature, dict(KS=ks, KB=kb, BLOCK_P=block_p, BLOCK_C=block_c,
                                                  ALIGN=_align(cid, g, block_c), TW=BAND_TW), attrs,
                  dict(num_warps=BWD_WARPS)))
    return specs


def reference(x: torch.Tensor, w_sq: torch.Tensor, b_sq: torch.Tensor, w_w: torch.Tensor, b_w: torch.Tensor,
              w_h: torch.Tensor, b_h: torch.Tensor, center: torch.Tensor, rscale: torch.Tensor,
              out_dtype: torch.dtype, stats: bool) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The same function in torch ops (fp32), for the tests: split, three depthwise convs, cat."""
    import torch.nn.functional as F
    g, ks, kb = w_sq.shape[0], w_sq.shape[-1], w_w.shape[-1]
    xf = x.float()
    x_id, x_sq, x_w, x_h = torch.split(xf, (x.shape[1] - 3 * g, g, g, g), dim=1)
    t = torch.cat((x_id, F.conv2d(x_sq, w_sq.float(), b_sq.float(), padding=ks // 2, groups=g),
                   F.conv2d(x_w, w_w.float(), b_w.float(), padding=(0, kb // 2), groups=g),
                   F.conv2d(x_h, w_h.float(), b_h.float(), padding=(kb // 2, 0), groups=g)), dim=1)
    if stats:
        var, mean = torch.var_mean(t, dim=(0, 2, 3), unbiased=False)
    else:
        mean = var = torch.zeros(x.shape[1], dtype=torch.float32, device=x.device)
    t = ((t - center.float().view(1, -1, 1, 1)) * rscale.float().view(1, -1, 1, 1)).to(out_dtype)
    t = t.contiguous(memory_format=torch.channels_last)
    return t, mean, var
