"""depth_inject in Triton; mirrors anofast/reference/depth_inject.py operation by operation (no FMA fusion).

Each program handles a block of one image row; the displaced points of the four neighbours are recomputed in the
program (a 1-pixel halo), so the pass is a single kernel. ``tl.sqrt_rn`` / ``tl.div_rn`` are exactly rounded.
"""

import torch
import triton
import triton.language as tl

from anofast._kernels.normals import _load3, normal_from, point_valid
from anofast.reference.depth_inject import MIN_COS, NPARAMS, S_MAX, S_MIN

_MIN_COS = tl.constexpr(MIN_COS)
_S_MIN = tl.constexpr(S_MIN)
_S_MAX = tl.constexpr(S_MAX)
_NP = tl.constexpr(NPARAMS)


@triton.jit
def _displace(xyz_ptr, nrm_ptr, h_ptr, off, HW, m, eps, hole):
    """Displaced point at ``off`` (0 outside ``m``) and whether it moved."""
    x, y, z = _load3(xyz_ptr, off, HW, m)
    nx, ny, nz = _load3(nrm_ptr, off, HW, m)
    h = tl.load(h_ptr + off, mask=m, other=0.0)
    ok = point_valid(x, y, z)
    length = tl.sqrt_rn((x * x + y * y) + z * z)
    d = -((nx * x + ny * y) + nz * z)
    floor = length * _MIN_COS
    den = tl.where(d > floor, d, floor)
    live = ok & (den > 0.0)
    f = tl.where(live, 1.0 - tl.div_rn(h, tl.where(live, den, 1.0)), 1.0)
    cx = x * f
    cy = y * f
    cz = z * f
    moved = ok & (tl.abs(cz - z) > eps)
    keep = moved & (hole == 0.0)
    return (
        tl.where(moved, tl.where(keep, cx, 0.0), x),
        tl.where(moved, tl.where(keep, cy, 0.0), y),
        tl.where(moved, tl.where(keep, cz, 0.0), z),
        moved,
    )


@triton.jit
def _shade(nx, ny, nz, lx, ly, lz, ambient):
    dot = (nx * lx + ny * ly) + nz * lz
    return ambient + tl.where(dot > 0.0, dot, 0.0)


@triton.jit
def _clamp(v, lo, hi):
    v = tl.where(v > lo, v, lo)
    return tl.where(v < hi, v, hi)


