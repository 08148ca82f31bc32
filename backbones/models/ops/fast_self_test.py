"""The first-use self-test of the Triton ops: each configuration's kernels run on a small input and are compared
with the same function in torch ops (``triton_dwconv.reference``, ``triton_fold.reference``). ``fast_block``
runs it once per configuration and process; docs/gpu.md ("Safety when the fast path is taken")."""
from typing import Optional

import torch

SELF_TEST_SHAPE = (2, 13, 11)  # (N, H, W): more rows than one forward program takes (its statistics merged)
SELF_TEST_TOL = {torch.float32: 1e-4, torch.float16: 4e-3, torch.bfloat16: 3e-2}


def self_test(td, device: torch.device, x_dtype, w_dtype, out_dtype, c: int, g: int, ks: int, kb: int) -> Optional[str]:
    """Runs the Triton op (forward with and without statistics, backward) on a small input on ``device``
    and compares it with the torch computation (``triton_dwconv.reference``, fp32, TF32 off); returns None
    when it matches, else what failed (a compile or launch error, or the largest mismatch)."""
    from torch.utils._python_dispatch import _disable_current_modes
    tol = max(SELF_TEST_TOL.get(d, 1e-4) for d in (x_dtype, out_dtype))
    gen = torch.Generator().manual_seed(0)
    n, h, w = SELF_TEST_SHAPE

    def rnd(*shape, scale=1.0, dtype=torch.float32):
        return (torch.randn(*shape, generator=gen) * scale).to(device=device, dtype=dtype)

    try:  # real tensors also while torch.compile / make_fx trace the caller
        with _disable_current_modes(), torch.enable_grad(), torch.autocast(device.type, enabled=False), \
                torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
            x = rnd(n, c, h, w, dtype=x_dtype).contiguous(memory_format=torch.channels_last)
            ws = [rnd(g, 1, ks, ks, scale=0.3, dtype=w_dtype), rnd(g, dtype=w_dtype),
                  rnd(g, 1, 1, kb, scale=0.3, dtype=w_dtype), rnd(g, dtype=w_dtype),
                  rnd(g, 1, kb, 1, scale=0.3, dtype=w_dtype), rnd(g, dtype=w_dtype)]
            center = rnd(c, scale=0.3)
            rscale = rnd(c).abs() + 0.5
            dout = (rnd(n, c, h, w, dtype=out_dtype).contiguous(memory_format=torch.channels_last), rnd(c), rnd(c))
            for stats in (True, False):
                res = []
                for fn in (td.inception_dw, td.reference):
                    leaves = [x.detach().clone().requires_grad_()] + [p.detach().clone().requires_grad_() for p in ws]
                    outs = fn(leaves[0], *leaves[1:], center, rscale, out_dtype, stats)
                    grads = torch.autograd.grad(outs[0] if not stats else outs, leaves,
                                                dout[0] if not stats else dout, allow_unused=True)
                    res.append(list(outs if stats else outs[:1]) + list(grads))
                if res[0][0].dtype != out_dtype or not res[0][0].is_contiguous(memory_format=torch.channels_last):
                    return f'output {res[0][0].dtype}, {res[0][0].stride()} (expected {out_dtype}, channels-last)'
                for i, (a, b) in enumerate(zip(*res)):
                    if a is None or b is None or a.shape != b.shape:
                        return f'output {i} (stats={stats}): missing or of shape {getattr(a, "shape", None)}'
                    err = (a.float() - b.float()).abs().max().item()
                    if not err <= tol * b.float().abs().max().item() + 1e-5:  # (also NaN)
                        return f'mismatch of output {i} (stats={stats}): {err:.3g} vs scale {b.abs().max().item():.3g}'
            bad = self_test_fold(td, rnd, c, w_dtype)
            if bad:
                return bad
    except Exception as e:  # noqa: BLE001  (compile errors, launch errors: reported, the plain block runs)
        if isinstance(e, torch.OutOfMemoryError):
            raise
        return f'{type(e).__name__}: {str(e).strip().splitlines()[0][:300] if str(e).strip() else ""}'
    return None


def self_test_fold(td, rnd, c: int, w_dtype) -> Optional[str]:
    """The fold kernel (``triton_fold``) against its torch form, forward and backward, for ``c`` channels and an
    MLP of 4c (parameters of ``w_dtype``; statistics fp32); None when it matches."""
    triton_fold = td.fold
    if not triton_fold.supported(rnd(1, dtype=w_dtype)):
        return None  # (the torch ops fold)
    hid = 4 * c
    leaves = [rnd(c), rnd(c).abs() + 0.5, rnd(c, dtype=w_dtype), rnd(c, dtype=w_dtype), rnd(hid, c, dtype=w_dtype),
              rnd(hid, dtype=w_dtype), rnd(c, scale=0.1, dtype=w_dtype), rnd(c, hid, dtype=w_dtype),
              rnd(c, dtype=w_dtype)]
    center, rscale = rnd(c, scale=0.3), rnd(c).abs() + 0.5
    tol = SELF_TEST_TOL.get(w_dtype, 1e-4)
    res = []
    for fn in (triton_fold.fold_mlp, triton_fold.reference):
        ins = [p.detach().clone().requires_grad_() for p in leaves]
        mean, var, bw, bb, w1, b1, g, w2, b2 = ins
        outs = fn(mean, var, center, rscale, bw, bb, 1e-5, w1, b1, g, w2, b2)
        douts = [torch.ones_like(o) * torch.linspace(-1, 1, o.numel(), device=o.device).view(o.shape).to(o.dtype)
                 for o in outs]
        res.append(list(outs) + list(torch.autograd.grad(outs, ins, douts)))
    for i, (a, b) in enumerate(zip(*res)):
        err = (a.float() - b.float()).abs().max().item()
        if a.dtype != b.dtype or not err <= tol * b.float().abs().max().item() + 1e-5:
            return f'mismatch of the fold kernel output {i}: {err:.3g} vs scale {b.float().abs().max().item():.3g}'
    return None

