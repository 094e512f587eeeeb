"""Integral image (summed-area table) of a mask: NSA's rejection sampler tests hundreds of candidate boxes with it.

``out[b, y, x]`` is the number of nonzero mask pixels in rows ``< y`` and columns ``< x`` (row 0 and column 0 are
0), so the count of a box is four look-ups. The counts are exact int32 in every backend, which therefore agree bit
for bit: a one-pass running row sum added to the previous output row in C++ (parallel over images), running column
sums in registers plus a block prefix sum in Triton, two ``cumsum`` in the reference.
"""

from __future__ import annotations

import torch
from torch import Tensor

import anofast.reference.integral  # noqa: F401  (registers the reference backend)
from anofast._dispatch import dispatch, num_threads, register_impl
from anofast._validate import check_param, check_tensor

MAX_PIXELS = 2**31 - 1  # the largest count an int32 table holds: H * W must not exceed it


def integral_image(mask: Tensor, *, backend: str = "auto") -> Tensor:
    """The summed-area table of ``mask != 0``.

    Args:
        mask: ``(B, 1, H, W)`` bool or uint8 (any nonzero value counts as 1); ``B, H, W >= 1``, ``H * W < 2**31``.
        backend: ``auto``, ``reference``, ``cpp`` (CPU) or ``triton`` (CUDA).

    Returns:
        ``(B, H + 1, W + 1)`` int32 on the mask's device: ``out[b, y, x]`` = the number of nonzero pixels of
        ``mask[b, 0]`` in rows ``< y`` and columns ``< x``; row 0 and column 0 are 0. The count over rows
        ``[y0, y1)`` and columns ``[x0, x1)`` is ``out[:, y1, x1] - out[:, y0, x1] - out[:, y1, x0] + out[:, y0, x0]``.

    Raises:
        TypeError: a non-tensor, or a dtype other than bool / uint8.
        ValueError: a shape other than ``(B, 1, H, W)``, an empty batch or image, or ``H * W >= 2**31`` (the counts
            would not fit in int32).

    Backends:
        ``reference`` (any device), ``cpp`` (CPU), ``triton`` (CUDA); all three agree bit for bit.

    Example:
        >>> mask = torch.tensor([[[[1, 0, 1], [0, 1, 1]]]], dtype=torch.uint8)
        >>> integral_image(mask)[0].tolist()
        [[0, 0, 0, 0], [0, 1, 1, 2], [0, 1, 2, 4]]
    """
    mask = check_tensor(mask, "mask")
    if mask.dim() == 4 and mask.shape[2] * mask.shape[3] > MAX_PIXELS:  # before check_param's contiguous copy
        h, w = mask.shape[2:]
        raise ValueError(f"mask has {h} x {w} = {h * w} pixels; the int32 counts need H * W < 2**31")
    mask = check_param(mask, "mask", (torch.bool, torch.uint8), (-1, 1, -1, -1), mask.device, like="the mask")
    batch, _, height, width = mask.shape
    if batch == 0:
        raise ValueError("mask is an empty batch (B=0)")
    if height == 0 or width == 0:
        raise ValueError(f"mask has an empty image size {(height, width)}")
    return dispatch("integral_image", mask.device, backend)(mask)


def _as_uint8(mask: Tensor) -> Tensor:
    """The same bytes as uint8 (a bool tensor holds 0 / 1 bytes): no copy."""
    return mask.view(torch.uint8) if mask.dtype == torch.bool else mask


@register_impl("integral_image", "cpp")
def _load_cpp():
    from anofast._backend import cpp_module

    fn = cpp_module().integral_image_cpu

    def integral_image_cpp(mask):
        batch, _, height, width = mask.shape
        out = torch.empty(batch, height + 1, width + 1, dtype=torch.int32)
        fn(_as_uint8(mask).numpy(), out.numpy(), num_threads())
        return out

    return integral_image_cpp


@register_impl("integral_image", "triton")
def _load_triton():
    from anofast._kernels.integral import integral_image_triton

    def integral_image_tr(mask, block=None):
        return integral_image_triton(_as_uint8(mask), block)

    return integral_image_tr
