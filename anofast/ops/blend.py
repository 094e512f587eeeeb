"""Fused blend: writes the anomalous image, its exact mask and the per-sample pixel count in one pass.

``out = img + opacity * (texture/255 - img)`` (clamped to [0, 1]) where the placement mask is set, ``img``
exactly elsewhere; ``mask`` marks the pixels that really changed, so ``mask == (out != images).any(channel)``.
Opacity is the anomaly's weight (anomalib's β; DRAEM's and GLASS's ``1 - β``, METHODS.md §0.2).
"""

from __future__ import annotations

import torch
from torch import Tensor

import anofast.reference.blend  # noqa: F401  (registers the reference backend)
from anofast._dispatch import dispatch, num_threads, register_impl
from anofast._validate import check_float_images, check_param


def blend(
    images: Tensor,
    texture: Tensor,
    placement: Tensor,
    opacity: Tensor,
    *,
    bbox: Tensor | None = None,
    backend: str = "auto",
) -> tuple[Tensor, Tensor, Tensor]:
    """Blends ``texture`` into ``images`` where ``placement > 0.5``, with the exact mask of changed pixels.

    Args:
        images: ``(B, C, H, W)`` float32 in [0, 1], ``C`` in {1, 3}.
        texture: ``(B, C, H, W)`` uint8 anomaly source.
        placement: ``(B, 1, H, W)`` float32 (or bool) placement mask: blend where ``> 0.5``.
        opacity: ``(B,)`` float32 in [0, 1]: the anomaly's weight.
        bbox: optional ``(B, 4)`` int32 ``(y0, x0, y1, x1)`` (exclusive ends, e.g. from ``perlin_mask``):
            placement outside the box is ignored and those pixels are copied without touching the texture, which
            may then hold anything there.
        backend: ``auto``, ``reference``, ``cpp`` (CPU) or ``triton`` (CUDA).

    Returns:
        ``out`` ``(B, C, H, W)`` float32 (bitwise ``images`` outside ``mask``), ``mask`` ``(B, 1, H, W)`` float32
        in {0, 1} (``== (out != images).any(1)``), ``count`` ``(B,)`` int64 pixels in ``mask``.

    Raises:
        TypeError, ValueError: bad shapes, dtypes, devices, an opacity outside [0, 1], a bbox outside the image,
            or an image value outside [0, 1] or NaN (detected by the kernels during the pass, at no extra cost).

    Backends:
        ``reference`` (any device), ``cpp`` (CPU), ``triton`` (CUDA); all three agree bit for bit.

    Example:
        >>> images = torch.full((1, 3, 4, 4), 0.5)
        >>> texture = torch.full((1, 3, 4, 4), 255, dtype=torch.uint8)
        >>> placement = torch.zeros(1, 1, 4, 4)
        >>> placement[..., 1:3, 1:3] = 1
        >>> out, mask, count = blend(images, texture, placement, torch.tensor([0.5]))
        >>> count.tolist(), out[0, 0, 1, 1].item(), out[0, 0, 0, 0].item()
        ([4], 0.75, 0.5)
    """
    images = check_float_images(images)
    batch, channels, height, width = images.shape
    dev = images.device
    texture = check_param(texture, "texture", (torch.uint8,), (batch, channels, height, width), dev)
    placement = check_param(placement, "placement", (torch.float32, torch.bool), (batch, 1, height, width), dev)
    placement = placement.to(torch.float32)
    opacity = check_param(opacity, "opacity", (torch.float32,), (batch,), dev)
    if batch and not bool(((opacity >= 0) & (opacity <= 1)).all()):
        raise ValueError("opacity must lie in [0, 1] (and not be NaN)")
    if bbox is not None:
        bbox = check_param(bbox, "bbox", (torch.int32,), (batch, 4), dev)
        y0, x0, y1, x1 = bbox.unbind(1)
        if batch and not bool(((y0 >= 0) & (x0 >= 0) & (y0 <= y1) & (x0 <= x1) & (y1 <= height) & (x1 <= width)).all()):
            raise ValueError(f"bbox rows must satisfy 0 <= y0 <= y1 <= {height} and 0 <= x0 <= x1 <= {width}")
    out, mask, rows = dispatch("blend", dev, backend)(images, texture, placement, opacity, bbox)
    if bool((rows < 0).any()):
        raise ValueError("images must hold values in [0, 1] and no NaN; undo any mean/std normalisation first")
    return out, mask, rows.sum(dim=1, dtype=torch.int64)


@register_impl("blend", "cpp")
def _load_cpp():
    from anofast._backend import cpp_module

    fn = cpp_module().blend_cpu

    def blend_cpp(images, texture, placement, opacity, bbox):
        out = torch.empty_like(images)
        mask = torch.empty_like(placement)
        rows = torch.empty(images.shape[0], images.shape[2], dtype=torch.int32)
        fn(
            images.numpy(),
            texture.numpy(),
            placement.numpy(),
            opacity.numpy(),
            None if bbox is None else bbox.numpy(),
            out.numpy(),
            mask.numpy(),
            rows.numpy(),
            num_threads(),
        )
        return out, mask, rows

    return blend_cpp


@register_impl("blend", "triton")
def _load_triton():
    from anofast._kernels.blend import blend_triton

    return blend_triton
