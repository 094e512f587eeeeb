"""NSA's object mask (``skip_background``): a pixel is on where its channel mean differs from every given background
brightness by more than the pair's threshold, then the binary map is median filtered (cv2.medianBlur, 7x7 in NSA).

NSA (hmsch/natural-synthetic-anomalies, ``patch_ex``) computes, on uint8 HxWxC images::

    for background, threshold in skip_background:
        mask &= uint8(abs(img.mean(axis=-1) - background) > threshold)
    mask = cv2.medianBlur(mask, 7)

Here the rule runs in integers: with ``s`` the channel sum of a pixel's uint8 values and ``C`` channels,
``|s / C - b| > t`` iff ``s < C (b - t)`` or ``s > C (b + t)``, i.e. ``s < lo`` or ``s > hi`` with
``lo = ceil(C (b - t))`` and ``hi = floor(C (b + t))``, computed exactly on the host (:func:`background_table`).
Float images are first quantised to grey levels, ``round(x * 255)``, so every backend sees uint8 values and the
backends (reference, C++, Triton) agree bit for bit.
"""

from __future__ import annotations

import math
import numbers
import operator
from fractions import Fraction

import torch
from torch import Tensor

import anofast.reference.object_mask  # noqa: F401  (registers the reference backend)
from anofast._dispatch import dispatch, num_threads, register_impl
from anofast._validate import check_tensor, check_unit_range

MAX_MEDIAN = 63  # window side: far beyond NSA's 7, and keeps the window counts in 16 bits (63 * 63 = 3969)


def _number(v: object, what: str) -> Fraction:
    """``v`` (a real number, not a bool) as an exact fraction; TypeError / ValueError naming ``what``."""
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"{what} must be a real number, got {type(v).__name__}")
    if isinstance(v, numbers.Integral):
        return Fraction(int(v))
    f = float(v)  # exact for float32 / float64 values
    if not math.isfinite(f):
        raise ValueError(f"{what} must be finite, got {v!r}")
    return Fraction(f)


def _is_pair(p: object) -> bool:
    return isinstance(p, (tuple, list)) and len(p) == 2


def background_pairs(background: object) -> list[tuple[Fraction, Fraction]]:
    """``background`` (one ``(brightness, threshold)`` pair or a non-empty sequence of them) as exact fractions.

    Raises:
        TypeError: not a pair or a sequence of pairs, or a value that is not a real number.
        ValueError: no pair, a non-finite value or a negative threshold.
    """
    if not isinstance(background, (tuple, list)):
        raise TypeError(
            f"background must be a (brightness, threshold) pair or a sequence of pairs, got {type(background).__name__}"
        )
    single = _is_pair(background) and not any(isinstance(v, (tuple, list)) for v in background)
    pairs = [background] if single else list(background)
    if not pairs:
        raise ValueError("background must hold at least one (brightness, threshold) pair, got an empty sequence")
    out = []
    for i, p in enumerate(pairs):
        if not _is_pair(p):
            raise TypeError(f"background[{i}] must be a (brightness, threshold) pair, got {p!r}")
        b = _number(p[0], f"background[{i}] brightness")
        t = _number(p[1], f"background[{i}] threshold")
        if t < 0:
            raise ValueError(f"background[{i}] threshold must be >= 0, got {p[1]!r}")
        out.append((b, t))
    return out


def background_table(background: object, channels: int) -> list[tuple[int, int]]:
    """The ``(lo, hi)`` integer rows of ``background`` for ``channels`` channels: a pixel whose uint8 channel sum is
    ``s`` is on for a pair ``(b, t)`` iff ``|s / channels - b| > t`` iff ``s < lo`` or ``s > hi``.

    ``lo = ceil(C (b - t))`` and ``hi = floor(C (b + t))`` in exact rational arithmetic, then clamped to
    ``[0, 255 C + 1]`` and ``[-1, 255 C]`` (the same test for every ``s`` in ``[0, 255 C]``, and small integers), so
    ``lo <= hi + 1`` always.
    """
    top = 255 * channels
    rows = []
    for b, t in background_pairs(background):
        lo = math.ceil(channels * (b - t))
        hi = math.floor(channels * (b + t))
        rows.append((min(max(lo, 0), top + 1), min(max(hi, -1), top)))
    return rows


def _check_median(median: object) -> int:
    if isinstance(median, bool):
        raise TypeError("median must be an int, got bool")
    try:
        median = operator.index(median)
    except TypeError:
        raise TypeError(f"median must be an int, got {type(median).__name__}") from None
    if not (1 <= median <= MAX_MEDIAN and median % 2 == 1):
        raise ValueError(f"median must be an odd int in [1, {MAX_MEDIAN}] (1: no filter), got {median}")
    return median


