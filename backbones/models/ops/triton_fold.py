"""The fast block's per-channel tail -- BN folded into fc1, the layer scale into fc2 -- as one Triton kernel each way.

``fold_mlp(mean, var, center, rscale, bn_weight, bn_bias, eps, w1, b1, gamma, w2, b2)`` returns the weights the
fast block's GEMMs take, for a BN over C channels in front of fc1 (HID x C) whose input reaches fc1 as
``(t - center) * rscale`` (``triton_dwconv``), and a layer scale ``gamma`` after fc2 (C x HID)::

    scale = bn_weight / sqrt(var + eps)          shift = (center - mean) * scale + bn_bias
    w1f = w1 * scale / rscale (per input ch.)   b1f = b1 + w1 @ shift
    w2f = w2 * gamma   (per output channel)     b2f = b2 * gamma

``bn_weight`` / ``bn_bias`` / ``gamma`` may be None (an affine-free BN, no layer scale: w2f, b2f are w2, b2).
In torch ops this is about ten small launches per block and as many in the backward (most of the ~1,100 launches
of a T training step); here one forward kernel (programs over row blocks of w1, then of w2) and two backward
kernels: the same row blocks writing the weight gradients and per-block partial column sums, then one program
per channel block summing those and finishing ``dmean``, ``dvar``, ``dbn_weight``, ``dbn_bias``. Arithmetic in
fp32 (the parameters may be fp32 / fp16 / bf16; results in their dtypes).

Registered with ``torch.library.triton_op`` (``inceptionnext::fold_mlp`` and ``inceptionnext::fold_mlp_backward``)
with ``register_autograd``; the kernels run wherever Triton runs (CUDA; CPU under ``TRITON_INTERPRET=1``, the
tests). ``reference`` is the same function in torch ops.
"""
from typing import Optional, Tuple

import torch

from backbones.models.ops.launch import device_guard

try:
    import triton
    import triton.language as tl
    from torch.library import triton_op, wrap_triton
    AVAILABLE = True
except Exception:  # noqa: BLE001  (no triton, or a torch without triton_op)
    AVAILABLE = False

BLOCK_R, BLOCK_K = 16, 64  # rows per program; columns per step of its loop
WARPS = 4
DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def supported(*tensors) -> bool:
    """Whether the kernels take these parameters (dense, Triton's dtypes, one device)."""
    ts = [t for t in tensors if t is not None]
    return AVAILABLE and all(t.dtype in DTYPES and t.is_contiguous() and t.device == ts[0].device for t in ts)