@triton.jit(do_not_specialize=["H", "W"])
def _depth_inject_kernel(
    o_rgb_ptr, o_xyz_ptr, o_nrm_ptr, geo_ptr, mrgb_ptr,  # outputs
    rgb_ptr, xyz_ptr, nrm_ptr, h_ptr, alpha_ptr, prm_ptr,  # inputs
    H, W, HAS_ALPHA: tl.constexpr, BLOCK_W: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0).to(tl.int64)  # b*H + y
    b = row // H
    y = row % H
    HW = H * W
    base3 = b * 3 * HW
    base1 = b * HW
    x = tl.program_id(1) * BLOCK_W + tl.arange(0, BLOCK_W)
    in_row = x < W
    yv = x * 0 + y  # the row index as a vector (the interpreter rejects a scalar in a load mask)
    has_l = in_row & (x > 0)
    has_r = in_row & (x < W - 1)
    has_u = in_row & (yv > 0)
    has_d = in_row & (yv < H - 1)
    off = y * W + x
    prm = prm_ptr + b * _NP
    lx = tl.load(prm + 0)
    ly = tl.load(prm + 1)
    lz = tl.load(prm + 2)
    ambient = tl.load(prm + 3)
    eps = tl.load(prm + 4)
    eps3 = tl.load(prm + 5)
    cavity = tl.load(prm + 6)
    inv_amp = tl.load(prm + 7)
    hole = tl.zeros([BLOCK_W], dtype=tl.float32) + tl.load(prm + 11)  # a vector: the interpreter mixes no scalars
    X = xyz_ptr + base3
    N = nrm_ptr + base3
    Hp = h_ptr + base1
    cx, cy, cz, mc = _displace(X, N, Hp, off, HW, in_row, eps, hole)
    lx_, ly_, lz_, ml = _displace(X, N, Hp, off - 1, HW, has_l, eps, hole)
    rx, ry, rz, mr = _displace(X, N, Hp, off + 1, HW, has_r, eps, hole)
    ux, uy, uz, mu = _displace(X, N, Hp, off - W, HW, has_u, eps, hole)
    dx, dy, dz, md = _displace(X, N, Hp, off + W, HW, has_d, eps, hole)
    near = mc | ml | mr | mu | md
    ok = has_l & has_r & has_u & has_d & point_valid(cx, cy, cz) & point_valid(lx_, ly_, lz_)
    ok = ok & point_valid(rx, ry, rz) & point_valid(ux, uy, uz) & point_valid(dx, dy, dz)
    nx, ny, nz = normal_from(cx, cy, cz, lx_, ly_, lz_, rx, ry, rz, ux, uy, uz, dx, dy, dz, ok)
    ix, iy, iz = _load3(N, off, HW, in_row)
    nx = tl.where(near, nx, ix)
    ny = tl.where(near, ny, iy)
    nz = tl.where(near, nz, iz)
    tl.store(o_xyz_ptr + base3 + off, cx, mask=in_row)
    tl.store(o_xyz_ptr + base3 + HW + off, cy, mask=in_row)
    tl.store(o_xyz_ptr + base3 + 2 * HW + off, cz, mask=in_row)
    tl.store(o_nrm_ptr + base3 + off, nx, mask=in_row)
    tl.store(o_nrm_ptr + base3 + HW + off, ny, mask=in_row)
    tl.store(o_nrm_ptr + base3 + 2 * HW + off, nz, mask=in_row)
    tl.store(geo_ptr + base1 + off, mc.to(tl.float32), mask=in_row)

    ratio = tl.div_rn(_shade(nx, ny, nz, lx, ly, lz, ambient), _shade(ix, iy, iz, lx, ly, lz, ambient))
    ratio = _clamp(ratio, _S_MIN, _S_MAX)
    px, py, pz = _load3(X, off, HW, in_row)
    valid = point_valid(px, py, pz)
    h = tl.load(Hp + off, mask=in_row, other=0.0)
    t = tl.where(valid, _clamp(-(h * inv_amp), 0.0, 1.0), 0.0)
    g = ratio * (1.0 - cavity * t)
    i0, i1, i2 = _load3(rgb_ptr + base3, off, HW, in_row)
    v0 = i0 * g
    v1 = i1 * g
    v2 = i2 * g
    if HAS_ALPHA:
        a = tl.where(valid, tl.load(alpha_ptr + base1 + off, mask=in_row, other=0.0), 0.0)
        v0 = v0 + a * (tl.load(prm + 8) - v0)
        v1 = v1 + a * (tl.load(prm + 9) - v1)
        v2 = v2 + a * (tl.load(prm + 10) - v2)
    v0 = _clamp(v0, 0.0, 1.0)
    v1 = _clamp(v1, 0.0, 1.0)
    v2 = _clamp(v2, 0.0, 1.0)
    changed = ((tl.abs(v0 - i0) + tl.abs(v1 - i1)) + tl.abs(v2 - i2)) > eps3
    tl.store(o_rgb_ptr + base3 + off, tl.where(changed, v0, i0), mask=in_row)
    tl.store(o_rgb_ptr + base3 + HW + off, tl.where(changed, v1, i1), mask=in_row)
    tl.store(o_rgb_ptr + base3 + 2 * HW + off, tl.where(changed, v2, i2), mask=in_row)
    tl.store(mrgb_ptr + base1 + off, changed.to(tl.float32), mask=in_row)


def depth_inject_triton(rgb, xyz, normals, height, alpha, params):
    """Same contract as ``anofast.reference.depth_inject.depth_inject_reference``."""
    batch, _, h, w = rgb.shape
    out_rgb, out_xyz, out_nrm = torch.empty_like(rgb), torch.empty_like(xyz), torch.empty_like(normals)
    mask_geo, mask_rgb = torch.empty_like(height), torch.empty_like(height)
    if batch == 0 or h == 0 or w == 0:
        return out_rgb, out_xyz, out_nrm, mask_geo, mask_rgb
    block = min(256, triton.next_power_of_2(w))
    grid = (batch * h, triton.cdiv(w, block))
    _depth_inject_kernel[grid](
        out_rgb, out_xyz, out_nrm, mask_geo, mask_rgb,
        rgb, xyz, normals, height, alpha if alpha is not None else height, params,
        h, w, HAS_ALPHA=alpha is not None, BLOCK_W=block, enable_fp_fusion=False,
    )  # fmt: skip
    return out_rgb, out_xyz, out_nrm, mask_geo, mask_rgb
