"""Masked disk median: the median of the values on a disk around every mask pixel (NSA's intensity label).

At every pixel where ``mask > 0.5``, the lower median (torch.median's convention) of the ``n`` values on the disk
``dy*dy + dx*dx <= radius*radius`` around it, pixels outside the image counting as 0.0; 0.0 elsewhere. The median
is a selection of one input value, so the backends (a min/max network in C++, a radix search on the floats'
order-preserving bits in Triton, ``torch.median`` in the reference) agree bit for bit; a zero result is always
``+0.0``.
"""

from __future__ import annotations

import operator

import torch
from torch import Tensor

import anofast.reference.median  # noqa: F401  (registers the reference backend)
from anofast._dispatch import dispatch, num_threads, register_impl
from anofast._validate import check_param, check_tensor

MAX_RADIUS = 64  # n = 12853 disk values: far beyond any use, and keeps every backend's scratch small


def masked_median(values: Tensor, mask: Tensor, radius: int = 5, *, backend: str = "auto") -> Tensor:
    """The median of ``values`` over a disk of ``radius`` around every pixel where ``mask > 0.5``, 0.0 elsewhere.

    Args:
        values: ``(B, 1, H, W)`` float32, finite (any sign); ``B >= 1``.
        mask: ``(B, 1, H, W)`` float32 or bool on the same device: the median is computed where ``> 0.5``.
        radius: int in [0, 64]: the disk is the offsets ``(dy, dx)`` with ``dy*dy + dx*dx <= radius*radius`` (81
            values for radius 5); values outside the image count as 0.0.
        backend: ``auto``, ``reference``, ``cpp`` (CPU) or ``triton`` (CUDA).

    Returns:
        ``(B, 1, H, W)`` float32: the order statistic of index ``(n - 1) // 2`` of the ``n`` disk values at mask
        pixels (never ``-0.0``), ``0.0`` elsewhere.

    Raises:
        TypeError: a non-tensor, another dtype, or a radius that is not an int.
        ValueError: bad shapes or devices, an empty batch, a radius outside [0, 64], or NaN / infinite values.

    Backends:
        ``reference`` (any device), ``cpp`` (CPU), ``triton`` (CUDA); all three agree bit for bit.

    Example:
        >>> values = torch.arange(9.0).view(1, 1, 3, 3)
        >>> mask = torch.zeros(1, 1, 3, 3, dtype=torch.bool)
        >>> mask[0, 0, 1, 1] = True
        >>> masked_median(values, mask, 1)[0, 0].tolist()  # median of 1, 3, 4, 5, 7
        [[0.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 0.0]]
    """
    values = check_tensor(values, "values")
    values = check_param(values, "values", torch.float32, (-1, 1, -1, -1), values.device, finite=True)
    batch, _, height, width = values.shape
    if batch == 0:
        raise ValueError("values is an empty batch (B=0)")
    mask = check_param(mask, "mask", (torch.float32, torch.bool), (batch, 1, height, width), values.device,
                       like="the values")
    mask = mask.to(torch.float32)
    if isinstance(radius, bool):
        raise TypeError("radius must be an int, got bool")
    try:
        radius = operator.index(radius)
    except TypeError:
        raise TypeError(f"radius must be an int, got {type(radius).__name__}") from None
    if not 0 <= radius <= MAX_RADIUS:
        raise ValueError(f"radius must lie in [0, {MAX_RADIUS}], got {radius}")
    return dispatch("masked_median", values.device, backend)(values, mask, radius)


@register_impl("masked_median", "cpp")
def _load_cpp():
    from anofast._backend import cpp_module

    fn = cpp_module().masked_median_cpu

    def masked_median_cpp(values, mask, radius):
        out = torch.empty_like(values)
        fn(values.numpy(), mask.numpy(), radius, out.numpy(), num_threads())
        return out

    return masked_median_cpp


@register_impl("masked_median", "triton")
def _load_triton():
    from anofast._kernels.median import masked_median_triton

    return masked_median_triton