if AVAILABLE:
    @triton.jit
    def _affine(mean_ptr, var_ptr, center_ptr, bnw_ptr, bnb_ptr, k, kmask, eps,
                HAS_BNW: tl.constexpr, HAS_BNB: tl.constexpr):
        """(inv_std, scale, shift, center - mean) of channels ``k``, fp32."""
        mean = tl.load(mean_ptr + k, mask=kmask, other=0.).to(tl.float32)
        var = tl.load(var_ptr + k, mask=kmask, other=1.).to(tl.float32)
        cm = tl.load(center_ptr + k, mask=kmask, other=0.).to(tl.float32) - mean
        inv = 1.0 / tl.sqrt(var + eps)
        scale = inv
        if HAS_BNW:
            scale = scale * tl.load(bnw_ptr + k, mask=kmask, other=0.).to(tl.float32)
        shift = cm * scale
        if HAS_BNB:
            shift = shift + tl.load(bnb_ptr + k, mask=kmask, other=0.).to(tl.float32)
        return inv, tl.where(kmask, scale, 0.), tl.where(kmask, shift, 0.), cm

    @triton.jit
    def _w1_columns(mean_ptr, var_ptr, center_ptr, rscale_ptr, bnw_ptr, bnb_ptr, rows, rmask, k, C, eps,
                    HAS_BNW: tl.constexpr, HAS_BNB: tl.constexpr):
        """For columns ``k`` (input channels) of fc1's rows ``rows``: (column mask, w1f / w1 = scale / rscale,
        rscale, shift, 2-D mask, offsets into the (HID, C) weight)."""
        kmask = k < C
        _, scale, shift, _ = _affine(mean_ptr, var_ptr, center_ptr, bnw_ptr, bnb_ptr, k, kmask, eps, HAS_BNW, HAS_BNB)
        rs = tl.load(rscale_ptr + k, mask=kmask, other=1.).to(tl.float32)
        return kmask, scale / rs, rs, shift, rmask[:, None] & kmask[None, :], rows[:, None] * C + k[None, :]

    @triton.jit(do_not_specialize=['P1', 'eps'])
    def _fold_fwd_kernel(mean_ptr, var_ptr, center_ptr, rscale_ptr, bnw_ptr, bnb_ptr, w1_ptr, b1_ptr, gamma_ptr, w2_ptr,
                         b2_ptr, w1f_ptr, b1f_ptr, w2f_ptr, b2f_ptr, C, HID, P1, eps,
                         HAS_BNW: tl.constexpr, HAS_BNB: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr):
        """Programs [0, P1): BLOCK_R rows of w1 (w1f, b1f); programs from P1: BLOCK_R rows of w2 (w2f, b2f)."""
        pid = tl.program_id(0)
        r = tl.arange(0, BLOCK_R)
        kk = tl.arange(0, BLOCK_K)
        if pid < P1:
            rows = pid * BLOCK_R + r
            rmask = rows < HID
            acc = tl.zeros((BLOCK_R,), dtype=tl.float32)
            for k0 in range(0, C, BLOCK_K):
                _, f, _, shift, m, off = _w1_columns(mean_ptr, var_ptr, center_ptr, rscale_ptr, bnw_ptr, bnb_ptr,
                                                     rows, rmask, k0 + kk, C, eps, HAS_BNW, HAS_BNB)
                w = tl.load(w1_ptr + off, mask=m, other=0.).to(tl.float32)
                tl.store(w1f_ptr + off, (w * f[None, :]).to(w1f_ptr.dtype.element_ty), mask=m)
                acc += tl.sum(w * shift[None, :], axis=1)
            b = tl.load(b1_ptr + rows, mask=rmask, other=0.).to(tl.float32)
            tl.store(b1f_ptr + rows, (b + acc).to(b1f_ptr.dtype.element_ty), mask=rmask)
        else:
            rows = (pid - P1) * BLOCK_R + r
            rmask = rows < C
            g = tl.load(gamma_ptr + rows, mask=rmask, other=0.).to(tl.float32)
            for k0 in range(0, HID, BLOCK_K):
                k = k0 + kk
                m = rmask[:, None] & (k < HID)[None, :]
                off = rows[:, None] * HID + k[None, :]
                w = tl.load(w2_ptr + off, mask=m, other=0.).to(tl.float32)
                tl.store(w2f_ptr + off, (w * g[:, None]).to(w2f_ptr.dtype.element_ty), mask=m)
            b = tl.load(b2_ptr + rows, mask=rmask, other=0.).to(tl.float32)
            tl.store(b2f_ptr + rows, (b * g).to(b2f_ptr.dtype.element_ty), mask=rmask)

    @triton.jit(do_not_specialize=['P1', 'eps'])
    def _fold_bwd_kernel(dw1f_ptr, db1f_ptr, dw2f_ptr, db2f_ptr, mean_ptr, var_ptr, center_ptr, rscale_ptr, bnw_ptr,
                         bnb_ptr,
                         w1_ptr, gamma_ptr, w2_ptr, b2_ptr, dw1_ptr, dscale_p_ptr, dshift_p_ptr, dw2_ptr, dgamma_ptr,
                         db2_ptr, C, HID, P1, eps,
                         HAS_BNW: tl.constexpr, HAS_BNB: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr):
        """Programs [0, P1): dw1 of BLOCK_R rows and the rows' partial sums per channel of dw1f * w1 (-> d scale)
        and db1f * w1 (-> d shift), stored (P1, C); programs from P1: dw2, d gamma, db2 of BLOCK_R rows of w2."""
        pid = tl.program_id(0)
        r = tl.arange(0, BLOCK_R)
        kk = tl.arange(0, BLOCK_K)
        if pid < P1:
            rows = pid * BLOCK_R + r
            rmask = rows < HID
            db1f = tl.load(db1f_ptr + rows, mask=rmask, other=0.).to(tl.float32)
            for k0 in range(0, C, BLOCK_K):
                k = k0 + kk
                kmask, f, rs, shift, m, off = _w1_columns(mean_ptr, var_ptr, center_ptr, rscale_ptr, bnw_ptr,
                                                          bnb_ptr, rows, rmask, k, C, eps, HAS_BNW, HAS_BNB)
                g = tl.load(dw1f_ptr + off, mask=m, other=0.).to(tl.float32)
                w = tl.load(w1_ptr + off, mask=m, other=0.).to(tl.float32)
                tl.store(dw1_ptr + off, g * f[None, :] + db1f[:, None] * shift[None, :], mask=m)
                tl.store(dscale_p_ptr + pid * C + k, tl.sum(g * w, axis=0) / rs, mask=kmask)
                tl.store(dshift_p_ptr + pid * C + k, tl.sum(db1f[:, None] * w, axis=0), mask=kmask)
        else:
            rows = (pid - P1) * BLOCK_R + r
            rmask = rows < C
            gam = tl.load(gamma_ptr + rows, mask=rmask, other=0.).to(tl.float32)
            acc = tl.zeros((BLOCK_R,), dtype=tl.float32)
            for k0 in range(0, HID, BLOCK_K):
                k = k0 + kk
                m = rmask[:, None] & (k < HID)[None, :]
                off = rows[:, None] * HID + k[None, :]
                g = tl.load(dw2f_ptr + off, mask=m, other=0.).to(tl.float32)
                w = tl.load(w2_ptr + off, mask=m, other=0.).to(tl.float32)
                tl.store(dw2_ptr + off, g * gam[:, None], mask=m)
                acc += tl.sum(g * w, axis=1)
            db2f = tl.load(db2f_ptr + rows, mask=rmask, other=0.).to(tl.float32)
            b2 = tl.load(b2_ptr + rows, mask=rmask, other=0.).to(tl.float32)
            tl.store(dgamma_ptr + rows, acc + db2f * b2, mask=rmask)
            tl.store(db2_ptr + rows, db2f * gam, mask=rmask)

    @triton.jit(do_not_specialize=['P1', 'eps'])
    def _fold_tail_kernel(dscale_p_ptr, dshift_p_ptr, mean_ptr, var_ptr, center_ptr, bnw_ptr, bnb_ptr,
                          dmean_ptr, dvar_ptr, dbnw_ptr, dbnb_ptr, C, P1, eps,
                          HAS_BNW: tl.constexpr, HAS_BNB: tl.constexpr, BLOCK_P: tl.constexpr,
                          BLOCK_C: tl.constexpr):
        """Per channel: d scale and d shift summed over the P1 row blocks, then through scale and shift."""
        k = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
        kmask = k < C
        dscale = tl.zeros((BLOCK_C,), dtype=tl.float32)
        dshift = tl.zeros((BLOCK_C,), dtype=tl.float32)
        for p0 in range(0, P1, BLOCK_P):
            p = p0 + tl.arange(0, BLOCK_P)
            m = (p < P1)[:, None] & kmask[None, :]
            off = p[:, None] * C + k[None, :]
            dscale += tl.sum(tl.load(dscale_p_ptr + off, mask=m, other=0.), axis=0)
            dshift += tl.sum(tl.load(dshift_p_ptr + off, mask=m, other=0.), axis=0)
        inv, scale, _, cm = _affine(mean_ptr, var_ptr, center_ptr, bnw_ptr, bnb_ptr, k, kmask, eps, HAS_BNW, HAS_BNB)
        # shift = cm * scale + bias, cm = center - mean; scale = bnw * inv, inv = (var + eps)^-1/2
        dscale_all = dscale + dshift * cm
        tl.store(dmean_ptr + k, -dshift * scale, mask=kmask)
        dinv = dscale_all
        if HAS_BNW:
            dinv = dscale_all * tl.load(bnw_ptr + k, mask=kmask, other=0.).to(tl.float32)
            tl.store(dbnw_ptr + k, dscale_all * inv, mask=kmask)
        if HAS_BNB:
            tl.store(dbnb_ptr + k, dshift, mask=kmask)
        tl.store(dvar_ptr + k, dinv * (-0.5) * inv * inv * inv, mask=kmask)

    def _dummy(t: Optional[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
        return like if t is None else t

    @triton_op('inceptionnext::fold_mlp', mutates_args=())
    def fold_mlp_op(mean: torch.Tensor, var: torch.Tensor, center: torch.Tensor, rscale: torch.Tensor,
                    bn_weight: Optional[torch.Tensor],
                    bn_bias: Optional[torch.Tensor], eps: float, w1: torch.Tensor, b1: torch.Tensor,
                    gamma: Optional[torch.Tensor], w2: torch.Tensor,
                    b2: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(w1f, b1f, w2f, b2f); without ``gamma`` w2f / b2f are empty (the caller uses w2 / b2)."""
        hid, c = w1.shape
        p1 = triton.cdiv(hid, BLOCK_R)
        p2 = triton.cdiv(c, BLOCK_R) if gamma is not None else 0
        w1f, b1f = torch.empty_like(w1), torch.empty_like(b1)
        w2f = torch.empty_like(w2) if gamma is not None else w2.new_empty(0)
        b2f = torch.empty_like(b2) if gamma is not None else b2.new_empty(0)
        with device_guard(w1.device):
            wrap_triton(_fold_fwd_kernel)[(p1 + p2,)](
                mean, var, center, rscale, _dummy(bn_weight, mean), _dummy(bn_bias, mean), w1, b1, _dummy(gamma, mean),
                w2, b2, w1f, b1f, w2f if gamma is not None else w2, b2f if gamma is not None else b2, c, hid, p1, eps,
                HAS_BNW=bn_weight is not None, HAS_BNB=bn_bias is not None, BLOCK_R=BLOCK_R, BLOCK_K=BLOCK_K,
                num_warps=WARPS)
        return w1f, b1f, w2f, b2f

    @triton_op('inceptionnext::fold_mlp_backward', mutates_args=())
    def fold_mlp_backward(dw1f: torch.Tensor, db1f: torch.Tensor, dw2f: Optional[torch.Tensor],
                          db2f: Optional[torch.Tensor], mean: torch.Tensor, var: torch.Tensor, center: torch.Tensor,
                          rscale: torch.Tensor, bn_weight: Optional[torch.Tensor], bn_bias: Optional[torch.Tensor],
                          eps: float,
                          w1: torch.Tensor, gamma: Optional[torch.Tensor], w2: torch.Tensor, b2: torch.Tensor
                          ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                                     torch.Tensor, torch.Tensor, torch.Tensor]:
        """fp32 (dmean, dvar, dbn_weight, dbn_bias, dw1, dgamma, dw2, db2); without gamma the last three are
        empty, without bn_weight / bn_bias their gradients are."""
        hid, c = w1.shape
        p1 = triton.cdiv(hid, BLOCK_R)
        p2 = triton.cdiv(c, BLOCK_R) if gamma is not None else 0
        kw = dict(device=w1.device, dtype=torch.float32)
        dw1 = torch.empty((hid, c), **kw)
        dscale_p, dshift_p = torch.empty((p1, c), **kw), torch.empty((p1, c), **kw)
        dmean, dvar = torch.empty(c, **kw), torch.empty(c, **kw)
        dbnw = torch.empty(c if bn_weight is not None else 0, **kw)
        dbnb = torch.empty(c if bn_bias is not None else 0, **kw)
        g2 = gamma is not None
        dw2 = torch.empty(w2.shape if g2 else (0,), **kw)
        dgamma, db2 = torch.empty(c if g2 else 0, **kw), torch.empty(c if g2 else 0, **kw)
        if g2:
            dw2f = dw2f.contiguous()
        with device_guard(w1.device):
            wrap_triton(_fold_bwd_kernel)[(p1 + p2,)](
                dw1f.contiguous(), db1f.contiguous(), dw2f if g2 else dw1, db2f if g2 else db1f, mean, var, center,
                rscale, _dummy(bn_weight, mean), _dummy(bn_bias, mean), w1, _dummy(gamma, mean), w2, b2, dw1, dscale_p,
                dshift_p, dw2 if g2 else dw1, dgamma if g2 else dmean, db2 if g2 else dmean, c, hid, p1, eps,
                HAS_BNW=bn_weight is not None, HAS_BNB=bn_bias is not None, BLOCK_R=BLOCK_R, BLOCK_K=BLOCK_K,
                num_warps=WARPS)
            wrap_triton(_fold_tail_kernel)[(triton.cdiv(c, 32),)](
                dscale_p, dshift_p, mean, var, center, _dummy(bn_weight, mean), _dummy(bn_bias, mean), dmean, dvar,
                dbnw if bn_weight is not None else dmean, dbnb if bn_bias is not None else dmean, c, p1, eps,
                HAS_BNW=bn_weight is not None, HAS_BNB=bn_bias is not None, BLOCK_P=32, BLOCK_C=32, num_warps=WARPS)
        return dmean, dvar, dbnw, dbnb, dw1, dgamma, dw2, db2

    def _setup_context(ctx, inputs, output):
        mean, var, center, rscale, bn_weight, bn_bias, eps, w1, b1, gamma, w2, b2 = inputs
        ctx.eps = eps
        ctx.has = (bn_weight is not None, bn_bias is not None, gamma is not None)
        ctx.dtypes = [None if t is None else t.dtype for t in (mean, var, bn_weight, bn_bias, w1, b1, gamma, w2, b2)]
        ctx.save_for_backward(mean, var, center, rscale, bn_weight, bn_bias, w1, gamma, w2, b2)

    def _backward(ctx, dw1f, db1f, dw2f, db2f):
        mean, var, center, rscale, bn_weight, bn_bias, w1, gamma, w2, b2 = ctx.saved_tensors
        has_w, has_b, has_g = ctx.has
        dw1f = torch.zeros_like(w1) if dw1f is None else dw1f
        db1f = w1.new_zeros(w1.shape[0]) if db1f is None else db1f
        if has_g:
            dw2f = torch.zeros_like(w2) if dw2f is None else dw2f
            db2f = torch.zeros_like(b2) if db2f is None else db2f
        dmean, dvar, dbnw, dbnb, dw1, dgamma, dw2, db2 = fold_mlp_backward(
            dw1f, db1f, dw2f if has_g else None, db2f if has_g else None, mean, var, center, rscale,
            bn_weight, bn_bias, ctx.eps, w1, gamma, w2, b2)
        t_mean, t_var, t_bnw, t_bnb, t_w1, t_b1, t_g, t_w2, t_b2 = ctx.dtypes
        if not has_g:  # w2f / b2f were empty: w2 and b2 reach the GEMMs directly, their gradients elsewhere
            dgamma, dw2, db2 = None, None, None
        return (dmean.to(t_mean), dvar.to(t_var), None, None, dbnw.to(t_bnw) if has_w else None,
                dbnb.to(t_bnb) if has_b else None, None, dw1.to(t_w1), db1f.to(t_b1),
                dgamma.to(t_g) if has_g else None, dw2.to(t_w2) if has_g else None, db2.to(t_b2) if has_g else None)

    fold_mlp_op.register_autograd(_backward, setup_context=_setup_context)
else:
    fold_mlp_op = fold_mlp_backward = None


def fold_mlp(mean, var, center, rscale, bn_weight, bn_bias, eps, w1, b1, gamma, w2, b2):
    """(w1f, b1f, w2f, b2f) by the kernels (see the module docstring); w1 / w2 as 2-D (rows, columns)."""
    w1f, b1f, w2f, b2f = fold_mlp_op(mean, var, center, rscale, bn_weight, bn_bias, float(eps), w1, b1, gamma, w2,
                                     b2)
    return (w1f, b1f, w2f, b2f) if gamma is not None else (w1f, b1f, w2, b2)


def reference(mean, var, center, rscale, bn_weight, bn_bias, eps, w1, b1, gamma, w2, b2):
    """The same function in torch ops (fp32 arithmetic, results in the parameters' dtypes)."""
    scale = torch.rsqrt(var.float() + eps)
    if bn_weight is not None:
        scale = scale * bn_weight.float()
    shift = (center.float() - mean.float()) * scale
    if bn_bias is not None:
        shift = shift + bn_bias.float()
    w1f = (w1.float() * (scale / rscale.float())).to(w1.dtype)
    b1f = (b1.float() + w1.float() @ shift).to(b1.dtype)
    if gamma is None:
        return w1f, b1f, w2, b2
    return w1f, b1f, (w2.float() * gamma.float().view(-1, 1)).to(w2.dtype), (b2.float() * gamma.float()).to(b2.dtype)


_TRITON_TYPES = {torch.float32: 'fp32', torch.float16: 'fp16', torch.bfloat16: 'bf16'}


def kernel_specs(p_dtype: torch.dtype = torch.float32) -> list:
    """The three kernels as (name, jit function, signature, constexprs, attrs, options) for
    ``triton.compile`` without a GPU (tests/models/test_triton_compile.py); parameters of ``p_dtype``, BN affine and
    layer scale present, statistics fp32, widths as T's."""
    pt = _TRITON_TYPES[p_dtype]
    fp32_ptrs = ('mean_ptr', 'var_ptr', 'center_ptr', 'rscale_ptr', 'dw1_ptr', 'dscale_p_ptr', 'dshift_p_ptr',
                 'dw2_ptr', 'dgamma_ptr', 'db2_ptr', 'dmean_ptr', 'dvar_ptr', 'dbnw_ptr', 'dbnb_ptr')
    specs = []
    for name, fn, const in (
            ('fold-forward', _fold_fwd_kernel, dict(BLOCK_R=BLOCK_R, BLOCK_K=BLOCK_K)),
            ('fold-backward', _fold_bwd_kernel, dict(BLOCK_R=BLOCK_R, BLOCK_K=BLOCK_K)),
            ('fold-tail', _fold_tail_kernel, dict(BLOCK_P=32, BLOCK_C=32))):
        signature = {}
        for n in fn.arg_names:
            if n.endswith('_ptr'):
                signature[n] = '*fp32' if n in fp32_ptrs else f'*{pt}'
            elif n == 'eps':
                signature[n] = 'fp32'
            elif n in ('C', 'HID', 'P1'):
                signature[n] = 'i32'
            else:
                signature[n] = 'constexpr'
        const = dict(const, HAS_BNW=True, HAS_BNB=True)
        # pointers 16-byte aligned (torch's allocations); C and HID multiples of 16 (InceptionNeXt-T..B's widths:
        # Triton specialises such integers, so the rows' loads vectorise)
        attrs = {(i,): [['tt.divisibility', 16]] for i, n in enumerate(fn.arg_names)
                 if signature[n].startswith('*') or n in ('C', 'HID')}
        specs.append((name, fn, signature, const, attrs, dict(num_warps=WARPS)))
    return specs