def _check_images(images: object) -> Tensor:
    """``(B, C, H, W)`` uint8, or float32 in [0, 1] quantised to ``round(x * 255)``; returned as contiguous uint8."""
    x = check_tensor(images, "images")
    if x.dtype not in (torch.uint8, torch.float32):
        raise TypeError(f"images must be uint8 or float32 in [0, 1], got {x.dtype}")
    if x.dim() != 4:
        raise ValueError(f"images must have shape (B, C, H, W), got rank {x.dim()} shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError("images is an empty batch (B=0)")
    if x.shape[1] == 0:
        raise ValueError(f"images must have at least 1 channel, got shape {tuple(x.shape)}")
    if x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f"images has an empty image size {tuple(x.shape[2:])}")
    if x.dtype == torch.uint8:
        return x.contiguous()
    check_unit_range(x, "images")
    # Whole numbers in [0, 255]: through int16, which torch converts from float about 2.5x faster than to uint8.
    return (x * 255.0).round_().to(torch.int16).to(torch.uint8)


def object_mask(images: Tensor, background, median: int = 7, *, dtype: torch.dtype = torch.float32,
                backend: str = "auto") -> Tensor:
    """NSA's object mask: on where the channel mean differs from each background brightness by more than its
    threshold, median filtered over a ``median x median`` window with replicated borders.

    Args:
        images: ``(B, C, H, W)``, ``B, C, H, W >= 1``: uint8, or float32 in [0, 1], first quantised to the grey
            levels ``round(x * 255)`` (NSA works on uint8 images).
        background: one ``(brightness, threshold)`` pair or a non-empty sequence of pairs (real numbers on the
            0-255 scale, ``threshold >= 0``): a pixel is on iff ``|mean_c(x) - brightness| > threshold`` for every
            pair, computed exactly (:func:`background_table`).
        median: odd int in [1, 63]: the side of the binary median filter (NSA: 7; 1: no filter). The output is on
            iff at least ``(median * median + 1) // 2`` pixels of the window are on, pixels outside the image
            taking the value of the nearest edge pixel (cv2.medianBlur's border).
        dtype: ``torch.float32`` (default) or ``torch.uint8``, the output's type (uint8 saves a conversion where
            the mask is used as a foreground).
        backend: ``auto``, ``reference``, ``cpp`` (CPU) or ``triton`` (CUDA).

    Returns:
        ``(B, 1, H, W)`` in {0, 1}, of ``dtype``.

    Raises:
        TypeError: a non-tensor, another dtype, a background that is not a pair / sequence of pairs of numbers, or
            a median that is not an int, or another dtype than float32 / uint8.
        ValueError: a bad shape, an empty batch or image, NaN or out-of-range float values, no pair, a non-finite
            value or negative threshold, or an even / out-of-range median.

    Backends:
        ``reference`` (any device), ``cpp`` (CPU), ``triton`` (CUDA); all three agree bit for bit.

    Example:
        >>> img = torch.full((1, 3, 4, 4), 10, dtype=torch.uint8)
        >>> img[..., 1:, 1:] = 200  # an object on a dark background; the filter rounds off its corner
        >>> object_mask(img, (10, 20), 3)[0, 0].tolist()
        [[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0], [0.0, 1.0, 1.0, 1.0], [0.0, 1.0, 1.0, 1.0]]
    """
    images = _check_images(images)
    table = background_table(background, images.shape[1])
    median = _check_median(median)
    if dtype not in (torch.float32, torch.uint8):
        raise TypeError(f"dtype must be torch.float32 or torch.uint8, got {dtype!r}")
    fn = dispatch("object_mask", images.device, backend)
    return fn(images, torch.tensor(table, dtype=torch.int32, device=images.device), median, dtype)


@register_impl("object_mask", "cpp")
def _load_cpp():
    from anofast._backend import cpp_module

    fn = cpp_module().object_mask_cpu

    def object_mask_cpp(images, table, median, dtype):
        batch, _, height, width = images.shape
        out = torch.empty(batch, 1, height, width, dtype=dtype)
        fn(images.numpy(), table.numpy(), median, out.numpy(), num_threads())
        return out

    return object_mask_cpp


@register_impl("object_mask", "triton")
def _load_triton():
    from anofast._kernels.object_mask import object_mask_triton

    return object_mask_triton
