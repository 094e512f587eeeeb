"""Reference of the ``depth_inject`` op: displacement along the viewing rays, new normals, shading and masks.

Inputs: ``rgb`` ``(B, 3, H, W)`` in [0, 1], ``xyz`` ``(B, 3, H, W)`` (0 = invalid), ``normals`` ``(B, 3, H, W)``
(``normals(xyz)``), signed ``height`` ``(B, 1, H, W)`` (xyz units, > 0 towards the camera), optional colour
weight ``alpha`` ``(B, 1, H, W)`` in [0, 1] and per-sample ``params`` ``(B, NPARAMS)`` (columns below).

Per pixel (float32, this operation order; ``sqrt_rn`` and ``/`` exactly rounded)::

    L = sqrt_rn((x*x + y*y) + z*z) ; d = -((n.x*x + n.y*y) + n.z*z)     # d = c * L, c = -n . ray
    den = d if d > 0.2*L else 0.2*L ; f = 1 - h / den (1 where invalid or den == 0) ; cand = P * f
    moved = valid and |cand.z - z| > EPS_GEO
    P' = (0 if HOLE else cand) if moved else P                          # every point stays on its ray
    near = moved at p or one of its four neighbours
    n' = normals(P') if near else normals_in                           # unchanged surface: the input normals
    sh(n) = AMBIENT + max(0, (n.x*l.x + n.y*l.y) + n.z*l.z) ; S = clamp(sh(n') / sh(n_in), 0.3, 3)
    t = clamp(-(h * INV_AMP), 0, 1) if valid else 0 ; g = S * (1 - CAVITY * t)      # cavity darkening
    v_c = rgb_c * g ; v_c = clamp01(v_c + a * (COLOUR_c - v_c))  with a = alpha if valid else 0
    changed = (|v_0 - rgb_0| + |v_1 - rgb_1|) + |v_2 - rgb_2| > EPS_RGB3
    rgb' = v if changed else rgb

``mask_geo = moved`` (exactly the points that changed), ``mask_rgb = changed`` (exactly the pixels that changed).
A positive ``h`` moves the point towards the camera by ``h`` along its normal (while ``c >= 0.2``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from anofast._dispatch import register_impl
from anofast.reference.normals import normals_reference, sqrt_rn, valid_points

# Columns of the per-sample params table (float32).
LX, LY, LZ, AMBIENT, EPS_GEO, EPS_RGB3, CAVITY, INV_AMP, COLOUR_R, COLOUR_G, COLOUR_B, HOLE = range(12)
NPARAMS = 12
# float32 constants, exact as Python floats (no backend rounds a double constant)
MIN_COS = 0.20000000298023224  # float32(0.2): the division never sees a grazing ray's tiny cosine
S_MIN = 0.30000001192092896  # float32(0.3): bounds of the shading ratio
S_MAX = 3.0


def _col(params: Tensor, i: int) -> Tensor:
    return params[:, i].view(-1, 1, 1, 1)


def _clamp(x: Tensor, lo: float | Tensor, hi: float | Tensor) -> Tensor:
    # as selects, the kernels' form (so every backend agrees on a zero's sign too)
    x = torch.where(x > lo, x, lo)
    return torch.where(x < hi, x, hi)


def depth_inject_reference(
    rgb: Tensor, xyz: Tensor, normals: Tensor, height: Tensor, alpha: Tensor | None, params: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``(rgb', xyz', normals', mask_geo, mask_rgb)``: float32 ``(B,3,H,W)`` x3 and ``(B,1,H,W)`` {0, 1} x2."""
    valid = valid_points(xyz)
    x, y, z = xyz[:, 0:1], xyz[:, 1:2], xyz[:, 2:3]
    length = sqrt_rn((x * x + y * y) + z * z)
    d = -((normals[:, 0:1] * x + normals[:, 1:2] * y) + normals[:, 2:3] * z)
    floor = length * MIN_COS
    den = torch.where(d > floor, d, floor)
    live = valid & (den > 0)
    f = torch.where(live, 1.0 - height / torch.where(live, den, 1.0), 1.0)
    cand = xyz * f
    moved = valid & ((cand[:, 2:3] - z).abs() > _col(params, EPS_GEO))
    hole = _col(params, HOLE) != 0
    new_xyz = torch.where(moved, torch.where(hole, 0.0, cand), xyz)

    m = F.pad(moved, (1, 1, 1, 1))
    near = m[..., 1:-1, 1:-1] | m[..., 1:-1, 2:] | m[..., 1:-1, :-2] | m[..., 2:, 1:-1] | m[..., :-2, 1:-1]
    new_normals = torch.where(near, normals_reference(new_xyz), normals)

    light = params[:, LX:LZ + 1].view(-1, 3, 1, 1)
    ambient = _col(params, AMBIENT)

    def shade(n: Tensor) -> Tensor:
        dot = (n[:, 0:1] * light[:, 0:1] + n[:, 1:2] * light[:, 1:2]) + n[:, 2:3] * light[:, 2:3]
        return ambient + torch.where(dot > 0, dot, 0.0)

    s = _clamp(shade(new_normals) / shade(normals), S_MIN, S_MAX)
    t = torch.where(valid, _clamp(-(height * _col(params, INV_AMP)), 0.0, 1.0), 0.0)
    g = s * (1.0 - _col(params, CAVITY) * t)
    v = rgb * g
    if alpha is not None:
        a = torch.where(valid, alpha, 0.0)
        colour = params[:, COLOUR_R:COLOUR_B + 1].view(-1, 3, 1, 1)
        v = v + a * (colour - v)
    v = _clamp(v, 0.0, 1.0)
    diff = (v - rgb).abs()
    changed = ((diff[:, 0:1] + diff[:, 1:2]) + diff[:, 2:3]) > _col(params, EPS_RGB3)
    new_rgb = torch.where(changed, v, rgb)
    return new_rgb, new_xyz, new_normals, moved.to(torch.float32), changed.to(torch.float32)


@register_impl("depth_inject", "reference")
def _load_reference():
    return depth_inject_reference
