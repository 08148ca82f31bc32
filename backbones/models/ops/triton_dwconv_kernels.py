"""The Triton kernels of InceptionNeXt's token mixer (``triton_dwconv.inception_dw`` launches them): the forward
(identity | kxk | 1xb | bx1 depthwise branches of a channels-last map in one pass, with per-tile batch statistics),
the statistics merge (Chan's formula, deterministic) and the backward (input gradient and per-tile weight and bias
gradients). Grid order, channel blocks, 2-D tiles of the bx1 band, registers: docs/gpu.md ("Kernel layout").
Imported only where Triton is installed.
"""
import triton
import triton.language as tl


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
def inception_dw_fwd_kernel(x_ptr, t_ptr, center_ptr, rscale_ptr, w_sq_ptr, b_sq_ptr, w_w_ptr, b_w_ptr, w_h_ptr,
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
def stats_merge_kernel(psum_ptr, pm2_ptr, center_ptr, rscale_ptr, mean_ptr, var_ptr, M, C, T, H, W, N_TH, N_TW,
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
def inception_dw_bwd_kernel(x_ptr, t_ptr, dt_ptr, a_ptr, k1_ptr, k0_ptr, w_sq_ptr, w_w_ptr, w_h_ptr, dx_ptr,
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
