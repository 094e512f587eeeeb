"""Reference of the ``object_mask`` op: NSA's object mask (``skip_background``), a thresholded channel mean then a
binary median filter.

For uint8 images ``(B, C, H, W)`` and the integer table ``(P, 2)`` of ``(lo, hi)`` rows that
``anofast.ops.object_mask.background_table`` builds from the ``(brightness, threshold)`` pairs::

    s[b, y, x]  = sum_c images[b, c, y, x]                         # int32
    on[b, y, x] = all_p (s < lo_p or s > hi_p)                     # = all_p |s / C - brightness_p| > threshold_p
    n[b, y, x]  = #{(dy, dx) in [-r, r]^2 : on[b, clamp(y + dy), clamp(x + dx)]}   # r = median // 2
    out[b, 0, y, x] = 1.0 if n >= (median * median + 1) // 2 else 0.0

``clamp`` keeps a coordinate inside the image (replicated borders, cv2.medianBlur's rule), so this is the median of
the binary map over the ``median x median`` window. Everything is integer arithmetic: any correct implementation
gives the same bits.
"""

from __future__ import annotations

import torch
from torch import Tensor

from anofast._dispatch import register_impl


def object_mask_reference(images: Tensor, table: Tensor, median: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """``(B, 1, H, W)`` in {0, 1} of ``dtype`` (float32 or uint8): the median-filtered object mask.

    ``images`` ``(B, C, H, W)`` uint8, ``table`` ``(P, 2)`` int32 ``(lo, hi)`` rows (on iff the channel sum is
    below ``lo`` or above ``hi`` for every row), ``median`` odd >= 1; all on the same device.
    """
    batch, _, height, width = images.shape
    s = images.to(torch.int32).sum(1)  # (B, H, W)
    on = torch.ones_like(s, dtype=torch.bool)
    for lo, hi in table.tolist():
        on &= (s < lo) | (s > hi)
    r = median // 2
    dev = images.device
    # Replicated borders: the rows / columns of the padded map are clamped image coordinates.
    ys = torch.arange(-r, height + r, device=dev).clamp_(0, height - 1)
    xs = torch.arange(-r, width + r, device=dev).clamp_(0, width - 1)
    padded = on.to(torch.int32)[:, ys][:, :, xs]  # (B, H + 2r, W + 2r)
    # Window counts from an integral image (exact in int32: at most (H + 2r) * (W + 2r) ones).
    ii = torch.nn.functional.pad(padded.cumsum(1, dtype=torch.int32).cumsum(2, dtype=torch.int32), (1, 0, 1, 0))
    k = median
    count = ii[:, k:, k:] - ii[:, :-k, k:] - ii[:, k:, :-k] + ii[:, :-k, :-k]  # (B, H, W)
    return (count >= (k * k + 1) // 2).to(dtype).unsqueeze(1)


@register_impl("object_mask", "reference")
def _load_reference():
    return object_mask_reference
