"""texture_stage and texture_histogram in Triton; mirrors anofast/reference/texture.py bit for bit.

One program per (sample, row, column block); the stage modes are per-sample scalars, so each program runs one
branch per stage, carrying the pixels through the sample's chain in registers. Launched with
``enable_fp_fusion=False`` so that no multiply-add is contracted (the reference and the C++ kernel round every
product).
"""

import torch
import triton
import triton.language as tl

# Luma weights: float32 roundings of these doubles, like torch.tensor(0.299, dtype=float32) in the reference.
_W_R = tl.constexpr(0.299)
_W_G = tl.constexpr(0.587)
_W_B = tl.constexpr(0.114)


@triton.jit
def _round_u8(x):
    """floor(x + 0.5) clamped to [0, 255] (clamp to 255.5, then truncate: the same integer)."""
    v = tl.minimum(tl.maximum(x + 0.5, 0.0), 255.5)
    return v.to(tl.int32).to(tl.uint8)


@triton.jit
def _luma(r, g, b):
    return r * _W_R + g * _W_G + b * _W_B


@triton.jit
def _hsv_channel(hue, n, v, vs):
    """One channel of HSV -> RGB: v - v s clamp(min(k, 4 - k), 0, 1), k = (hue + n) mod 6."""
    k = hue + n
    k = tl.where(k >= 6.0, k - 6.0, k)
    return v - vs * tl.minimum(tl.maximum(tl.minimum(k, 4.0 - k), 0.0), 1.0)


@triton.jit
def _pointwise(mode, r, g, b, fp, lut, rec_ptr, act):
    """One pointwise stage (LUT, BRIGHTNESS, HUESAT, GRAYSCALE; anything else: identity) on int32 channel values;
    ``fp`` / ``lut`` point at the stage's 4 scalars and (3, 256) table."""
    if mode == 1:  # LUT
        r = tl.load(lut + r, mask=act, other=0).to(tl.int32)
        g = tl.load(lut + 256 + g, mask=act, other=0).to(tl.int32)
        b = tl.load(lut + 512 + b, mask=act, other=0).to(tl.int32)
    elif mode == 2:  # BRIGHTNESS
        mul1 = tl.load(fp)
        add = tl.load(fp + 1)
        fr = r.to(tl.float32)
        fg = g.to(tl.float32)
        fb = b.to(tl.float32)
        delta = _luma(fr, fg, fb) * mul1 + add
        r = _round_u8(fr + delta).to(tl.int32)
        g = _round_u8(fg + delta).to(tl.int32)
        b = _round_u8(fb + delta).to(tl.int32)
    elif mode == 3:  # HUESAT
        shift = tl.load(fp)
        smul = tl.load(fp + 1)
        sadd = tl.load(fp + 2)
        mx = tl.maximum(tl.maximum(r, g), b)
        d = mx - tl.minimum(tl.minimum(r, g), b)
        rd = tl.load(rec_ptr + d, mask=act, other=0.0)
        h_r = (g - b).to(tl.float32) * rd
        h_g = (b - r).to(tl.float32) * rd + 2.0
        h_b = (r - g).to(tl.float32) * rd + 4.0
        hue = tl.where(mx == r, h_r, tl.where(mx == g, h_g, h_b))
        hue = hue + shift
        hue = tl.where(hue >= 6.0, hue - 6.0, hue)
        hue = tl.where(hue < 0.0, hue + 6.0, hue)
        sat = d.to(tl.float32) * tl.load(rec_ptr + mx, mask=act, other=0.0) * smul + sadd
        sat = tl.minimum(tl.maximum(sat, 0.0), 1.0)
        v = mx.to(tl.float32)
        vs = v * sat
        r = _round_u8(_hsv_channel(hue, 5.0, v, vs)).to(tl.int32)
        g = _round_u8(_hsv_channel(hue, 3.0, v, vs)).to(tl.int32)
        b = _round_u8(_hsv_channel(hue, 1.0, v, vs)).to(tl.int32)
    elif mode == 6:  # GRAYSCALE
        yv = _round_u8(_luma(r.to(tl.float32), g.to(tl.float32), b.to(tl.float32))).to(tl.int32)
        r = yv
        g = yv
        b = yv
    return r, g, b


@triton.jit
def _tables(v, mb, lb, s, c):
    """Bytes ``v`` (int32) of channel ``c`` through the LUT stages before stage ``s`` of a chain."""
    for k in range(0, s):
        if tl.load(mb + k) == 1:
            v = tl.load(lb + k * 768 + c * 256 + v).to(tl.int32)
    return v


