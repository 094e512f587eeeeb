"""cutpaste in Triton; mirrors anofast/reference/cutpaste.py operation by operation (launched without FMA fusion).

Two launches: the contrast mean of each sample's crop (one program per sample, an exact int64 sum), then one
program per image row that copies the row, checks its values and pastes the box's part of it.
"""

import torch
import triton
import triton.language as tl

import anofast.reference.cutpaste as ref

_GREY_R = tl.constexpr(ref.GREY_R)
_GREY_G = tl.constexpr(ref.GREY_G)
_GREY_B = tl.constexpr(ref.GREY_B)
_FIXED = tl.constexpr(ref.FIXED_SCALE)
_NI = tl.constexpr(ref.N_INTS)
_NF = tl.constexpr(ref.N_FLOATS)


@triton.jit
def _clamp01(t):
    t = tl.where(t > 0.0, t, 0.0)
    return tl.where(t < 1.0, t, 1.0)


@triton.jit
def _grey(r, g, b, C: tl.constexpr):
    if C == 1:
        return r
    else:
        return (_GREY_R * r + _GREY_G * g) + _GREY_B * b


@triton.jit
def _hue(r, g, b, hue6):
    mgb = tl.where(g > b, g, b)
    ngb = tl.where(g < b, g, b)
    maxc = tl.where(r > mgb, r, mgb)
    minc = tl.where(r < ngb, r, ngb)
    d = maxc - minc
    is_r = maxc == r
    is_g = (maxc != r) & (maxc == g)
    base = tl.where(is_r, 0.0, tl.where(is_g, 2.0, 4.0))
    x = tl.where(is_r, g - b, tl.where(is_g, b - r, r - g))
    big = (d * base + x) + d * hue6
    six = d * 6.0
    big = tl.where(big < 0.0, big + six, big)
    big = tl.where(big >= six, big - six, big)
    s = (
        (big >= d * 1.0).to(tl.int32) + (big >= d * 2.0).to(tl.int32) + (big >= d * 3.0).to(tl.int32)
        + (big >= d * 4.0).to(tl.int32) + (big >= d * 5.0).to(tl.int32)
    )  # fmt: skip
    f = big - s.to(tl.float32) * d
    f = tl.where(f > 0.0, f, 0.0)
    f = tl.where(f < d, f, d)
    t = _clamp01(minc + f)
    q = _clamp01(maxc - f)
    r2 = tl.where((s == 0) | (s == 5), maxc, tl.where(s == 1, q, tl.where((s == 2) | (s == 3), minc, t)))
    g2 = tl.where(s == 0, t, tl.where((s == 1) | (s == 2), maxc, tl.where(s == 3, q, minc)))
    b2 = tl.where((s == 0) | (s == 1), minc, tl.where(s == 2, t, tl.where((s == 3) | (s == 4), maxc, q)))
    return r2, g2, b2


@triton.jit
def _sample(ints_ptr, floats_ptr, b):
    """Sample ``b``'s ints and floats rows, and its crop: top, left, height, width."""
    ip = ints_ptr + b * _NI
    return ip, floats_ptr + b * _NF, tl.load(ip + 0), tl.load(ip + 1), tl.load(ip + 2), tl.load(ip + 3)


@triton.jit
def _load_rgb(p, plane, mask, C: tl.constexpr):
    """The C channels at ``p`` (planes ``plane`` elements apart) as r, g, b; a single channel stands for all three."""
    r = tl.load(p, mask=mask, other=0.0)
    g = r
    b = r
    if C == 3:
        g = tl.load(p + plane, mask=mask, other=0.0)
        b = tl.load(p + 2 * plane, mask=mask, other=0.0)
    return r, g, b


