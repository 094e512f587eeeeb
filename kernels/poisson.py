"""poisson_blend in Triton; mirrors anofast/reference/poisson.py operation by operation (launched without FMA fusion).

One program per patch runs the whole fixed schedule (every channel's V-cycles, the threshold, the vote and the mask
update), looping over tiles of each level; ``tl.debug_barrier()`` separates passes that read what another tile of the
same program wrote. Level arrays live in a host-allocated workspace with the canvas's level strides; loop bounds are the
patch's own level extents ``ceil(h / 2**l)`` and its own level count.
"""

import torch
import triton
import triton.language as tl

from anofast._validate import unit_float
from anofast.reference import poisson as _ref
from anofast.reference.poisson import levels, num_levels

PRE = tl.constexpr(_ref.PRE)
POST = tl.constexpr(_ref.POST)
COARSE = tl.constexpr(_ref.COARSE)
MAJORITY = tl.constexpr(_ref.MAJORITY)


@triton.jit
def _pixel(ptr, offs, mask, U8: tl.constexpr):
    """float32 pixels, or uint8 ones read as ``float32(v) * float32(1 / 255)``."""
    if U8:
        return tl.load(ptr + offs, mask=mask, other=0).to(tl.float32) * (1.0 / 255.0)
    else:
        return tl.load(ptr + offs, mask=mask, other=0.0)


@triton.jit
def _tile(t, n, w, BLOCK: tl.constexpr):
    """The tile of flat indices ``t .. t + BLOCK`` of a row-major ``n``-cell grid ``w`` wide: row, column, in range."""
    idx = t + tl.arange(0, BLOCK)
    return idx // w, idx % w, idx < n


@triton.jit
def _level(tab_ptr, l, h, w):
    """Level ``l``'s workspace offset and row stride, and the patch's extents ``ceil(h / 2**l)``, ``ceil(w / 2**l)``."""
    off = tl.load(tab_ptr + 3 * l)
    st = tl.load(tab_ptr + 3 * l + 2)
    return off, st, (h + (1 << l) - 1) >> l, (w + (1 << l) - 1) >> l


@triton.jit
def _active(m_ptr, a, mask):
    """``mask`` narrowed to the cells ``a`` whose domain byte is set."""
    return mask & (tl.load(m_ptr + a, mask=mask, other=0) != 0)


@triton.jit
def _neighbours(x_ptr, a, stride, mask):
    """Sum of the 4-neighbours of the cells ``a``, as (up + down) + (left + right)."""
    up = tl.load(x_ptr + a - stride, mask=mask, other=0.0)
    dn = tl.load(x_ptr + a + stride, mask=mask, other=0.0)
    lf = tl.load(x_ptr + a - 1, mask=mask, other=0.0)
    return (up + dn) + (lf + tl.load(x_ptr + a + 1, mask=mask, other=0.0))


@triton.jit
def _smooth(x_ptr, b_ptr, m_ptr, off, stride, hl, wl, sweeps, BLOCK: tl.constexpr):
    n = hl * wl
    for _s in range(0, sweeps):
        for colour in range(0, 2):
            for t in range(0, n, BLOCK):
                i, j, ok = _tile(t, n, wl, BLOCK)
                a = off + i * stride + j
                act = _active(m_ptr, a, ok & (((i + j) & 1) == colour))
                s = _neighbours(x_ptr, a, stride, act)
                v = (tl.load(b_ptr + a, mask=act, other=0.0) + s) * 0.25
                tl.store(x_ptr + a, v, mask=act)
            tl.debug_barrier()


@triton.jit
def _edge(src, img, a, g, da, dg, sp, dp, act, mixed):
    """Guidance toward one neighbour (``src + a + da`` in the source patch, ``img + g + dg`` on the canvas): the
    source difference, or in mixed mode the destination difference unless the source one is larger in magnitude."""
    s = sp - tl.load(src + a + da, mask=act, other=0.0)
    d = dp - tl.load(img + g + dg, mask=act, other=0.0)
    return tl.where(mixed & ~(tl.abs(s) > tl.abs(d)), d, s)


