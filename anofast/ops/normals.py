"""Unit normals of an organized point cloud (central differences, invalid-aware, facing the camera).

``xyz`` is ``(B, 3, H, W)`` in the camera frame (MVTec 3D-AD convention: a point with all coordinates 0 is
invalid). The normal of pixel ``p`` is the normalised cross product of the horizontal and vertical central
differences, turned towards the origin; it is 0 on the image border and next to an invalid point. The spec is
``anofast.reference.normals``.
"""

from __future__ import annotations

import torch
from torch import Tensor

import anofast.reference.normals  # noqa: F401  (registers the reference backend)
from anofast._dispatch import dispatch, num_threads, register_impl
from anofast._validate import check_tensor


def check_xyz(xyz: object, name: str = "xyz", *, batch: int | None = None, size: tuple[int, int] | None = None,
              device: torch.device | None = None) -> Tensor:
    """Checks an organized cloud ``(B, 3, H, W)`` (float, finite) and returns it as contiguous float32."""
    x = check_tensor(xyz, name)
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"{name} must have shape (B, 3, H, W) (an organized point cloud), got {tuple(x.shape)}")
    if batch is not None and size is not None and (x.shape[0] != batch or tuple(x.shape[2:]) != tuple(size)):
        raise ValueError(f"{name} must have shape ({batch}, 3, {size[0]}, {size[1]}), got {tuple(x.shape)}")
    if x.shape[0] == 0 or x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f"{name} is empty: shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a float tensor (coordinates), got {x.dtype}")
    if device is not None and x.device != device:
        raise ValueError(f"{name} is on {x.device} but the images are on {device}")
    x = x.to(torch.float32).contiguous()
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or infinite values; mark missing points with 0 (all three coordinates)")
    return x


def normals(xyz: Tensor, *, backend: str = "auto") -> Tensor:
    """Unit normals of an organized point cloud.

    Args:
        xyz: ``(B, 3, H, W)`` float, camera frame, 0 = invalid point.
        backend: ``auto``, ``reference``, ``cpp`` (CPU) or ``triton`` (CUDA).

    Returns:
        ``(B, 3, H, W)`` float32 unit normals with ``n . p <= 0`` (facing the camera at the origin), 0 where
        undefined (border, an invalid point or neighbour, a degenerate neighbourhood).

    Raises:
        TypeError, ValueError: not a tensor, wrong shape, empty, not float, NaN or infinite values.

    Backends:
        ``reference`` (any device), ``cpp`` (CPU), ``triton`` (CUDA); all three agree bit for bit.

    Example:
        >>> ys, xs = torch.meshgrid(torch.arange(4.0), torch.arange(5.0), indexing="ij")
        >>> plane = torch.stack((xs * 0.01, ys * 0.01, torch.ones(4, 5))).unsqueeze(0)
        >>> normals(plane)[0, :, 1, 1].tolist()
        [0.0, 0.0, -1.0]
    """
    xyz = check_xyz(xyz)
    return dispatch("normals", xyz.device, backend)(xyz)


@register_impl("normals", "cpp")
def _load_cpp():
    from anofast._backend import cpp_module

    fn = cpp_module().normals_cpu

    def normals_cpp(xyz: Tensor) -> Tensor:
        out = torch.empty_like(xyz)
        fn(xyz.numpy(), out.numpy(), num_threads())
        return out

    return normals_cpp


@register_impl("normals", "triton")
def _load_triton():
    from anofast._kernels.normals import normals_triton

    return normals_triton
