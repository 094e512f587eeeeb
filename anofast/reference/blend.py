"""Reference of the ``blend`` op: the fused blend that writes the anomalous image and its exact mask in one pass.

Per pixel of sample ``b`` (float32, this operation order)::

    placed = placement > 0.5 and (y, x) inside bbox[b] (when a bbox is given)
    for each channel: t = float(texture) * INV255 ; o = img + opacity[b] * (t - img)
                      o = o if o > 0 else 0 ; o = o if o < 1 else 1       # clamp to [0, 1]
    out = o if placed else img                                   # img exactly outside the placement
    mask = placed and any channel has o != img                   # the pixels that really changed

So ``mask == (out != images).any(channel)`` exactly, and ``count[b]`` is its number of pixels.
"""

from __future__ import annotations

import torch
from torch import Tensor

from anofast._dispatch import register_impl

INV255 = 0.003921568859368563  # float32(1/255), exact as a Python float: no backend rounds a double constant


def blend_reference(
    images: Tensor, texture: Tensor, placement: Tensor, opacity: Tensor, bbox: Tensor | None
) -> tuple[Tensor, Tensor, Tensor]:
    """``(out (B, C, H, W) float32, mask (B, 1, H, W) float32, row counts (B, H) int32)``.

    A row count is -1 where the row holds an image value outside [0, 1] or NaN: the kernels see every value
    anyway, so they validate the images during the pass and the caller raises.

    ``images`` ``(B, C, H, W)`` float32, ``texture`` same shape uint8, ``placement`` ``(B, 1, H, W)`` float32,
    ``opacity`` ``(B,)`` float32, ``bbox`` ``(B, 4)`` int32 ``(y0, x0, y1, x1)`` or None: placement outside the
    box is ignored.
    """
    batch, _, height, width = images.shape
    placed = placement > 0.5
    if bbox is not None:
        dev = images.device
        y = torch.arange(height, device=dev).view(1, 1, height, 1)
        x = torch.arange(width, device=dev).view(1, 1, 1, width)
        box = bbox.to(torch.int64).view(batch, 4, 1, 1)
        placed = placed & (y >= box[:, 0:1]) & (y < box[:, 2:3]) & (x >= box[:, 1:2]) & (x < box[:, 3:4])
    t = texture.to(torch.float32) * INV255
    o = images + (opacity.view(batch, 1, 1, 1) * (t - images))
    # max(o, 0) then min(o, 1), written as selects so that every backend agrees on the sign of a zero too.
    o = torch.where(o > 0, o, 0.0)
    o = torch.where(o < 1, o, 1.0)
    out = torch.where(placed, o, images)
    mask = placed & (o != images).any(dim=1, keepdim=True)
    rows = mask[:, 0].sum(dim=-1, dtype=torch.int32)
    bad = ~((images >= 0) & (images <= 1)).all(dim=3).all(dim=1)
    return out, mask.to(torch.float32), torch.where(bad, -1, rows)


@register_impl("blend", "reference")
def _load_reference():
    return blend_reference
