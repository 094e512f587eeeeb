"""perlin_noise and perlin_mask in Triton; mirror anofast/reference/perlin.py operation by operation.

Launched with ``enable_fp_fusion=False`` so no multiply-add is contracted into an FMA: with the same operation
order, float32 results equal the reference's bit for bit.
"""

import torch
import triton
import triton.language as tl

from anofast.reference.perlin import SQRT2

_SQRT2 = tl.constexpr(SQRT2)


@triton.jit
def _fade(t):
    return ((t * t) * t) * ((t * ((t * 6.0) - 15.0)) + 10.0)


@triton.jit
def _noise(grads_ptr, res_ptr, frame_ptr, bl, y, x, cx, cy, xmax, ymax, G1: tl.constexpr):
    """Noise of lattice ``bl`` (= b*L + l) at row ``y``, columns ``x`` (a block; lanes past W are harmless).

    ``cx, cy, xmax, ymax`` = ``(W-1)*0.5, (H-1)*0.5, W-1, H-1`` as float32 (exact), from the host.
    """
    ry = tl.load(res_ptr + 2 * bl)
    rx = tl.load(res_ptr + 2 * bl + 1)
    c = tl.load(frame_ptr + 4 * bl)
    s = tl.load(frame_ptr + 4 * bl + 1)
    scale_x = tl.load(frame_ptr + 4 * bl + 2)
    scale_y = tl.load(frame_ptr + 4 * bl + 3)
    dx = x.to(tl.float32) - cx
    dy = y.to(tl.float32) - cy
    sx = ((c * dx) + (s * dy)) + cx
    sy = ((c * dy) - (s * dx)) + cy
    inside = (sx >= 0.0) & (sx <= xmax) & (sy >= 0.0) & (sy <= ymax)
    u = sx * scale_x
    v = sy * scale_y
    # The lower clamp only matters outside the frame, where it keeps the gather in range.
    i = tl.maximum(tl.minimum(u.to(tl.int32), rx - 1), 0)
    j = tl.maximum(tl.minimum(v.to(tl.int32), ry - 1), 0)
    fu = u - i.to(tl.float32)
    fv = v - j.to(tl.float32)
    p = grads_ptr + ((bl * G1 + j) * G1 + i) * 2  # g[j, i]; g[j, i+1] is 2 floats on, g[j+1, i] 2*G1 floats on
    q = p + 2 * G1
    n00 = (tl.load(p) * fu) + (tl.load(p + 1) * fv)
    n01 = (tl.load(p + 2) * (fu - 1.0)) + (tl.load(p + 3) * fv)
    n10 = (tl.load(q) * fu) + (tl.load(q + 1) * (fv - 1.0))
    n11 = (tl.load(q + 2) * (fu - 1.0)) + (tl.load(q + 3) * (fv - 1.0))
    tu = _fade(fu)
    top = n00 + (tu * (n01 - n00))
    bottom = n10 + (tu * (n11 - n10))
    noise = _SQRT2 * (top + (_fade(fv) * (bottom - top)))
    return tl.where(inside, noise, 0.0)


# H and W stay runtime values (no recompilation per image size, no constexpr when one of them is 1).
@triton.jit(do_not_specialize=["H", "W"])
def _perlin_noise_kernel(
    out_ptr,  # (B, L, H, W) float32
    res_ptr,  # (B, L, 2) int32
    grads_ptr,  # (B, L, G1, G1, 2) float32
    frame_ptr,  # (B, L, 4) float32
    H,
    W,
    cx,
    cy,
    xmax,
    ymax,
    G1: tl.constexpr,
    BLOCK_W: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)  # (b*L + l)*H + y
    bl = row // H
    y = row % H
    x = tl.program_id(1) * BLOCK_W + tl.arange(0, BLOCK_W)
    noise = _noise(grads_ptr, res_ptr, frame_ptr, bl, y, x, cx, cy, xmax, ymax, G1)
    tl.store(out_ptr + row * W + x, noise, mask=x < W)


