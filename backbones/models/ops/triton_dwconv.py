"""InceptionNeXt's token mixer (identity | kxk | 1xb | bx1 depthwise branches) as one Triton kernel each way.

``inception_dw(x, w_sq, b_sq, w_w, b_w, w_h, b_h, center, rscale, out_dtype, stats)`` reads a channels-last map
``x`` (N, C, H, W) in place (no channel split, no contiguous copies of the branch slices, no cat) and writes
the mixer's output ``u = (t - center) * rscale``, ``t = cat(x_id, dw_sq(x_sq), dw_w(x_w), dw_h(x_h))``
(per-channel ``center`` and ``rscale``: the BN running mean and inverse std, so that fc1's low-precision GEMMs
see normalised values -- forward and weight gradient -- as the plain block's do) as one channels-last map of
``out_dtype``: the dtype the next GEMM (fc1) takes, so that under autocast the
cast is done here too. Accumulation is fp32; x may be fp32 / fp16 / bf16. With ``stats``, the same pass
returns the per-channel mean (of ``t + center``, i.e. of the mixer output) and the biased variance over
(N, H, W), computed in fp32 from the values before they are rounded to ``out_dtype`` (those of ``u``: the merge
undoes the centre and scale): per-program sums and centred sums of squares, merged with Chan's formula by a
second small kernel (exact, deterministic).
Subtracting a good estimate of the mean (the BN running mean) keeps low-precision outputs accurate for
channels with a large mean.

Backward: one kernel computes, for the gradients ``du``, ``dmean``, ``dvar`` of the three outputs,
``g = du * rscale + dmean / M + 2 dvar (t - mean) / M`` (``t`` from the saved output) and from it the input gradient
(identity channels: ``g``; conv channels: the transposed depthwise conv of ``g``) and per-tile partial
weight and bias gradients, summed in torch (deterministic). ``device_guard``: launches run with the map's device
current.

Memory layout of the launches: a 1-D grid whose program index runs over the channel blocks fastest (the
identity block(s), then the square, 1xb and bx1 groups' blocks of one row block are neighbours in launch
order, so they run together and read the same rows of the map: it is read ~once, not once per channel
block). Each program takes BLOCK_C channels (a power of 2 near the group width) of BLOCK_P rows (the bx1
band's programs: 2-D tiles of one image, BAND_TW columns wide, ``_positions``, so its taps read the tile's rows
plus a halo of b - 1, not b rows per output row); when the
identity and group widths are multiples of ALIGN (<= 8; InceptionNeXt's are multiples of 4) the kernels know
the blocks' first channels and masks are ALIGN-aligned and load / store ALIGN channels per instruction
(vector loads, 64 / 128 bit). The taps are unrolled (``tl.static_range``). The backward's per-tile weight
gradients are stored (tiles, taps, G): one contiguous run of the block's channels per tap. Registers and
spills per kernel, dtype and arch: tests/models/test_triton_compile.py (sm_80 / sm_90 with Triton's compiler).

Registered with ``torch.library.triton_op`` (``inceptionnext::inception_dw`` and its backward
``inceptionnext::inception_dw_backward``) with ``register_autograd``, so torch.compile keeps the kernels
in its graphs. The kernels run wherever Triton runs: CUDA, and CPU tensors under Triton's interpreter
(``TRITON_INTERPRET=1`` set before triton is imported), which the tests use.
"""
from typing import Tuple

import torch

from backbones.models.ops import triton_fold as fold  # noqa: F401  (the fold kernel: fast_block._triton().fold)
from backbones.models.ops.launch import device_guard

try:
    import triton
    import triton.language as tl
    from torch.library import triton_op, wrap_triton
    AVAILABLE = True
except Exception:  # noqa: BLE001  (no triton, or a torch without triton_op)
    AVAILABLE = False