@triton.jit
def _jitter_op(op, r, g, b, fp, contrast_add, C: tl.constexpr):
    """One jitter op (id ``op``, a scalar) on the channel vectors; ``fp`` points at the sample's floats row."""
    fb = tl.load(fp + 8)
    fc = tl.load(fp + 9)
    r1 = tl.where(op == 0, _clamp01(fb * r), tl.where(op == 1, _clamp01(fc * r + contrast_add), r))
    if C == 3:
        g1 = tl.where(op == 0, _clamp01(fb * g), tl.where(op == 1, _clamp01(fc * g + contrast_add), g))
        b1 = tl.where(op == 0, _clamp01(fb * b), tl.where(op == 1, _clamp01(fc * b + contrast_add), b))
        fs = tl.load(fp + 11)
        oms = tl.load(fp + 12)
        hue6 = tl.load(fp + 13)
        gr = _grey(r, g, b, C)
        rs = _clamp01(fs * r + oms * gr)
        gs = _clamp01(fs * g + oms * gr)
        bs = _clamp01(fs * b + oms * gr)
        rh, gh, bh = _hue(r, g, b, hue6)
        use_hue = (op == 3) & (hue6 != 0.0)
        r1 = tl.where(op == 2, rs, tl.where(use_hue, rh, r1))
        g1 = tl.where(op == 2, gs, tl.where(use_hue, gh, g1))
        b1 = tl.where(op == 2, bs, tl.where(use_hue, bh, b1))
        return r1, g1, b1
    else:
        return r1, g, b


@triton.jit(do_not_specialize=["H", "W"])
def _contrast_kernel(
    cadd_ptr,  # (B,) float32 out: (1 - contrast) * mean
    img_ptr,  # (B, C, H, W) float32
    ints_ptr,  # (B, 12) int32
    floats_ptr,  # (B, 15) float32
    H,
    W,
    C: tl.constexpr,
    BLOCK: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)
    ip, fp, sy, sx, ch, cw = _sample(ints_ptr, floats_ptr, b)
    used = (tl.load(ip + 6) > 0) & (tl.load(ip + 7) > 0)
    n = tl.where(used, ch * cw, 0)
    base = b * C * H * W
    plane = H * W
    total = tl.zeros([BLOCK], dtype=tl.int64)
    for k0 in range(0, n, BLOCK):
        k = k0 + tl.arange(0, BLOCK)
        live = k < n
        y = sy + k // cw  # integer division: exact
        x = sx + k % cw
        offs = base + y.to(tl.int64) * W + x
        r, g, bb = _load_rgb(img_ptr + offs, plane, live, C)
        active = live
        for j in tl.static_range(4):
            op = tl.load(ip + 8 + j)
            active = active & (op != 1)  # stop at contrast
            r2, g2, b2 = _jitter_op(op, r, g, bb, fp, 0.0, C)
            r = tl.where(active, r2, r)
            g = tl.where(active, g2, g)
            bb = tl.where(active, b2, bb)
        gv = _grey(r, g, bb, C)
        fixed = (gv * _FIXED).to(tl.int64)
        total += tl.where(live, fixed, 0)
    mean = tl.sum(total, axis=0).to(tl.float32) * tl.load(fp + 14)
    tl.store(cadd_ptr + b, tl.load(fp + 10) * mean)