@triton.jit
def _poisson_kernel(
    out_ptr,  # (B, C, H, W) float32, destination and result
    orig_ptr,  # (B, C, H, W) float32 or uint8
    mask_ptr,  # (B, 1, H, W) float32
    diff_ptr,  # (B, 1, H, W) float32 (unused without HAS_DIFF)
    img_ptr,  # (N, C, Hs, Ws) float32 or uint8 source images
    sidx_ptr,  # (B,) int32
    sbox_ptr,  # (B, 4) int32 (sy, sx, sh, sw)
    scale_ptr,  # (B, 2) float32
    box_ptr,  # (B, 4) int32 (y0, x0, h, w)
    mode_ptr,  # (B,) int32
    region_ptr,  # (B, 1, H, W) uint8 (unused without HAS_REGION)
    nlev_ptr,  # (B,) int32 level count of each patch
    tab_ptr,  # (L + 1, 3) int32 level offset, rows, stride (canvas sizes)
    wm_ptr,  # (B, TOT) uint8 level domains
    wsrc_ptr,  # (B, C, Hp*Wp) float32 resampled source
    wx_ptr,  # (B, TOT) float32 unknowns / errors
    wb_ptr,  # (B, TOT) float32 right-hand sides
    wr_ptr,  # (B, Hp*Wp) float32 residual
    wd_ptr,  # (B, C, Hp*Wp) float32 destination patch
    ws_ptr,  # (B, C, Hp*Wp) float32 clamped solution
    wc_ptr,  # (B, Hp*Wp) int32 candidates
    H,
    W,
    HS,
    WS,
    HP,
    WP,
    TOT,
    cycles,
    tol_sum,
    C: tl.constexpr,
    HAS_REGION: tl.constexpr,
    HAS_DIFF: tl.constexpr,
    ORIG_U8: tl.constexpr,
    SRC_U8: tl.constexpr,
    BLOCK: tl.constexpr,
):
    pb = tl.program_id(0).to(tl.int64)
    y0 = tl.load(box_ptr + 4 * pb)
    x0 = tl.load(box_ptr + 4 * pb + 1)
    h = tl.load(box_ptr + 4 * pb + 2)
    w = tl.load(box_ptr + 4 * pb + 3)
    if (h > 0) & (w > 0):
        mixed = tl.load(mode_ptr + pb) != 0
        L = tl.load(nlev_ptr + pb)
        n = h * w
        wm = wm_ptr + pb * TOT
        wx = wx_ptr + pb * TOT
        wb = wb_ptr + pb * TOT
        wr = wr_ptr + pb * HP * WP
        wc = wc_ptr + pb * HP * WP
        # level domains: region inside the box minus its border; a coarse cell is active iff its 2x2 children are
        for t in range(0, n, BLOCK):
            i, j, ok = _tile(t, n, w, BLOCK)
            act = (i >= 1) & (i <= h - 2) & (j >= 1) & (j <= w - 2)
            if HAS_REGION:
                act = act & (tl.load(region_ptr + pb * H * W + (y0 + i) * W + x0 + j, mask=ok, other=0) != 0)
            tl.store(wm + i * WP + j, act.to(tl.uint8), mask=ok)
        tl.debug_barrier()
        for l in range(1, L):
            foff, fst, hf, wf = _level(tab_ptr, l - 1, h, w)
            off, st, hl, wl = _level(tab_ptr, l, h, w)
            nl = hl * wl
            for t in range(0, nl, BLOCK):
                i, j, ok = _tile(t, nl, wl, BLOCK)
                fa = foff + 2 * i * fst + 2 * j
                inb = ok & (2 * i + 1 < hf) & (2 * j + 1 < wf)
                act = (tl.load(wm + fa, mask=inb, other=0) != 0) & (tl.load(wm + fa + 1, mask=inb, other=0) != 0)
                act = act & (tl.load(wm + fa + fst, mask=inb, other=0) != 0)
                act = act & (tl.load(wm + fa + fst + 1, mask=inb, other=0) != 0)
                tl.store(wm + off + i * st + j, (inb & act).to(tl.uint8), mask=ok)
            tl.debug_barrier()
        # bilinear resampling of the source rectangle to h x w
        sk = tl.load(sidx_ptr + pb).to(tl.int64)
        sy = tl.load(sbox_ptr + 4 * pb)
        sx = tl.load(sbox_ptr + 4 * pb + 1)
        ytop = tl.maximum(tl.load(sbox_ptr + 4 * pb + 2) - 1, 0)
        xtop = tl.maximum(tl.load(sbox_ptr + 4 * pb + 3) - 1, 0)
        scy = tl.load(scale_ptr + 2 * pb)
        scx = tl.load(scale_ptr + 2 * pb + 1)
        for t in range(0, n, BLOCK):
            i, j, ok = _tile(t, n, w, BLOCK)
            fy = (i.to(tl.float32) + 0.5) * scy - 0.5
            fy = tl.where(fy > 0.0, fy, 0.0)
            iy = tl.minimum(fy.to(tl.int32), ytop)
            wy = fy - iy.to(tl.float32)
            iy1 = tl.minimum(iy + 1, ytop)
            fx = (j.to(tl.float32) + 0.5) * scx - 0.5
            fx = tl.where(fx > 0.0, fx, 0.0)
            ix = tl.minimum(fx.to(tl.int32), xtop)
            wx_ = fx - ix.to(tl.float32)
            ix1 = tl.minimum(ix + 1, xtop)
            r0 = tl.minimum(tl.maximum(sy + iy, 0), HS - 1)
            r1 = tl.minimum(tl.maximum(sy + iy1, 0), HS - 1)
            c0 = tl.minimum(tl.maximum(sx + ix, 0), WS - 1)
            c1 = tl.minimum(tl.maximum(sx + ix1, 0), WS - 1)
            for c in range(0, C):
                p = img_ptr + (sk * C + c) * HS * WS
                p00 = _pixel(p, r0 * WS + c0, ok, SRC_U8)
                p01 = _pixel(p, r0 * WS + c1, ok, SRC_U8)
                p10 = _pixel(p, r1 * WS + c0, ok, SRC_U8)
                p11 = _pixel(p, r1 * WS + c1, ok, SRC_U8)
                top = p00 + (p01 - p00) * wx_
                bot = p10 + (p11 - p10) * wx_
                tl.store(wsrc_ptr + (pb * C + c) * HP * WP + i * WP + j, top + (bot - top) * wy, mask=ok)
        tl.debug_barrier()
        for c in range(0, C):
            img = out_ptr + (pb * C + c) * H * W
            src = wsrc_ptr + (pb * C + c) * HP * WP
            wd = wd_ptr + (pb * C + c) * HP * WP
            # level 0: destination, guidance field and start value
            for t in range(0, n, BLOCK):
                i, j, ok = _tile(t, n, w, BLOCK)
                a = i * WP + j
                g = (y0 + i) * W + x0 + j
                d = tl.load(img + g, mask=ok, other=0.0)
                tl.store(wd + a, d, mask=ok)
                act = _active(wm, a, ok)
                sp = tl.load(src + a, mask=act, other=0.0)
                up = _edge(src, img, a, g, -WP, -W, sp, d, act, mixed)
                dn = _edge(src, img, a, g, WP, W, sp, d, act, mixed)
                lf = _edge(src, img, a, g, -1, -1, sp, d, act, mixed)
                rt = _edge(src, img, a, g, 1, 1, sp, d, act, mixed)
                tl.store(wb + a, tl.where(act, (up + dn) + (lf + rt), 0.0), mask=ok)
                tl.store(wx + a, tl.where(act, sp, d), mask=ok)
            tl.debug_barrier()
            for _cyc in range(0, cycles):
                for l in range(0, L - 1):  # down the V
                    off, st, hl, wl = _level(tab_ptr, l, h, w)
                    coff, cst, hc, wcc = _level(tab_ptr, l + 1, h, w)
                    _smooth(wx, wb, wm, off, st, hl, wl, PRE, BLOCK)
                    nl = hl * wl
                    for t in range(0, nl, BLOCK):
                        i, j, ok = _tile(t, nl, wl, BLOCK)
                        a = off + i * st + j
                        act = _active(wm, a, ok)
                        x = tl.load(wx + a, mask=act, other=0.0)
                        s = _neighbours(wx, a, st, act)
                        r = (tl.load(wb + a, mask=act, other=0.0) + s) - 4.0 * x
                        tl.store(wr + i * wl + j, tl.where(act, r, 0.0), mask=ok)
                    tl.debug_barrier()
                    ncl = hc * wcc
                    for t in range(0, ncl, BLOCK):
                        ci, cj, ok = _tile(t, ncl, wcc, BLOCK)
                        fi = 2 * ci
                        fj = 2 * cj
                        rj = ok & (fj + 1 < wl)
                        ri = ok & (fi + 1 < hl)
                        r00 = tl.load(wr + fi * wl + fj, mask=ok, other=0.0)
                        r01 = tl.load(wr + fi * wl + fj + 1, mask=rj, other=0.0)
                        r10 = tl.load(wr + (fi + 1) * wl + fj, mask=ri, other=0.0)
                        r11 = tl.load(wr + (fi + 1) * wl + fj + 1, mask=ri & rj, other=0.0)
                        ca = coff + ci * cst + cj
                        tl.store(wb + ca, (r00 + r01) + (r10 + r11), mask=ok)
                        tl.store(wx + ca, tl.zeros([BLOCK], dtype=tl.float32), mask=ok)
                    tl.debug_barrier()
                off, st, hl, wl = _level(tab_ptr, L - 1, h, w)
                _smooth(wx, wb, wm, off, st, hl, wl, COARSE, BLOCK)
                for kk in range(0, L - 1):  # up the V
                    l = L - 2 - kk
                    off, st, hl, wl = _level(tab_ptr, l, h, w)
                    coff, cst, _hc, _wc = _level(tab_ptr, l + 1, h, w)
                    nl = hl * wl
                    for t in range(0, nl, BLOCK):
                        i, j, ok = _tile(t, nl, wl, BLOCK)
                        a = off + i * st + j
                        act = _active(wm, a, ok)
                        e = tl.load(wx + coff + (i // 2) * cst + j // 2, mask=act, other=0.0)
                        tl.store(wx + a, tl.load(wx + a, mask=act, other=0.0) + e, mask=act)
                    tl.debug_barrier()
                    _smooth(wx, wb, wm, off, st, hl, wl, POST, BLOCK)
            wsol = ws_ptr + (pb * C + c) * HP * WP
            for t in range(0, n, BLOCK):
                i, j, ok = _tile(t, n, w, BLOCK)
                v = tl.load(wx + i * WP + j, mask=ok, other=0.0)
                v = tl.where(v > 0.0, v, 0.0)
                v = tl.where(v < 1.0, v, 1.0)
                tl.store(wsol + i * WP + j, v, mask=ok)
            tl.debug_barrier()
        # candidates, 5x5 majority vote, write, mask
        for t in range(0, n, BLOCK):
            i, j, ok = _tile(t, n, w, BLOCK)
            a = i * WP + j
            base = pb * C * HP * WP
            o = tl.load(ws_ptr + base + a, mask=ok, other=0.0)
            tot = tl.abs(o - tl.load(wd_ptr + base + a, mask=ok, other=0.0))
            for c in range(1, C):
                base = (pb * C + c) * HP * WP
                o = tl.load(ws_ptr + base + a, mask=ok, other=0.0)
                tot = tot + tl.abs(o - tl.load(wd_ptr + base + a, mask=ok, other=0.0))
            act = _active(wm, a, ok)
            tl.store(wc + i * w + j, (act & (tot > tol_sum)).to(tl.int32), mask=ok)
        tl.debug_barrier()
        for t in range(0, n, BLOCK):
            i, j, ok = _tile(t, n, w, BLOCK)
            act = _active(wm, i * WP + j, ok)
            votes = tl.zeros([BLOCK], dtype=tl.int32)
            for di in range(-2, 3):
                for dj in range(-2, 3):
                    ii = i + di
                    jj = j + dj
                    inb = act & (ii >= 0) & (ii < h) & (jj >= 0) & (jj < w)
                    votes = votes + tl.load(wc + ii * w + jj, mask=inb, other=0)
            sel = act & (votes >= MAJORITY)
            for c in range(0, C):
                v = tl.load(ws_ptr + (pb * C + c) * HP * WP + i * WP + j, mask=sel, other=0.0)
                tl.store(out_ptr + (pb * C + c) * H * W + (y0 + i) * W + x0 + j, v, mask=sel)
        tl.debug_barrier()
        for t in range(0, n, BLOCK):
            i, j, ok = _tile(t, n, w, BLOCK)
            g = (y0 + i) * W + x0 + j
            changed = tl.zeros([BLOCK], dtype=tl.int1)
            total = tl.zeros([BLOCK], dtype=tl.float32)
            for c in range(0, C):
                base = (pb * C + c) * H * W
                o = tl.load(out_ptr + base + g, mask=ok, other=0.0)
                before = _pixel(orig_ptr + base, g, ok, ORIG_U8)
                changed = changed | (o != before)
                if c == 0:
                    total = tl.abs(o - before)
                else:
                    total = total + tl.abs(o - before)
            tl.store(mask_ptr + pb * H * W + g, changed.to(tl.float32), mask=ok)
            if HAS_DIFF:
                tl.store(diff_ptr + pb * H * W + g, total, mask=ok)


def poisson_blend_triton(out, init, original, mask, diff, source, src_index, src_box, scale, box, mode, region,
                         tol_sum: float, cycles: int) -> None:
    """Same contract as ``anofast.reference.poisson.poisson_blend_reference``: one launch per round."""
    if init is not None:
        out.copy_(unit_float(init))
    for k in range(box.shape[1]):
        _blend_round(out, original, mask, diff, source, src_index, src_box[:, k].contiguous(),
                     scale[:, k].contiguous(), box[:, k].contiguous(), mode, region, tol_sum, cycles)


def _blend_round(out, original, mask, diff, source, src_index, src_box, scale, box, mode, region, tol_sum: float,
                 cycles: int) -> None:
    batch, channels, height, width = out.shape
    if batch == 0:
        return
    dev = out.device
    hp, wp = (max(1, int(v)) for v in box[:, 2:4].max(0).values.tolist())
    offs, tot = [], 0
    for hl, wl in levels(hp, wp):
        offs.append((tot, hl, wl))
        tot += hl * wl
    offs.append((tot, 0, 0))  # sentinel: the kernel reads level l + 1's entry while on level l
    tab = torch.tensor(offs, dtype=torch.int32, device=dev)
    nlev = num_levels(box[:, 2].to(torch.int64), box[:, 3].to(torch.int64)).to(torch.int32).contiguous()
    wm = torch.empty((batch, tot), dtype=torch.uint8, device=dev)
    wx = torch.empty((batch, tot), dtype=torch.float32, device=dev)
    wb = torch.empty_like(wx)
    wr = torch.empty((batch, hp * wp), dtype=torch.float32, device=dev)
    wsrc = torch.empty((batch, channels, hp * wp), dtype=torch.float32, device=dev)
    wd = torch.empty_like(wsrc)
    wsol = torch.empty_like(wsrc)
    wc = torch.empty((batch, hp * wp), dtype=torch.int32, device=dev)
    _poisson_kernel[(batch,)](
        out, original, mask, mask if diff is None else diff, source, src_index, src_box, scale, box, mode, mode if region is None else region, nlev,
        tab, wm, wsrc, wx, wb, wr, wd, wsol, wc, height, width, source.shape[2], source.shape[3], hp, wp, tot, cycles,
        tol_sum,
        C=channels, HAS_REGION=region is not None, HAS_DIFF=diff is not None, ORIG_U8=original.dtype == torch.uint8,
        SRC_U8=source.dtype == torch.uint8, BLOCK=256, enable_fp_fusion=False,
    )
