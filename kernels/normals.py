"""normals in Triton; mirrors anofast/reference/normals.py operation by operation (launched without FMA fusion).

``tl.sqrt_rn`` and ``tl.div_rn`` are the exactly rounded IEEE square root and division (PTX ``sqrt.rn.f32`` /
``div.rn.f32``), so the results equal the C++ ones bit for bit.
"""

import torch
import triton
import triton.language as tl


@triton.jit
def point_valid(x, y, z):
    return (x != 0.0) | (y != 0.0) | (z != 0.0)


@triton.jit
def normal_from(cx, cy, cz, lx, ly, lz, rx, ry, rz, ux, uy, uz, dx, dy, dz, ok):
    """Unit normal at c from its left/right/up/down neighbours, facing the origin; 0 where not ``ok``."""
    tx0 = rx - lx
    tx1 = ry - ly
    tx2 = rz - lz
    ty0 = dx - ux
    ty1 = dy - uy
    ty2 = dz - uz
    nx = tx1 * ty2 - tx2 * ty1
    ny = tx2 * ty0 - tx0 * ty2
    nz = tx0 * ty1 - tx1 * ty0
    flip = ((nx * cx + ny * cy) + nz * cz) > 0.0
    nx = tl.where(flip, -nx, nx)
    ny = tl.where(flip, -ny, ny)
    nz = tl.where(flip, -nz, nz)
    length = tl.sqrt_rn((nx * nx + ny * ny) + nz * nz)
    ok = ok & (length > 0.0)
    den = tl.where(ok, length, 1.0)
    return (
        tl.where(ok, tl.div_rn(nx, den), 0.0),
        tl.where(ok, tl.div_rn(ny, den), 0.0),
        tl.where(ok, tl.div_rn(nz, den), 0.0),
    )


@triton.jit
def _load3(ptr, off, HW, m):
    return (
        tl.load(ptr + off, mask=m, other=0.0),
        tl.load(ptr + HW + off, mask=m, other=0.0),
        tl.load(ptr + 2 * HW + off, mask=m, other=0.0),
    )


@triton.jit(do_not_specialize=["H", "W"])
def _normals_kernel(out_ptr, xyz_ptr, H, W, BLOCK_W: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)  # b*H + y
    b = row // H
    y = row % H
    HW = H * W
    base = b * 3 * HW
    x = tl.program_id(1) * BLOCK_W + tl.arange(0, BLOCK_W)
    in_row = x < W
    yv = x * 0 + y  # the row index as a vector (the interpreter rejects a scalar in a load mask)
    inner = in_row & (x > 0) & (x < W - 1) & (yv > 0) & (yv < H - 1)
    off = y * W + x
    cx, cy, cz = _load3(xyz_ptr + base, off, HW, in_row)
    lx, ly, lz = _load3(xyz_ptr + base, off - 1, HW, inner)
    rx, ry, rz = _load3(xyz_ptr + base, off + 1, HW, inner)
    ux, uy, uz = _load3(xyz_ptr + base, off - W, HW, inner)
    dx, dy, dz = _load3(xyz_ptr + base, off + W, HW, inner)
    ok = inner & point_valid(cx, cy, cz) & point_valid(lx, ly, lz) & point_valid(rx, ry, rz)
    ok = ok & point_valid(ux, uy, uz) & point_valid(dx, dy, dz)
    nx, ny, nz = normal_from(cx, cy, cz, lx, ly, lz, rx, ry, rz, ux, uy, uz, dx, dy, dz, ok)
    tl.store(out_ptr + base + off, nx, mask=in_row)
    tl.store(out_ptr + base + HW + off, ny, mask=in_row)
    tl.store(out_ptr + base + 2 * HW + off, nz, mask=in_row)


def normals_triton(xyz: torch.Tensor) -> torch.Tensor:
    """Same contract as ``anofast.reference.normals.normals_reference``."""
    batch, _, height, width = xyz.shape
    out = torch.empty_like(xyz)
    if batch == 0 or height == 0 or width == 0:
        return out
    block = min(256, triton.next_power_of_2(width))
    grid = (batch * height, triton.cdiv(width, block))
    _normals_kernel[grid](out, xyz, height, width, BLOCK_W=block, enable_fp_fusion=False)
    return out