@triton.jit
def _sharpness_channel(cp, x, yv, act, factor, H, W, mb, lb, s, c):
    """PIL ImageEnhance.Sharpness of plane ``cp`` (read through the tables before stage ``s``) at row ``yv``, columns
    ``x`` (int32 values)."""
    border = (yv == 0) | (yv == H - 1) | (x == 0) | (x == W - 1)
    inner = act & ~border
    center = _tables(tl.load(cp, mask=act, other=0).to(tl.int32), mb, lb, s, c)
    total = 4 * center
    for dy in range(-1, 2):
        for dx in range(-1, 2):
            total += _tables(tl.load(cp + dy * W + dx, mask=inner, other=0).to(tl.int32), mb, lb, s, c)
    deg = (2 * total + 13) // 26  # round(total / 13), half up
    deg = tl.where(border, center, deg).to(tl.float32)
    return _round_u8(deg + factor * (center.to(tl.float32) - deg)).to(tl.int32)


@triton.jit
def _affine_tap(cp, yy, xx, inside, act, W, mb, lb, s, c):
    """One bilinear tap: the byte through the tables before stage ``s``, 0 outside the image (float32)."""
    v = _tables(tl.load(cp + yy * W + xx, mask=act & inside, other=0).to(tl.int32), mb, lb, s, c)
    return tl.where(inside, v, 0).to(tl.float32)


@triton.jit
def _affine_channel(cp, iy, ix, fy, fx, act, iny0, iny1, inx0, inx1, W, mb, lb, s, c):
    """Bilinear sample of plane ``cp`` with zero fill (int32 values)."""
    v00 = _affine_tap(cp, iy, ix, iny0 & inx0, act, W, mb, lb, s, c)
    v01 = _affine_tap(cp, iy, ix + 1, iny0 & inx1, act, W, mb, lb, s, c)
    v10 = _affine_tap(cp, iy + 1, ix, iny1 & inx0, act, W, mb, lb, s, c)
    v11 = _affine_tap(cp, iy + 1, ix + 1, iny1 & inx1, act, W, mb, lb, s, c)
    top = v00 + fx * (v01 - v00)
    bottom = v10 + fx * (v11 - v10)
    return _round_u8(top + fy * (bottom - top)).to(tl.int32)


