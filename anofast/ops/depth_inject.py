"""Fused depth-aware anomaly pass: displacement along the viewing rays, new normals, shading transfer, exact masks.

One pass over an RGB-D batch (METHODS.md §6.8 steps 5-8): each point moves along its own pixel's ray by the
signed height field (so the organized grid stays valid), normals are recomputed where the surface changed, the
RGB shading is multiplied by the ratio of new to old Lambertian shading (plus optional cavity darkening and a
colour change), and the two masks mark exactly the points and pixels that changed. The spec (operation order,
parameter columns) is ``anofast.reference.depth_inject``.
"""

from __future__ import annotations

import torch
from torch import Tensor

import anofast.reference.depth_inject  # noqa: F401  (registers the reference backend)
from anofast._dispatch import dispatch, num_threads, register_impl
from anofast._validate import check_float_images, check_param
from anofast.ops.normals import check_xyz
from anofast.reference.depth_inject import NPARAMS


def depth_inject(
    rgb: Tensor,
    xyz: Tensor,
    normals: Tensor,
    height: Tensor,
    params: Tensor,
    *,
    alpha: Tensor | None = None,
    backend: str = "auto",
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Displaces an organized cloud by a height field and re-shades the image to match.

    Args:
        rgb: ``(B, 3, H, W)`` float32 in [0, 1].
        xyz: ``(B, 3, H, W)`` float32, camera frame (camera at the origin), 0 = invalid point.
        normals: ``(B, 3, H, W)`` float32 ``anofast.ops.normals.normals(xyz)``; where nothing moves within one
            pixel they are passed through, elsewhere recomputed from the displaced cloud.
        height: ``(B, 1, H, W)`` float32 signed height in xyz units (> 0 towards the camera: a bulge).
        params: ``(B, 12)`` float32 per-sample scalars, columns ``anofast.reference.depth_inject.LX ... HOLE``:
            unit light direction, ambient (> 0), geometry threshold, 3 x colour threshold, cavity strength,
            1 / amplitude (for cavity darkening), colour (3) and the hole flag (moved points are removed).
        alpha: optional ``(B, 1, H, W)`` float32 in [0, 1]: weight of the colour change.
        backend: ``auto``, ``reference``, ``cpp`` (CPU) or ``triton`` (CUDA).

    Returns:
        ``rgb'`` ``(B, 3, H, W)``, ``xyz'`` ``(B, 3, H, W)`` (0 where removed), ``normals'`` ``(B, 3, H, W)``,
        ``mask_geo`` and ``mask_rgb`` ``(B, 1, H, W)`` float32 {0, 1}: exactly the points (pixels) that changed.

    Raises:
        TypeError, ValueError: bad shapes, dtypes, devices, NaN, rgb outside [0, 1], alpha outside [0, 1],
            an ambient <= 0.

    Backends:
        ``reference`` (any device), ``cpp`` (CPU), ``triton`` (CUDA); all three agree bit for bit.
    """
    rgb = check_float_images(rgb, "rgb", channels=(3,))
    batch, _, h, w = rgb.shape
    dev = rgb.device
    if not bool(torch.isfinite(rgb).all()):
        raise ValueError("rgb contains NaN or infinite values")
    if batch and not bool(((rgb >= 0) & (rgb <= 1)).all()):
        raise ValueError("rgb must hold values in [0, 1]")
    xyz = check_xyz(xyz, batch=batch, size=(h, w), device=dev)
    normals = check_param(normals, "normals", torch.float32, (batch, 3, h, w), dev, finite=True, like="rgb")
    height = check_param(height, "height", torch.float32, (batch, 1, h, w), dev, finite=True, like="rgb")
    params = check_param(params, "params", torch.float32, (batch, NPARAMS), dev, finite=True, like="rgb")
    if batch and not bool((params[:, 3] > 0).all()):
        raise ValueError("params: the ambient term (column AMBIENT) must be > 0")
    if alpha is not None:
        alpha = check_param(alpha, "alpha", torch.float32, (batch, 1, h, w), dev, finite=True, like="rgb")
        if not bool(((alpha >= 0) & (alpha <= 1)).all()):
            raise ValueError("alpha must hold values in [0, 1]")
    return dispatch("depth_inject", dev, backend)(rgb, xyz, normals, height, alpha, params)


@register_impl("depth_inject", "cpp")
def _load_cpp():
    from anofast._backend import cpp_module

    fn = cpp_module().depth_inject_cpu

    def depth_inject_cpp(rgb, xyz, normals, height, alpha, params):
        out_rgb, out_xyz, out_nrm = torch.empty_like(rgb), torch.empty_like(xyz), torch.empty_like(normals)
        mask_geo, mask_rgb = torch.empty_like(height), torch.empty_like(height)
        fn(rgb.numpy(), xyz.numpy(), normals.numpy(), height.numpy(), None if alpha is None else alpha.numpy(),
           params.numpy(), out_rgb.numpy(), out_xyz.numpy(), out_nrm.numpy(), mask_geo.numpy(), mask_rgb.numpy(),
           num_threads())
        return out_rgb, out_xyz, out_nrm, mask_geo, mask_rgb

    return depth_inject_cpp


@register_impl("depth_inject", "triton")
def _load_triton():
    from anofast._kernels.depth_inject import depth_inject_triton

    return depth_inject_triton
