"""Reference of the ``masked_median`` op: the median of a disk of values around every mask pixel.

For every pixel ``(b, y, x)`` with ``mask > 0.5``::

    disk = {(dy, dx) : dy*dy + dx*dx <= radius*radius}             # n offsets, n odd
    vals = [values[b, 0, y + dy, x + dx] (0.0 outside the image) for (dy, dx) in disk]
    out[b, 0, y, x] = sorted(vals)[(n - 1) // 2] + 0.0             # torch.median's (lower) median

and ``out = 0.0`` elsewhere. The median is a selection of one of the values, so every correct algorithm gives
the same bits; the ``+ 0.0`` turns a ``-0.0`` result into ``+0.0`` (which of two equal zeros a selection
returns is not specified), so the output never holds ``-0.0`` and the backends agree bit for bit.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from anofast._dispatch import register_impl


def disk_offsets(radius: int) -> tuple[Tensor, Tensor]:
    """``(dy, dx)`` int64 of the disk ``dy*dy + dx*dx <= radius*radius``, row-major order."""
    r = radius
    yy, xx = torch.meshgrid(torch.arange(-r, r + 1), torch.arange(-r, r + 1), indexing="ij")
    disk = yy * yy + xx * xx <= r * r
    return yy[disk], xx[disk]


def masked_median_reference(values: Tensor, mask: Tensor, radius: int) -> Tensor:
    """``(B, 1, H, W)`` float32: the disk median of ``values`` at the pixels where ``mask > 0.5``, 0.0 elsewhere.

    ``values`` ``(B, 1, H, W)`` float32 (finite), ``mask`` ``(B, 1, H, W)`` float32, ``radius`` >= 0.
    """
    r = radius
    batch, _, _, width = values.shape
    dy, dx = disk_offsets(r)
    wp = width + 2 * r
    offsets = ((dy + r) * wp + (dx + r)).to(values.device)  # (n,) into the zero-padded plane
    # The median is only needed at mask pixels (all samples at once).
    bs, ys, xs = torch.nonzero(mask[:, 0] > 0.5, as_tuple=True)
    padded = F.pad(values, (r, r, r, r)).view(batch, -1)
    win = padded[bs.view(-1, 1), (ys * wp + xs).view(-1, 1) + offsets.view(1, -1)]  # (m, n)
    out = torch.zeros_like(values)
    out[bs, 0, ys, xs] = win.median(1).values + 0.0
    return out


@register_impl("masked_median", "reference")
def _load_reference():
    return masked_median_reference
