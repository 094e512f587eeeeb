"""Input checks shared by ops and generators: clear errors that name the argument and what was expected."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def check_tensor(x: object, name: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    return x


def unit_float(x: Tensor) -> Tensor:
    """uint8 grey levels as float32 in [0, 1]: ``float32(v) * float32(1 / 255)``, the one conversion every path uses
    (kernels that read uint8 directly reproduce these bits)."""
    return x.to(torch.float32).mul_(1.0 / 255.0)


def mask_like(batch: int, height: int, width: int, device: torch.device | str) -> Tensor:
    """A ``(batch, 1, height, width)`` stand-in on ``device`` (no storage) for :func:`check_mask`'s ``like``, where
    no image tensor is at hand."""
    return torch.empty((), device=device).expand(batch, 1, height, width)


def all_finite(t: Tensor) -> bool:
    """Whether a tensor holds no NaN or infinity, in one pass over a float tensor (NaN propagates into both ends
    of ``aminmax``, an infinity shows in one)."""
    if not t.is_floating_point() or t.numel() == 0:
        return True
    lo, hi = torch.aminmax(t)
    return math.isfinite(float(lo)) and math.isfinite(float(hi))


def check_param(
    x: object,
    name: str,
    dtypes: torch.dtype | tuple[torch.dtype, ...],
    shape: tuple[int, ...],
    device: torch.device,
    *,
    finite: bool = False,
    like: str = "the images",
) -> Tensor:
    """Checks an op's parameter tensor: its dtype (one of ``dtypes``), exact ``shape`` (``-1`` = any size on
    that axis) and ``device`` (that of ``like``, named in the error); with ``finite`` also its values. Returns it
    contiguous.

    Raises:
        TypeError: not a tensor, or another dtype.
        ValueError: another shape, another device, or (``finite``) NaN / infinite values.
    """
    t = check_tensor(x, name)
    dtypes = dtypes if isinstance(dtypes, tuple) else (dtypes,)
    if t.dtype not in dtypes:
        raise TypeError(f"{name} must have dtype {' or '.join(map(str, dtypes))}, got {t.dtype}")
    if t.dim() != len(shape) or any(want not in (-1, got) for want, got in zip(shape, t.shape)):
        want = tuple("*" if d == -1 else d for d in shape)
        raise ValueError(f"{name} must have shape {want}, got {tuple(t.shape)}")
    if t.device != device:
        raise ValueError(f"{name} is on {t.device} but {like} are on {device}")
    t = t.contiguous()
    if finite and not all_finite(t):
        raise ValueError(f"{name} contains NaN or infinite values")
    return t


def check_float_images(x: object, name: str = "images", channels: tuple[int, ...] = (1, 3)) -> Tensor:
    """Checks an op's ``(B, C, H, W)`` float32 image batch (no conversion, no value pass); returns it contiguous."""
    t = check_tensor(x, name)
    if t.dtype != torch.float32:
        raise TypeError(f"{name} must be float32 in [0, 1], got {t.dtype}")
    if t.dim() != 4 or t.shape[1] not in channels:
        raise ValueError(f"{name} must have shape (B, C, H, W) with C in {channels}, got {tuple(t.shape)}")
    return t.contiguous()


def check_images(
    images: object, name: str = "images", channels: tuple[int, ...] = (1, 3), *, values: bool = True,
    keep_uint8: bool = False,
) -> Tensor:
    """Checks a ``(B, C, H, W)`` batch (float in [0, 1] or uint8) and returns it as contiguous float32.

    uint8 is converted by :func:`unit_float`, or with ``keep_uint8=True`` returned as it is (contiguous) for callers
    whose kernels read uint8 themselves. ``values=False`` skips the pass over the values (NaN, range) for callers
    whose kernels check them anyway (the fused blend does, at no extra cost).

    Raises:
        TypeError: not a tensor, or a dtype other than floating point / uint8.
        ValueError: wrong rank, channel count, empty batch or image, or non-finite values.
    """
    x = check_tensor(images, name)
    if x.dim() != 4:
        raise ValueError(f"{name} must have shape (B, C, H, W), got rank {x.dim()} shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (B=0)")
    if x.shape[1] not in channels:
        raise ValueError(f"{name} must have {' or '.join(map(str, channels))} channels, got {x.shape[1]}")
    if x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f"{name} has an empty image size {tuple(x.shape[2:])}")
    if x.dtype == torch.uint8:
        return x.contiguous() if keep_uint8 else unit_float(x).contiguous()
    if not x.is_floating_point():
        raise TypeError(f"{name} must be float32 in [0, 1] or uint8, got {x.dtype}")
    x = x.to(torch.float32).contiguous()
    if values:
        check_unit_range(x, name)
    return x


def check_unit_range(x: Tensor, name: str) -> None:
    """Raises ValueError unless the float tensor ``x`` holds no NaN and only values in [0, 1] (one pass)."""
    lo, hi = torch.aminmax(x)  # NaN propagates into both
    lo, hi = float(lo), float(hi)
    if math.isnan(lo) or math.isnan(hi):
        raise ValueError(f"{name} contains NaN values")
    if lo < 0.0 or hi > 1.0:
        raise ValueError(
            f"{name} must hold values in [0, 1] (float) or [0, 255] (uint8), got min {lo:.4g} and max {hi:.4g}; "
            "undo any mean/std normalisation before generating anomalies"
        )


def check_mask(mask: object, name: str, like: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """Checks a ``(B, 1, H, W)`` mask matching ``like`` (bool, uint8 or float; a value is on above 0.5, or above 127
    when the mask's maximum exceeds 1) and returns it contiguous in {0, 1} as ``dtype``."""
    m = check_tensor(mask, name)
    b, _, h, w = like.shape
    if m.dim() == 3:
        m = m.unsqueeze(1)
    if m.dim() != 4 or m.shape[1] != 1 or m.shape[0] != b or tuple(m.shape[2:]) != (h, w):
        raise ValueError(f"{name} must have shape ({b}, 1, {h}, {w}), got {tuple(m.shape)}")
    if m.device != like.device:
        raise ValueError(f"{name} is on {m.device} but the images are on {like.device}")
    if m.dtype == torch.bool:
        return m.to(dtype).contiguous()
    if not (m.is_floating_point() or m.dtype == torch.uint8):
        raise TypeError(f"{name} must be bool, uint8 or float, got {m.dtype}")
    if m.numel() == 0:
        return m.to(dtype).contiguous()
    if m.is_floating_point():
        if not all_finite(m):
            raise ValueError(f"{name} contains NaN or infinite values")
        on = m > (0.5 if float(m.max()) <= 1 else 127)
    else:
        if int(m.max()) <= 1:
            if dtype == torch.uint8:
                return m.contiguous()  # already {0, 1}: no pass, no copy
            on = m > 0
        else:
            on = m > 127
    return on.to(dtype).contiguous()


def check_range(value: object, name: str, lo: float | None = None, hi: float | None = None) -> tuple[float, float]:
    """Checks a ``(lo, hi)`` pair (a number means ``(v, v)``) with ``lo <= hi`` inside optional bounds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = (float(value), float(value))
    try:
        a, b = (float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number or a (low, high) pair, got {value!r}") from None
    if not (a == a and b == b) or a > b:
        raise ValueError(f"{name} must satisfy low <= high, got {value!r}")
    if (lo is not None and a < lo) or (hi is not None and b > hi):
        raise ValueError(f"{name} must lie within [{lo}, {hi}], got {value!r}")
    return a, b


def check_probability(p: object, name: str) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")
    return float(p)