@triton.jit(do_not_specialize=["H", "W"])
def _cutpaste_kernel(
    out_ptr,  # (B, C, H, W) float32
    mask_ptr,  # (B, 1, H, W) float32
    rows_ptr,  # (B, H) int32: changed pixels per row, -1 if the row holds an image value outside [0, 1]
    img_ptr,  # (B, C, H, W) float32
    ints_ptr,  # (B, 12) int32
    floats_ptr,  # (B, 15) float32
    cadd_ptr,  # (B,) float32
    fg_ptr,  # (B, 1, H, W) float32 (unused without HAS_FG)
    H,
    W,
    C: tl.constexpr,
    HAS_FG: tl.constexpr,
    BLOCK_W: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)  # b*H + y
    b = row // H
    y = row % H
    ip, fp, sy, sx, ch, cw = _sample(ints_ptr, floats_ptr, b)
    dy = tl.load(ip + 4)
    dx = tl.load(ip + 5)
    bh = tl.load(ip + 6)
    bw = tl.load(ip + 7)
    # the box's columns on this row ([dx, x_end), empty off the box's rows): a scalar bound, not a scalar mask
    x_end = tl.where((bh > 0) & (bw > 0) & (y >= dy) & (y < dy + bh), dx + bw, dx)
    ra = tl.load(fp + 0)
    rb = tl.load(fp + 1)
    rd = tl.load(fp + 2)
    re = tl.load(fp + 3)
    v = (y - dy).to(tl.float32) + tl.load(fp + 5)
    off_u = tl.load(fp + 4)
    half_w = tl.load(fp + 6)
    half_h = tl.load(fp + 7)
    cadd = tl.load(cadd_ptr + b)
    base = b * C * H * W
    plane = H * W
    count = 0
    bad = 0
    for x0 in range(0, W, BLOCK_W):
        x = x0 + tl.arange(0, BLOCK_W)
        in_row = x < W
        offs = base + y * W + x
        i0, i1, i2 = _load_rgb(img_ptr + offs, plane, in_row, C)
        ok = (i0 >= 0.0) & (i0 <= 1.0) & (i1 >= 0.0) & (i1 <= 1.0) & (i2 >= 0.0) & (i2 <= 1.0)
        bad += tl.sum((in_row & ~ok).to(tl.int32), axis=0)
        u = (x - dx).to(tl.float32) + off_u
        srcx = (ra * u + rb * v) + half_w
        srcy = (rd * u + re * v) + half_h
        inside = in_row & (x >= dx) & (x < x_end)
        inside = inside & (srcx >= 0.0) & (srcx < cw.to(tl.float32)) & (srcy >= 0.0) & (srcy < ch.to(tl.float32))
        if HAS_FG:
            inside = inside & (tl.load(fg_ptr + b * plane + y * W + x, mask=in_row, other=0.0) > 0.5)
        ix = sx + tl.where(inside, srcx, 0.0).to(tl.int32)
        iy = sy + tl.where(inside, srcy, 0.0).to(tl.int32)
        soffs = base + iy.to(tl.int64) * W + ix
        r, g, bb = _load_rgb(img_ptr + soffs, plane, inside, C)
        for j in tl.static_range(4):
            r, g, bb = _jitter_op(tl.load(ip + 8 + j), r, g, bb, fp, cadd, C)
        o0 = tl.where(inside, r, i0)
        changed = o0 != i0
        tl.store(out_ptr + offs, o0, mask=in_row)
        if C == 3:
            o1 = tl.where(inside, g, i1)
            o2 = tl.where(inside, bb, i2)
            changed = changed | (o1 != i1) | (o2 != i2)
            tl.store(out_ptr + offs + plane, o1, mask=in_row)
            tl.store(out_ptr + offs + 2 * plane, o2, mask=in_row)
        tl.store(mask_ptr + b * plane + y * W + x, changed.to(tl.float32), mask=in_row)
        count += tl.sum(changed.to(tl.int32), axis=0)
    tl.store(rows_ptr + row, tl.where(bad > 0, -1, count))


def cutpaste_triton(images: torch.Tensor, ints: torch.Tensor, floats: torch.Tensor, foreground):
    """Same contract as ``anofast.reference.cutpaste.cutpaste_reference``."""
    batch, channels, height, width = images.shape
    out = torch.empty_like(images)
    mask = torch.empty((batch, 1, height, width), dtype=torch.float32, device=images.device)
    rows = torch.empty((batch, height), dtype=torch.int32, device=images.device)
    if batch == 0 or height == 0 or width == 0:
        return out, mask, rows
    cadd = torch.empty(batch, dtype=torch.float32, device=images.device)
    _contrast_kernel[(batch,)](cadd, images, ints, floats, height, width, C=channels, BLOCK=256,
                               enable_fp_fusion=False)  # fmt: skip
    _cutpaste_kernel[(batch * height,)](
        out,
        mask,
        rows,
        images,
        ints,
        floats,
        cadd,
        foreground if foreground is not None else images,
        height,
        width,
        C=channels,
        HAS_FG=foreground is not None,
        BLOCK_W=min(1024, triton.next_power_of_2(width)),
        enable_fp_fusion=False,
    )
    return out, mask, rows
