"""texture_stage and texture_histogram in Triton; mirrors anofast/reference/texture.py bit for bit.

One program per (sample, row, column block); the stage mode is a per-sample scalar, so each program runs one
branch. Launched with ``enable_fp_fusion=False`` so that no multiply-add is contracted (the reference and the
C++ kernel round every product).
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
def _texture_stage_kernel(
    out_ptr,  # (B, 3, H, W) uint8
    src_ptr,  # (B, 3, H, W) uint8
    mode_ptr,  # (B,) int32
    fp_ptr,  # (B, 4) float32
    lut_ptr,  # (B, 3, 256) uint8
    box_ptr,  # (B, 4) int32
    rec_ptr,  # (256,) float32
    H,
    W,
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
    mode = tl.load(mode_ptr + b)
    hw = H * W
    base = b * 3 * hw + y * W
    sp = src_ptr + base + x
    op = out_ptr + base + x
    if mode == 1:  # LUT
        lb = lut_ptr + b * 768
        for c in range(3):
            v = tl.load(sp + c * hw, mask=act, other=0).to(tl.int32)
            tl.store(op + c * hw, tl.load(lb + c * 256 + v, mask=act, other=0), mask=act)
    elif mode == 2:  # BRIGHTNESS
        mul1 = tl.load(fp_ptr + 4 * b)
        add = tl.load(fp_ptr + 4 * b + 1)
        r = tl.load(sp, mask=act, other=0).to(tl.float32)
        g = tl.load(sp + hw, mask=act, other=0).to(tl.float32)
        bb = tl.load(sp + 2 * hw, mask=act, other=0).to(tl.float32)
        delta = _luma(r, g, bb) * mul1 + add
        tl.store(op, _round_u8(r + delta), mask=act)
        tl.store(op + hw, _round_u8(g + delta), mask=act)
        tl.store(op + 2 * hw, _round_u8(bb + delta), mask=act)
    elif mode == 3:  # HUESAT
        shift = tl.load(fp_ptr + 4 * b)
        smul = tl.load(fp_ptr + 4 * b + 1)
        sadd = tl.load(fp_ptr + 4 * b + 2)
        ir = tl.load(sp, mask=act, other=0).to(tl.int32)
        ig = tl.load(sp + hw, mask=act, other=0).to(tl.int32)
        ib = tl.load(sp + 2 * hw, mask=act, other=0).to(tl.int32)
        mx = tl.maximum(tl.maximum(ir, ig), ib)
        d = mx - tl.minimum(tl.minimum(ir, ig), ib)
        rd = tl.load(rec_ptr + d, mask=act, other=0.0)
        h_r = (ig - ib).to(tl.float32) * rd
        h_g = (ib - ir).to(tl.float32) * rd + 2.0
        h_b = (ir - ig).to(tl.float32) * rd + 4.0
        hue = tl.where(mx == ir, h_r, tl.where(mx == ig, h_g, h_b))
        hue = hue + shift
        hue = tl.where(hue >= 6.0, hue - 6.0, hue)
        hue = tl.where(hue < 0.0, hue + 6.0, hue)
        sat = d.to(tl.float32) * tl.load(rec_ptr + mx, mask=act, other=0.0) * smul + sadd
        sat = tl.minimum(tl.maximum(sat, 0.0), 1.0)
        v = mx.to(tl.float32)
        vs = v * sat
        tl.store(op, _round_u8(_hsv_channel(hue, 5.0, v, vs)), mask=act)
        tl.store(op + hw, _round_u8(_hsv_channel(hue, 3.0, v, vs)), mask=act)
        tl.store(op + 2 * hw, _round_u8(_hsv_channel(hue, 1.0, v, vs)), mask=act)
    elif mode == 4:  # SHARPNESS
        factor = tl.load(fp_ptr + 4 * b)
        border = (yv == 0) | (yv == H - 1) | (x == 0) | (x == W - 1)
        inner = act & ~border
        for c in range(3):
            cp = sp + c * hw
            s = tl.load(cp, mask=act, other=0)
            total = 4 * s.to(tl.int32)
            for dy in range(-1, 2):
                for dx in range(-1, 2):
                    total += tl.load(cp + dy * W + dx, mask=inner, other=0).to(tl.int32)
            deg = ((2 * total + 13) // 26).to(tl.uint8)  # round(total / 13), half up
            deg = tl.where(border, s, deg).to(tl.float32)
            tl.store(op + c * hw, _round_u8(deg + factor * (s.to(tl.float32) - deg)), mask=act)
    elif mode == 5:  # AFFINE
        m00 = tl.load(fp_ptr + 4 * b)
        m01 = tl.load(fp_ptr + 4 * b + 1)
        m10 = tl.load(fp_ptr + 4 * b + 2)
        m11 = tl.load(fp_ptr + 4 * b + 3)
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
        sb = src_ptr + b * 3 * hw
        for c in range(3):
            cp = sb + c * hw
            v00 = tl.load(cp + iy * W + ix, mask=act & iny0 & inx0, other=0).to(tl.float32)
            v01 = tl.load(cp + iy * W + ix + 1, mask=act & iny0 & inx1, other=0).to(tl.float32)
            v10 = tl.load(cp + (iy + 1) * W + ix, mask=act & iny1 & inx0, other=0).to(tl.float32)
            v11 = tl.load(cp + (iy + 1) * W + ix + 1, mask=act & iny1 & inx1, other=0).to(tl.float32)
            top = v00 + fx * (v01 - v00)
            bottom = v10 + fx * (v11 - v10)
            tl.store(op + c * hw, _round_u8(top + fy * (bottom - top)), mask=act)
    elif mode == 6:  # GRAYSCALE
        r = tl.load(sp, mask=act, other=0).to(tl.float32)
        g = tl.load(sp + hw, mask=act, other=0).to(tl.float32)
        bb = tl.load(sp + 2 * hw, mask=act, other=0).to(tl.float32)
        yv = _round_u8(_luma(r, g, bb))
        for c in range(3):
            tl.store(op + c * hw, yv, mask=act)
    else:  # IDENTITY
        for c in range(3):
            tl.store(op + c * hw, tl.load(sp + c * hw, mask=act, other=0), mask=act)


def texture_stage_triton(
    src: torch.Tensor,
    mode: torch.Tensor,
    fparams: torch.Tensor,
    lut: torch.Tensor,
    box: torch.Tensor,
    recip: torch.Tensor,
    out: torch.Tensor,
) -> torch.Tensor:
    """Same contract as ``anofast.reference.texture.texture_stage_reference`` (``recip``: its reciprocal table)."""
    batch, _, height, width = src.shape
    if batch == 0 or height == 0 or width == 0:
        return out
    block_w = min(1024, triton.next_power_of_2(width))
    grid = (batch * height, triton.cdiv(width, block_w))
    _texture_stage_kernel[grid](
        out, src, mode, fparams, lut, box, recip, height, width, BLOCK_W=block_w, enable_fp_fusion=False
    )
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
