"""Reference of the ``integral_image`` op: the summed-area table of a mask.

For a ``(B, 1, H, W)`` mask::

    out[b, y, x] = #{(y', x') : y' < y, x' < x, mask[b, 0, y', x'] != 0}      0 <= y <= H, 0 <= x <= W

so row 0 and column 0 are 0, and the sum of the mask over rows ``[y0, y1)`` and columns ``[x0, x1)`` is
``out[y1, x1] - out[y0, x1] - out[y1, x0] + out[y0, x0]``. The counts are exact int32 (``H * W < 2**31``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from anofast._dispatch import register_impl


def integral_image_reference(mask: Tensor) -> Tensor:
    """``(B, H + 1, W + 1)`` int32: the summed-area table of ``mask != 0``; ``mask`` ``(B, 1, H, W)`` bool or uint8."""
    batch, _, height, width = mask.shape
    out = torch.zeros(batch, height + 1, width + 1, dtype=torch.int32, device=mask.device)
    on = (mask[:, 0] != 0).to(torch.int32)
    out[:, 1:, 1:] = on.cumsum(2, dtype=torch.int32).cumsum(1, dtype=torch.int32)
    return out


@register_impl("integral_image", "reference")
def _load_reference():
    return integral_image_reference