# int32 offsets in the kernels: maps up to 2**31 elements (N*H*W*C)
MAX_NUMEL = 2 ** 31 - 1
FWD_TILE, BWD_TILE = 512, 512  # elements per tile (see _blocks); 1024 took 164 registers with the output scale
FWD_SUBTILES = 4  # tiles per forward program: 4x fewer partial statistics to merge
FWD_WARPS, BWD_WARPS = 8, 8  # 2 elements of a tile per thread
BAND_TW = 8  # columns of the KBx1 band's 2-D tiles (rows: the rest of the tile; see _positions)


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
    @triton.jit
    def _channels(pid_c, CID_A, G_A, ID_BLOCKS, G_BLOCKS, BLOCK_C: tl.constexpr, ALIGN: tl.constexpr):
        """The program's channel block: branch 0 (identity, channels [0, CID)) or 1..3 (KSxKS, 1xKB, KBx1, each
        G channels after the identity ones; CID = CID_A * ALIGN, G = G_A * ALIGN); returns (branch, index
        within the branch, mask, channel)."""
        cid = CID_A * ALIGN
        g = G_A * ALIGN
        is_conv = pid_c >= ID_BLOCKS
        k = tl.maximum(pid_c - ID_BLOCKS, 0)
        branch = tl.where(is_conv, 1 + k // G_BLOCKS, 0)
        local = tl.where(is_conv, k % G_BLOCKS, pid_c) * BLOCK_C + tl.arange(0, BLOCK_C)
        cmask = local < tl.where(is_conv, g, cid)
        base = tl.multiple_of(tl.where(is_conv, cid + (branch - 1) * g, 0), ALIGN)
        return branch, local, cmask, base + local

    @triton.jit
    def _tile(pid, N_CB):
        """(channel block, row block) of a program: the channel blocks of one row block are neighbours in
        the launch order, so they run together and read the same rows (the map is read ~once)."""
        return pid % N_CB, pid // N_CB

    @triton.jit
    def _positions(pid_p, sub, M, H, W, N_TH, N_TW, TWO_D, BLOCK_P: tl.constexpr, TW: tl.constexpr,
                   SUBTILES: tl.constexpr):
        """(rows, mask, h, w) of sub-tile ``sub`` of row block ``pid_p``. 1-D (other branches): SUBTILES x
        BLOCK_P consecutive positions of the flattened (N, H, W) map. 2-D (``TWO_D``: the KBx1 band): tile
        (n, th, tw) of N_TH x N_TW per image, SUBTILES * BLOCK_P / TW rows of TW columns, each sub-tile
        BLOCK_P / TW of those rows: the band's taps then read the tile's rows and a halo of KB - 1, not KB rows
        per output row."""
        k = tl.arange(0, BLOCK_P)
        if TWO_D:
            RS: tl.constexpr = BLOCK_P // TW
            per_image = N_TH * N_TW
            n = pid_p // per_image
            th = (pid_p % per_image) // N_TW
            tw = pid_p % N_TW
            h = th * (SUBTILES * RS) + sub * RS + k // TW
            w = tw * TW + k % TW
            rmask = (n * H * W < M) & (h < H) & (w < W)
            rows = (n * H + h) * W + w
        else:
            rows = (pid_p * SUBTILES + sub) * BLOCK_P + k
            rmask = rows < M
            hw = rows % (H * W)
            h = hw // W
            w = hw % W
        return rows, rmask, h, w

    @triton.jit
    def _taps_fwd(x_ptr, w_ptr, b_ptr, rows, h, w, ch, local, rmask, cmask, H, W, C,
                  KH: tl.constexpr, KW: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
        """Depthwise KHxKW conv (zero padding KH//2, KW//2) at the tile's positions, fp32 (taps unrolled)."""
        acc = tl.zeros((BLOCK_P, BLOCK_C), dtype=tl.float32)
        for i in tl.static_range(KH):
            dh = i - KH // 2
            hh = h + dh
            hok = rmask & (hh >= 0) & (hh < H)
            for j in tl.static_range(KW):
                dw = j - KW // 2
                ww = w + dw
                ok = hok & (ww >= 0) & (ww < W)
                src = rows + (dh * W + dw)
                v = tl.load(x_ptr + src[:, None] * C + ch[None, :], mask=ok[:, None] & cmask[None, :], other=0.)
                wt = tl.load(w_ptr + local * (KH * KW) + (i * KW + j), mask=cmask, other=0.)
                acc += v.to(tl.float32) * wt.to(tl.float32)[None, :]
        b = tl.load(b_ptr + local, mask=cmask, other=0.)
        return acc + b.to(tl.float32)[None, :]

    @triton.jit(do_not_specialize=['M', 'H', 'W', 'CID_A', 'G_A', 'ID_BLOCKS', 'G_BLOCKS', 'N_TH', 'N_TW'])
    def _inception_dw_fwd_kernel(x_ptr, t_ptr, center_ptr, rscale_ptr, w_sq_ptr, b_sq_ptr, w_w_ptr, b_w_ptr, w_h_ptr,
                                 b_h_ptr, psum_ptr, pm2_ptr, M, H, W, CID_A, G_A, ID_BLOCKS, G_BLOCKS, N_TH, N_TW,
                                 KS: tl.constexpr, KB: tl.constexpr, STATS: tl.constexpr,
                                 BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr, SUBTILES: tl.constexpr,
                                 ALIGN: tl.constexpr, TW: tl.constexpr):
        """A program: SUBTILES x BLOCK_P rows (positions) of one channel block; with STATS, the rows' sum and
        sum of squares about their mean per channel (fp32; sub-tiles merged with Chan's formula)."""
        C = (CID_A + 3 * G_A) * ALIGN
        pid_c, pid_p = _tile(tl.program_id(0), ID_BLOCKS + 3 * G_BLOCKS)
        branch, local, cmask, ch = _channels(pid_c, CID_A, G_A, ID_BLOCKS, G_BLOCKS, BLOCK_C, ALIGN)
        centre = tl.load(center_ptr + ch, mask=cmask, other=0.).to(tl.float32)
        rs = tl.load(rscale_ptr + ch, mask=cmask, other=1.).to(tl.float32)
        n_acc = tl.zeros((BLOCK_C,), dtype=tl.float32)
        mean_acc = tl.zeros((BLOCK_C,), dtype=tl.float32)
        m2_acc = tl.zeros((BLOCK_C,), dtype=tl.float32)
        for sub in range(SUBTILES):
            rows, rmask, h, w = _positions(pid_p, sub, M, H, W, N_TH, N_TW, branch == 3, BLOCK_P, TW, SUBTILES)
            m2d = rmask[:, None] & cmask[None, :]
            if branch == 0:
                acc = tl.load(x_ptr + rows[:, None] * C + ch[None, :], mask=m2d, other=0.).to(tl.float32)
            elif branch == 1:
                acc = _taps_fwd(x_ptr, w_sq_ptr, b_sq_ptr, rows, h, w, ch, local, rmask, cmask, H, W, C,
                                KS, KS, BLOCK_P, BLOCK_C)
            elif branch == 2:
                acc = _taps_fwd(x_ptr, w_w_ptr, b_w_ptr, rows, h, w, ch, local, rmask, cmask, H, W, C,
                                1, KB, BLOCK_P, BLOCK_C)
            else:
                acc = _taps_fwd(x_ptr, w_h_ptr, b_h_ptr, rows, h, w, ch, local, rmask, cmask, H, W, C,
                                KB, 1, BLOCK_P, BLOCK_C)
            tc = (acc - centre[None, :]) * rs[None, :]  # the output u; its statistics are unscaled in the merge
            tl.store(t_ptr + rows[:, None] * C + ch[None, :], tc.to(t_ptr.dtype.element_ty), mask=m2d)
            if STATS:
                nb = tl.sum(rmask.to(tl.float32), axis=0) + tl.zeros((BLOCK_C,), dtype=tl.float32)
                mb = tl.sum(tl.where(m2d, tc, 0.), axis=0) / tl.maximum(nb, 1.)
                d = tl.where(m2d, tc - mb[None, :], 0.)
                n_new = n_acc + nb
                delta = mb - mean_acc
                ratio = nb / tl.maximum(n_new, 1.)
                mean_acc = mean_acc + delta * ratio
                m2_acc = m2_acc + tl.sum(d * d, axis=0) + delta * delta * n_acc * ratio
                n_acc = n_new
        if STATS:
            tl.store(psum_ptr + pid_p * C + ch, mean_acc * n_acc, mask=cmask)
            tl.store(pm2_ptr + pid_p * C + ch, m2_acc, mask=cmask)

    @triton.jit(do_not_specialize=['M', 'C', 'T', 'H', 'W', 'N_TH', 'N_TW', 'H_START'])
    def _stats_merge_kernel(psum_ptr, pm2_ptr, center_ptr, rscale_ptr, mean_ptr, var_ptr, M, C, T, H, W, N_TH, N_TW,
                            H_START, BLOCK_P: tl.constexpr, TH: tl.constexpr, TW: tl.constexpr,
                            BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr):
        """Chan's merge of the T per-tile (sum, M2) pairs, BLOCK_T tiles at a time. Tile i holds
        min(BLOCK_P, M - i*BLOCK_P) rows (0 past the map) for channels before H_START; for the KBx1 band's
        channels (from H_START) it is the 2-D tile (n, th, tw) of TH x TW positions, cut at the image's edges."""
        ch = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
        cmask = ch < C
        is_2d = ch >= H_START
        per_image = N_TH * N_TW
        mean = tl.zeros((BLOCK_C,), dtype=tl.float32)
        m2 = tl.zeros((BLOCK_C,), dtype=tl.float32)
        n_acc = tl.zeros((BLOCK_C,), dtype=tl.float32)  # rows merged so far
        for t0 in range(0, T, BLOCK_T):
            ti = t0 + tl.arange(0, BLOCK_T)
            tmask = ti < T
            n1 = tl.minimum(tl.maximum(M - ti * BLOCK_P, 0), BLOCK_P)
            img = ti // per_image
            hh = tl.minimum(tl.maximum(H - ((ti % per_image) // N_TW) * TH, 0), TH)
            ww = tl.minimum(tl.maximum(W - (ti % N_TW) * TW, 0), TW)
            n2 = tl.where(img * H * W < M, hh * ww, 0)
            m2d = tmask[:, None] & cmask[None, :]
            nb = tl.where(m2d, tl.where(is_2d[None, :], n2[:, None], n1[:, None]), 0).to(tl.float32)
            s = tl.load(psum_ptr + ti[:, None] * C + ch[None, :], mask=m2d, other=0.)
            q = tl.load(pm2_ptr + ti[:, None] * C + ch[None, :], mask=m2d, other=0.)
            n_blk = tl.sum(nb, axis=0)
            mean_blk = tl.sum(s, axis=0) / tl.maximum(n_blk, 1.)
            dev = tl.where(nb > 0, s / tl.maximum(nb, 1.) - mean_blk[None, :], 0.)
            m2_blk = tl.sum(q, axis=0) + tl.sum(nb * dev * dev, axis=0)
            n_new = n_acc + n_blk
            delta = mean_blk - mean
            ratio = n_blk / tl.maximum(n_new, 1.)
            mean = mean + delta * ratio
            m2 = m2 + m2_blk + delta * delta * n_acc * ratio
            n_acc = n_new
        centre = tl.load(center_ptr + ch, mask=cmask, other=0.).to(tl.float32)
        rs = tl.load(rscale_ptr + ch, mask=cmask, other=1.).to(tl.float32)
        tl.store(mean_ptr + ch, mean / rs + centre, mask=cmask)
        tl.store(var_ptr + ch, m2 / M / (rs * rs), mask=cmask)

    @triton.jit
    def _grad_at(dt_ptr, t_ptr, a, k1, k0, src, ok, ch, cmask, C):
        """g = a * dt + k1 * t + k0 at rows ``src`` (0 where ``ok`` is false), fp32."""
        m = ok[:, None] & cmask[None, :]
        off = src[:, None] * C + ch[None, :]
        g = tl.load(dt_ptr + off, mask=m, other=0.).to(tl.float32)
        t = tl.load(t_ptr + off, mask=m, other=0.).to(tl.float32)
        return tl.where(m, a[None, :] * g + k1[None, :] * t + k0[None, :], 0.)

    @triton.jit
    def _taps_bwd(x_ptr, dt_ptr, t_ptr, a, k1, k0, w_ptr, dwp_ptr, rows, h, w, ch, local, rmask, cmask, pid_p, G,
                  H, W, C, KH: tl.constexpr, KW: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
        """Input gradient of a depthwise KHxKW conv at the tile's positions; stores the tile's partial weight
        gradients, (T, KH*KW, G): one contiguous run of the block's channels per tap."""
        g_own = _grad_at(dt_ptr, t_ptr, a, k1, k0, rows, rmask, ch, cmask, C)
        dx = tl.zeros((BLOCK_P, BLOCK_C), dtype=tl.float32)
        for i in tl.static_range(KH):
            dh = i - KH // 2
            for j in tl.static_range(KW):
                dw = j - KW // 2
                wt = tl.load(w_ptr + local * (KH * KW) + (i * KW + j), mask=cmask, other=0.).to(tl.float32)
                # dx[p] += w[i, j] * g[p - (dh, dw)]
                hq = h - dh
                wq = w - dw
                okq = rmask & (hq >= 0) & (hq < H) & (wq >= 0) & (wq < W)
                gq = _grad_at(dt_ptr, t_ptr, a, k1, k0, rows - (dh * W + dw), okq, ch, cmask, C)
                dx += gq * wt[None, :]
                # dw[i, j] += sum_p g[p] * x[p + (dh, dw)]
                hs = h + dh
                ws = w + dw
                oks = rmask & (hs >= 0) & (hs < H) & (ws >= 0) & (ws < W)
                xs = tl.load(x_ptr + (rows + (dh * W + dw))[:, None] * C + ch[None, :],
                             mask=oks[:, None] & cmask[None, :], other=0.).to(tl.float32)
                tl.store(dwp_ptr + (pid_p * (KH * KW) + (i * KW + j)) * G + local, tl.sum(g_own * xs, axis=0),
                         mask=cmask)
        return dx, tl.sum(g_own, axis=0)

    @triton.jit(do_not_specialize=['M', 'H', 'W', 'CID_A', 'G_A', 'ID_BLOCKS', 'G_BLOCKS', 'N_TH', 'N_TW'])
    def _inception_dw_bwd_kernel(x_ptr, t_ptr, dt_ptr, a_ptr, k1_ptr, k0_ptr, w_sq_ptr, w_w_ptr, w_h_ptr, dx_ptr,
                                 dwp_sq_ptr, dwp_w_ptr, dwp_h_ptr, dbp_ptr, M, H, W, CID_A, G_A, ID_BLOCKS, G_BLOCKS,
                                 N_TH, N_TW, KS: tl.constexpr, KB: tl.constexpr, BLOCK_P: tl.constexpr,
                                 BLOCK_C: tl.constexpr, ALIGN: tl.constexpr, TW: tl.constexpr):
        C = (CID_A + 3 * G_A) * ALIGN
        G = G_A * ALIGN
        pid_c, pid_p = _tile(tl.program_id(0), ID_BLOCKS + 3 * G_BLOCKS)
        branch, local, cmask, ch = _channels(pid_c, CID_A, G_A, ID_BLOCKS, G_BLOCKS, BLOCK_C, ALIGN)
        rows, rmask, h, w = _positions(pid_p, 0, M, H, W, N_TH, N_TW, branch == 3, BLOCK_P, TW, 1)
        a = tl.load(a_ptr + ch, mask=cmask, other=0.)
        k1 = tl.load(k1_ptr + ch, mask=cmask, other=0.)
        k0 = tl.load(k0_ptr + ch, mask=cmask, other=0.)
        db = tl.zeros((BLOCK_C,), dtype=tl.float32)
        if branch == 0:
            dx = _grad_at(dt_ptr, t_ptr, a, k1, k0, rows, rmask, ch, cmask, C)
        elif branch == 1:
            dx, db = _taps_bwd(x_ptr, dt_ptr, t_ptr, a, k1, k0, w_sq_ptr, dwp_sq_ptr, rows, h, w, ch, local, rmask,
                               cmask, pid_p, G, H, W, C, KS, KS, BLOCK_P, BLOCK_C)
        elif branch == 2:
            dx, db = _taps_bwd(x_ptr, dt_ptr, t_ptr, a, k1, k0, w_w_ptr, dwp_w_ptr, rows, h, w, ch, local, rmask,
                               cmask, pid_p, G, H, W, C, 1, KB, BLOCK_P, BLOCK_C)
        else:
            dx, db = _taps_bwd(x_ptr, dt_ptr, t_ptr, a, k1, k0, w_h_ptr, dwp_h_ptr, rows, h, w, ch, local, rmask,
                               cmask, pid_p, G, H, W, C, KB, 1, BLOCK_P, BLOCK_C)
        tl.store(dx_ptr + rows[:, None] * C + ch[None, :], dx.to(dx_ptr.dtype.element_ty),
                 mask=rmask[:, None] & cmask[None, :])
        if branch > 0:
            tl.store(dbp_ptr + pid_p * (3 * G) + (branch - 1) * G + local, db, mask=cmask)

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
            wrap_triton(_inception_dw_fwd_kernel)[((id_blocks + 3 * g_blocks) * tiles,)](
                x, t, center, rscale, w_sq, b_sq, w_w, b_w, w_h, b_h, psum, pm2, m, hgt, wid, cid // align, g // align,
                id_blocks, g_blocks, n_th, n_tw, KS=ks, KB=kb, STATS=stats, BLOCK_P=block_p, BLOCK_C=block_c,
                SUBTILES=FWD_SUBTILES, ALIGN=align, TW=BAND_TW, num_warps=FWD_WARPS)
            if stats:
                wrap_triton(_stats_merge_kernel)[(triton.cdiv(c, 16),)](
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
            wrap_triton(_inception_dw_bwd_kernel)[((id_blocks + 3 * g_blocks) * tiles,)](
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
        fn = _inception_dw_fwd_kernel
        types = {n: f'*{wt}' for n in fn.arg_names if n.startswith(('w_', 'b_'))}
        types.update(x_ptr=f'*{xt}', t_ptr=f'*{ot}', center_ptr='*fp32', rscale_ptr='*fp32', psum_ptr='*fp32',
                     pm2_ptr='*fp32')
        signature, attrs = sig(fn, types)
        specs.append((f'forward{"+stats" if stats else ""}', fn, signature,
                      dict(KS=ks, KB=kb, STATS=stats, BLOCK_P=block_p, BLOCK_C=block_c, SUBTILES=FWD_SUBTILES,
                           ALIGN=_align(cid, g, block_c), TW=BAND_TW), attrs, dict(num_warps=FWD_WARPS)))
    fn = _stats_merge_kernel
    signature, attrs = sig(fn, {n: '*fp32' for n in fn.arg_names if n.endswith('_ptr')})
    block_p, _ = _blocks(g, FWD_TILE)
    consts = dict(BLOCK_P=block_p * FWD_SUBTILES, TH=FWD_SUBTILES * (block_p // BAND_TW), TW=BAND_TW, BLOCK_T=128,
                  BLOCK_C=16)
    specs.append(('stats-merge', fn, signature, consts, attrs, dict(num_warps=4)))
    fn = _inception_dw_bwd_kernel
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