@triton.jit(do_not_specialize=["H", "W", "L"])
def _perlin_mask_kernel(
    mask_ptr,  # (B, 1, H, W) float32
    ext_ptr,  # (B, H, 2) int32
    res_ptr,  # (B, L, 2) int32
    grads_ptr,  # (B, L, G1, G1, 2) float32
    frame_ptr,  # (B, L, 4) float32
    thr_ptr,  # (B,) float32
    comb_ptr,  # (B,) int32
    fg_ptr,  # (B, H, W) float32 (unused without HAS_FG)
    apply_ptr,  # (B,) bool as uint8
    H,
    W,
    L,
    cx,
    cy,
    xmax,
    ymax,
    G1: tl.constexpr,
    HAS_FG: tl.constexpr,
    BLOCK_W: tl.constexpr,
):
    # One program per row, so the row's extents are reduced by one program: deterministic, no atomics.
    row = tl.program_id(0).to(tl.int64)  # b*H + y
    b = row // H
    y = row % H
    thr = tl.load(thr_ptr + b)
    comb = tl.load(comb_ptr + b)
    active = tl.load(apply_ptr + b) != 0
    first = W
    last = 0
    for x0 in range(0, W, BLOCK_W):
        x = x0 + tl.arange(0, BLOCK_W)
        in_row = x < W
        m = tl.zeros([BLOCK_W], dtype=tl.int1)
        if active:
            m = _noise(grads_ptr, res_ptr, frame_ptr, b * L, y, x, cx, cy, xmax, ymax, G1) > thr
            if comb != 0:
                m1 = _noise(grads_ptr, res_ptr, frame_ptr, b * L + 1, y, x, cx, cy, xmax, ymax, G1) > thr
                m = tl.where(comb == 1, m | m1, m & m1)
            if HAS_FG:
                m = m & (tl.load(fg_ptr + row * W + x, mask=in_row, other=0.0) > 0.5)
            m = m & in_row
        tl.store(mask_ptr + row * W + x, m.to(tl.float32), mask=in_row)
        first = tl.minimum(first, tl.min(tl.where(m, x, W), axis=0))
        last = tl.maximum(last, tl.max(tl.where(m, x + 1, 0), axis=0))
    tl.store(ext_ptr + 2 * row, first)
    tl.store(ext_ptr + 2 * row + 1, tl.where(first < W, last, 0))


def _block(width: int) -> int:
    return min(1024, triton.next_power_of_2(width))


def _frame_scalars(height: int, width: int) -> tuple[float, float, float, float]:
    """``cx, cy, xmax, ymax``: exact in float32, so passing them as float arguments rounds nothing."""
    return (width - 1) * 0.5, (height - 1) * 0.5, float(width - 1), float(height - 1)


def perlin_noise_triton(res: torch.Tensor, grads: torch.Tensor, frame: torch.Tensor, height: int, width: int):
    """Same contract as ``anofast.reference.perlin.perlin_noise_reference``."""
    batch, lat = res.shape[:2]
    out = torch.empty((batch, lat, height, width), dtype=torch.float32, device=grads.device)
    if out.numel() == 0:
        return out
    block = _block(width)
    grid = (batch * lat * height, triton.cdiv(width, block))
    _perlin_noise_kernel[grid](
        out,
        res,
        grads,
        frame,
        height,
        width,
        *_frame_scalars(height, width),
        G1=grads.shape[2],
        BLOCK_W=block,
        enable_fp_fusion=False,
    )
    return out


def perlin_mask_triton(res, grads, frame, threshold, combine, foreground, apply, height: int, width: int):
    """Same contract as ``anofast.reference.perlin.perlin_mask_reference``."""
    batch, lat = res.shape[:2]
    dev = grads.device
    mask = torch.empty((batch, 1, height, width), dtype=torch.float32, device=dev)
    extents = torch.empty((batch, height, 2), dtype=torch.int32, device=dev)
    if batch == 0:
        return mask, extents
    fg = foreground if foreground is not None else mask  # a valid pointer that is never read
    _perlin_mask_kernel[(batch * height,)](
        mask,
        extents,
        res,
        grads,
        frame,
        threshold,
        combine,
        fg,
        apply.to(torch.uint8),
        height,
        width,
        lat,
        *_frame_scalars(height, width),
        G1=grads.shape[2],
        HAS_FG=foreground is not None,
        BLOCK_W=_block(width),
        enable_fp_fusion=False,
    )
    return mask, extents