@triton.jit
def _texture_stage_kernel(
    out_ptr,  # (B, 3, H, W) uint8
    src_ptr,  # (N, 3, H, W) uint8
    mode_ptr,  # (B, K) int32
    fp_ptr,  # (B, K, 4) float32
    lut_ptr,  # (B, K, 3, 256) uint8
    box_ptr,  # (B, 4) int32
    where_ptr,  # (B, 1, H, W) float32 (read when HAS_WHERE)
    sparse_ptr,  # (B,) uint8 (read when HAS_SPARSE)
    index_ptr,  # (B,) int64 (read when HAS_INDEX)
    rec_ptr,  # (256,) float32
    H,
    W,
    K,
    HAS_WHERE: tl.constexpr,
    HAS_SPARSE: tl.constexpr,
    HAS_INDEX: tl.constexpr,
    BLOCK_W: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    b = row // H
    y = row % H
    x = tl.program_id(1).to(tl.int64) * BLOCK_W + tl.arange(0, BLOCK_W)
    y0 = tl.load(box_ptr + 4 * b)
    x0 = tl.load(box_ptr + 4 * b + 1)
    y1 = tl.load(box_ptr + 4 * b + 2)
    x1 = tl.load(box_ptr + 4 * b + 3)
    yv = tl.zeros([BLOCK_W], dtype=tl.int64) + y  # a vector: the interpreter cannot mix scalar and vector masks
    act = (x >= x0) & (x < x1) & (x < W) & (yv >= y0) & (yv < y1)
    hw = H * W
    if HAS_WHERE:
        w = tl.load(where_ptr + b * hw + y * W + x, mask=act, other=0.0)
        if HAS_SPARSE:
            dense = tl.zeros([BLOCK_W], dtype=tl.int32) + (tl.load(sparse_ptr + b) == 0).to(tl.int32)
            act = act & ((w > 0.5) | (dense != 0))
        else:
            act = act & (w > 0.5)
    if HAS_INDEX:
        sb = src_ptr + tl.load(index_ptr + b) * 3 * hw
    else:
        sb = src_ptr + b * 3 * hw
    sp = sb + y * W + x
    mb = mode_ptr + b * K
    fb = fp_ptr + b * K * 4
    lb = lut_ptr + b * K * 768
    # The stage that reads neighbours (sharpness, affine), if the chain has one: the tables before it are applied to
    # the bytes it reads, and it yields the three channels as int32 values.
    s = tl.full([], -1, dtype=tl.int32)  # a tensor: it is reassigned under runtime conditions
    for k in range(0, K):
        m = tl.load(mb + k)
        if (m == 4) | (m == 5):
            s = k
    if s >= 0:
        if tl.load(mb + s) == 4:  # SHARPNESS
            factor = tl.load(fb + 4 * s)
            r = _sharpness_channel(sp, x, yv, act, factor, H, W, mb, lb, s, 0)
            g = _sharpness_channel(sp + hw, x, yv, act, factor, H, W, mb, lb, s, 1)
            bl = _sharpness_channel(sp + 2 * hw, x, yv, act, factor, H, W, mb, lb, s, 2)
        else:  # AFFINE
            m00 = tl.load(fb + 4 * s)
            m01 = tl.load(fb + 4 * s + 1)
            m10 = tl.load(fb + 4 * s + 2)
            m11 = tl.load(fb + 4 * s + 3)
            cx = (W - 1).to(tl.float32) * 0.5
            cy = (H - 1).to(tl.float32) * 0.5
            dx = x.to(tl.float32) - cx
            dy = y.to(tl.float32) - cy
            sx = (m00 * dx + m01 * dy) + cx
            sy = (m10 * dx + m11 * dy) + cy
            fx0 = tl.floor(sx)
            fy0 = tl.floor(sy)
            fx = sx - fx0
            fy = sy - fy0
            ix = fx0.to(tl.int64)
            iy = fy0.to(tl.int64)
            inx0 = (ix >= 0) & (ix < W)
            inx1 = (ix + 1 >= 0) & (ix + 1 < W)
            iny0 = (iy >= 0) & (iy < H)
            iny1 = (iy + 1 >= 0) & (iy + 1 < H)
            r = _affine_channel(sb, iy, ix, fy, fx, act, iny0, iny1, inx0, inx1, W, mb, lb, s, 0)
            g = _affine_channel(sb + hw, iy, ix, fy, fx, act, iny0, iny1, inx0, inx1, W, mb, lb, s, 1)
            bl = _affine_channel(sb + 2 * hw, iy, ix, fy, fx, act, iny0, iny1, inx0, inx1, W, mb, lb, s, 2)
    else:
        r = tl.load(sp, mask=act, other=0).to(tl.int32)
        g = tl.load(sp + hw, mask=act, other=0).to(tl.int32)
        bl = tl.load(sp + 2 * hw, mask=act, other=0).to(tl.int32)
    # The pointwise stages after it (all of them without one): the pixel stays in registers, rounded to uint8 after
    # every stage.
    for k in range(s + 1, K):
        r, g, bl = _pointwise(tl.load(mb + k), r, g, bl, fb + 4 * k, lb + 768 * k, rec_ptr, act)
    op = out_ptr + b * 3 * hw + y * W + x
    tl.store(op, r.to(tl.uint8), mask=act)
    tl.store(op + hw, g.to(tl.uint8), mask=act)
    tl.store(op + 2 * hw, bl.to(tl.uint8), mask=act)


def texture_stage_triton(
    src: torch.Tensor,
    mode: torch.Tensor,
    fparams: torch.Tensor,
    lut: torch.Tensor,
    box: torch.Tensor,
    recip: torch.Tensor,
    out: torch.Tensor,
    where: torch.Tensor | None = None,
    sparse: torch.Tensor | None = None,
    src_index: torch.Tensor | None = None,
) -> torch.Tensor:
    """Same contract as ``anofast.reference.texture.texture_stage_reference`` (``recip``: its reciprocal table)."""
    batch, _, height, width = out.shape
    if batch == 0 or height == 0 or width == 0:
        return out
    block_w = min(1024, triton.next_power_of_2(width))
    grid = (batch * height, triton.cdiv(width, block_w))
    _texture_stage_kernel[grid](
        out, src, mode, fparams, lut, box,
        box if where is None else where,  # placeholders for absent tensors: never read (constexpr flags)
        box if sparse is None else sparse.view(torch.uint8),
        box if src_index is None else src_index,
        recip, height, width, mode.shape[1],
        HAS_WHERE=where is not None, HAS_SPARSE=sparse is not None, HAS_INDEX=src_index is not None,
        BLOCK_W=block_w, enable_fp_fusion=False,
    )  # fmt: skip
    return out


@triton.jit
def _texture_histogram_kernel(out_ptr, images_ptr, index_ptr, HW, BLOCK: tl.constexpr):
    plane = tl.program_id(0).to(tl.int64)  # (n, c) of the output
    n = plane // 3
    c = plane % 3
    b = tl.load(index_ptr + n)
    i = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    inside = i < HW
    v = tl.load(images_ptr + (b * 3 + c) * HW + i, mask=inside, other=0).to(tl.int32)
    # Integer atomics: the sum does not depend on the order the blocks arrive in.
    tl.atomic_add(out_ptr + plane * 256 + tl.arange(0, 256), tl.histogram(v, 256, mask=inside))


def texture_histogram_triton(images: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Same contract as ``anofast.reference.texture.texture_histogram_reference``."""
    n = index.shape[0]
    out = torch.zeros((n, 3, 256), dtype=torch.int32, device=images.device)
    hw = images.shape[2] * images.shape[3]
    if n == 0 or hw == 0:
        return out
    block = min(4096, max(256, triton.next_power_of_2(hw)))
    _texture_histogram_kernel[(n * 3, triton.cdiv(hw, block))](out, images, index, hw, BLOCK=block)
    return out
