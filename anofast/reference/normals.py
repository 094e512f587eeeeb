"""Reference of the ``normals`` op: unit normals of an organized point cloud by central differences.

Per pixel ``p = (y, x)`` of ``P`` ``(B, 3, H, W)`` (float32, this operation order; a point is *valid* when any
of its three coordinates is non-zero, the MVTec 3D-AD zero convention)::

    tx = P[y, x+1] - P[y, x-1] ; ty = P[y+1, x] - P[y-1, x]            # per component
    n  = (tx.y*ty.z - tx.z*ty.y, tx.z*ty.x - tx.x*ty.z, tx.x*ty.y - tx.y*ty.x)
    s  = (n.x*P.x + n.y*P.y) + n.z*P.z ; n = -n if s > 0                # face the camera at the origin
    len = sqrt_rn((n.x*n.x + n.y*n.y) + n.z*n.z) ; n = n / len if len > 0 else 0
    n = 0 unless p and its four neighbours are inside the image and valid

``sqrt_rn`` is the exactly rounded square root and ``/`` the exactly rounded division, so C++ (``std::sqrt``,
no FMA) and Triton (``tl.sqrt_rn``, ``tl.div_rn``, no fp fusion) give the same bits. (torch's own float32
``sqrt`` on the CPU is not exactly rounded; the reference takes it in float64, which rounds back exactly.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from anofast._dispatch import register_impl


def sqrt_rn(x: Tensor) -> Tensor:
    """Exactly rounded float32 square root (float64 root, rounded once: exact for float32 inputs)."""
    return x.double().sqrt().to(torch.float32)


def valid_points(xyz: Tensor) -> Tensor:
    """``(B, 1, H, W)`` bool: points with any non-zero coordinate."""
    return (xyz != 0).any(dim=1, keepdim=True)


def normals_reference(xyz: Tensor) -> Tensor:
    """``(B, 3, H, W)`` float32 unit normals facing the origin; zeros where undefined. ``xyz`` ``(B, 3, H, W)``."""
    p = F.pad(xyz, (1, 1, 1, 1))  # zero padding = invalid neighbours outside the image
    valid = valid_points(p)
    c = p[..., 1:-1, 1:-1]
    tx = p[..., 1:-1, 2:] - p[..., 1:-1, :-2]
    ty = p[..., 2:, 1:-1] - p[..., :-2, 1:-1]
    ok = valid[..., 1:-1, 1:-1] & valid[..., 1:-1, 2:] & valid[..., 1:-1, :-2] & valid[..., 2:, 1:-1]
    ok = ok & valid[..., :-2, 1:-1]
    n = torch.cat(
        (
            tx[:, 1:2] * ty[:, 2:3] - tx[:, 2:3] * ty[:, 1:2],
            tx[:, 2:3] * ty[:, 0:1] - tx[:, 0:1] * ty[:, 2:3],
            tx[:, 0:1] * ty[:, 1:2] - tx[:, 1:2] * ty[:, 0:1],
        ),
        dim=1,
    )
    s = (n[:, 0:1] * c[:, 0:1] + n[:, 1:2] * c[:, 1:2]) + n[:, 2:3] * c[:, 2:3]
    n = torch.where(s > 0, -n, n)
    length = sqrt_rn((n[:, 0:1] * n[:, 0:1] + n[:, 1:2] * n[:, 1:2]) + n[:, 2:3] * n[:, 2:3])
    ok = ok & (length > 0)
    return torch.where(ok, n / torch.where(ok, length, 1.0), 0.0)


@register_impl("normals", "reference")
def _load_reference():
    return normals_reference
