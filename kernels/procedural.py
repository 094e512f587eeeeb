"""procedural_texture in Triton; mirrors anofast/reference/procedural.py bit for bit.

One program per (sample, row, column block); every lattice value is hashed per pixel (the C++ kernel caches them
per row; both are the same pure function). Launched with ``enable_fp_fusion=False``.
"""

import torch
import triton
import triton.language as tl

from anofast.reference.procedural import NUM_F, PIXEL_COUNTER_BASE

from ._rng import uniform


@triton.jit
def _lattice(key, i, j, slot):
    counter = (slot * 4096 + (j & 4095)) * 4096 + (i & 4095)
    return uniform(key, counter)


@triton.jit
def _frac(z):
    return z - tl.floor(z)


@triton.jit
def _smooth(t):
    return t * t * (3.0 - 2.0 * t)


@triton.jit
def _thread(w):
    return 1.0 - tl.abs(2.0 * _frac(3.0 * w) - 1.0)


@triton.jit
def _procedural_kernel(
    out_ptr,  # (B, 3, H, W) uint8
    keys_ptr,  # (B,) int64 uint32 keys
    ip_ptr,  # (B, 4) int32
    fp_ptr,  # (B, NUM_F) float32
    H,
    W,
    NF: tl.constexpr,
    PIX_BASE: tl.constexpr,
    BLOCK_W: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    b = row // H
    y = row % H
    x = tl.program_id(1).to(tl.int64) * BLOCK_W + tl.arange(0, BLOCK_W)
    inside = x < W
    key = tl.load(keys_ptr + b).to(tl.uint32)
    kind = tl.load(ip_ptr + 4 * b)
    octaves = tl.load(ip_ptr + 4 * b + 1)
    spots = tl.load(ip_ptr + 4 * b + 2)
    fp = fp_ptr + NF * b
    X = x.to(tl.float32)
    Y = (tl.zeros([BLOCK_W], dtype=tl.int64) + y).to(tl.float32)
    n = tl.zeros([BLOCK_W], dtype=tl.float32)
    for o in range(octaves):
        step = tl.load(fp + o)
        amp = tl.load(fp + 6 + o)
        u = X * step
        v = Y * step
        fi = tl.floor(u)
        fj = tl.floor(v)
        i = fi.to(tl.int32)
        j = fj.to(tl.int32)
        su = _smooth(u - fi)
        sv = _smooth(v - fj)
        a = _lattice(key, i, j, o)
        bb = _lattice(key, i + 1, j, o)
        c = _lattice(key, i, j + 1, o)
        d = _lattice(key, i + 1, j + 1, o)
        left = a + sv * (c - a)
        right = bb + sv * (d - bb)
        n = n + amp * (left + su * (right - left))
    ax = tl.load(fp + 12)
    ay = tl.load(fp + 13)
    warp = tl.load(fp + 14)
    t = n
    if (kind == 1) | (kind == 2):  # marble, stripes
        tr = tl.abs(2.0 * _frac((X * ax + Y * ay) + warp * n) - 1.0)
        if kind == 1:
            t = (tr * tr) * (tr * tr) * 0.75 + n * 0.25
        else:
            t = tr * 0.75 + n * 0.25
    elif kind == 3:  # woven
        z1 = (X * ax + Y * ay) + warp * n
        z2 = (Y * ax - X * ay) + warp * n
        odd = ((tl.floor(z1).to(tl.int32) + tl.floor(z2).to(tl.int32)) & 1) == 1
        t = tl.where(odd, _thread(_frac(z1)), _thread(_frac(z2))) * 0.75 + n * 0.25
    elif kind == 4:  # cells
        cstep = tl.load(fp + 18)
        cscale = tl.load(fp + 19)
        px = X * cstep
        py = Y * cstep
        ci = tl.floor(px).to(tl.int32)
        cj = tl.floor(py).to(tl.int32)
        best = tl.full([BLOCK_W], 8.0, dtype=tl.float32)
        for dj in tl.static_range(3):
            for di in tl.static_range(3):
                ii = ci + (di - 1)
                jj = cj + (dj - 1)
                fx = ii.to(tl.float32) + _lattice(key, ii, jj, 6)
                fy = jj.to(tl.float32) + _lattice(key, ii, jj, 7)
                dx = px - fx
                dy = py - fy
                best = tl.minimum(best, dx * dx + dy * dy)
        cell = tl.minimum(best * cscale, 1.0)
        if spots != 0:
            cell = 1.0 - cell
        t = cell * 0.75 + n * 0.25
    t = tl.minimum(tl.maximum((t - 0.5) * tl.load(fp + 15) + tl.load(fp + 16), 0.0), 1.0)
    w = t * 2.0
    g = (uniform(key, PIX_BASE + y * W + x) - 0.5) * tl.load(fp + 17)
    base = out_ptr + b * 3 * H * W + y * W + x
    for ch in tl.static_range(3):
        c0 = tl.load(fp + 20 + ch)
        c1 = tl.load(fp + 23 + ch)
        c2 = tl.load(fp + 26 + ch)
        col = tl.where(w < 1.0, c0 + w * (c1 - c0), c1 + (w - 1.0) * (c2 - c1))
        v = tl.minimum(tl.maximum(col + g + 0.5, 0.0), 255.5)
        tl.store(base + ch * H * W, v.to(tl.int32).to(tl.uint8), mask=inside)


def procedural_texture_triton(
    keys: torch.Tensor, iparams: torch.Tensor, fparams: torch.Tensor, height: int, width: int
) -> torch.Tensor:
    """Same contract as ``anofast.reference.procedural.procedural_texture_reference``."""
    batch = keys.shape[0]
    out = torch.empty((batch, 3, height, width), dtype=torch.uint8, device=keys.device)
    if out.numel() == 0:
        return out
    block_w = min(512, triton.next_power_of_2(width))
    grid = (batch * height, triton.cdiv(width, block_w))
    _procedural_kernel[grid](
        out, keys.contiguous(), iparams.contiguous(), fparams.contiguous(), height, width,
        NF=NUM_F, PIX_BASE=PIXEL_COUNTER_BASE, BLOCK_W=block_w, enable_fp_fusion=False,
    )  # fmt: skip
    return out
