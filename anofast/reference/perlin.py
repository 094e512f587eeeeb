"""Reference of the ``perlin_noise`` and ``perlin_mask`` ops: the specification the kernels reproduce bit for bit.

Noise of lattice ``l`` of sample ``b`` at pixel ``(y, x)`` (every step a float32 operation, in this order)::

    dx = float(x) - cx ; dy = float(y) - cy                  # cx = (W-1)*0.5, cy = (H-1)*0.5
    sx = ((c*dx) + (s*dy)) + cx ; sy = ((c*dy) - (s*dx)) + cy # (c, s) = rot[b, l]
    inside = 0 <= sx <= W-1 and 0 <= sy <= H-1                # zero fill outside, like a rotated raster
    u = sx * scale_x ; v = sy * scale_y                       # scale = (rx / W, ry / H), float32, on the host
    i = min(int(u), rx-1) ; j = min(int(v), ry-1) ; fu = u - float(i) ; fv = v - float(j)
    n00 = g[j,i].x*fu + g[j,i].y*fv ; n01 = g[j,i+1].x*(fu-1) + g[j,i+1].y*fv
    n10 = g[j+1,i].x*fu + g[j+1,i].y*(fv-1) ; n11 = g[j+1,i+1].x*(fu-1) + g[j+1,i+1].y*(fv-1)
    fade(t) = ((t*t)*t) * ((t*((t*6)-15)) + 10)
    top = n00 + fade(fu)*(n01-n00) ; bottom = n10 + fade(fu)*(n11-n10)
    noise = SQRT2 * (top + fade(fv)*(bottom-top)) if inside else 0

Mask: ``m_l = noise_l > threshold[b]``; ``combine[b]`` picks ``m_0`` (0), ``m_0 | m_1`` (1) or ``m_0 & m_1`` (2);
then ``& foreground > 0.5`` and ``& apply[b]``. Sampling the noise at the inversely rotated coordinate is
DRAEM's "rasterise, then rotate with zero fill" without the second resampling pass (METHODS.md §1 notes).
"""

from __future__ import annotations

import torch
from torch import Tensor

from anofast._dispatch import register_impl

G1 = 33  # lattice nodes per axis: resolutions up to 32 cells
SQRT2 = 1.4142135381698608  # float32(sqrt(2)), written exactly so that no backend rounds a double constant


def perlin_frame(res: Tensor, rot: Tensor, height: int, width: int) -> Tensor:
    """Per-lattice constants ``(B, L, 4)`` float32 ``(c, s, scale_x, scale_y)``, computed once on the host.

    ``scale = (rx / W, ry / H)`` is a float32 division here so that no kernel divides.
    """
    res_f = res.to(torch.float32)
    size = torch.tensor([width, height], dtype=torch.float32, device=res.device)
    scale = res_f.flip(-1) / size  # (rx, ry) / (W, H)
    return torch.cat((rot.to(torch.float32), scale), dim=-1).contiguous()


def _fade(t: Tensor) -> Tensor:
    return ((t * t) * t) * ((t * ((t * 6.0) - 15.0)) + 10.0)


def perlin_noise_reference(res: Tensor, grads: Tensor, frame: Tensor, height: int, width: int) -> Tensor:
    """``(B, L, H, W)`` float32 noise; ``res`` ``(B, L, 2)`` int32 ``(ry, rx)``, ``grads`` ``(B, L, G1, G1, 2)``,
    ``frame`` from :func:`perlin_frame`."""
    batch, lat = res.shape[:2]
    g1 = grads.shape[2]
    dev = grads.device
    f = frame.view(batch, lat, 4, 1, 1)
    c, s, scale_x, scale_y = f[:, :, 0], f[:, :, 1], f[:, :, 2], f[:, :, 3]
    ry = res[:, :, 0].view(batch, lat, 1, 1)
    rx = res[:, :, 1].view(batch, lat, 1, 1)
    cx, cy = (width - 1) * 0.5, (height - 1) * 0.5
    dx = torch.arange(width, dtype=torch.float32, device=dev).view(1, 1, 1, width) - cx
    dy = torch.arange(height, dtype=torch.float32, device=dev).view(1, 1, height, 1) - cy
    sx = ((c * dx) + (s * dy)) + cx
    sy = ((c * dy) - (s * dx)) + cy
    inside = (sx >= 0) & (sx <= width - 1) & (sy >= 0) & (sy <= height - 1)
    u = sx * scale_x
    v = sy * scale_y
    # The lower clamp only matters outside the frame (u < 0 there), where it keeps the gather in range.
    i = torch.minimum(u.to(torch.int32), rx - 1).clamp_min(0)
    j = torch.minimum(v.to(torch.int32), ry - 1).clamp_min(0)
    fu = u - i.to(torch.float32)
    fv = v - j.to(torch.float32)
    bl = torch.arange(batch * lat, device=dev).view(batch, lat, 1, 1)
    flat = grads.reshape(-1)
    node = ((bl * g1 + j) * g1 + i) * 2  # float offset of g[j, i].x

    def g(dj: int, di: int, comp: int) -> Tensor:
        return flat[node + ((dj * g1 + di) * 2 + comp)]

    n00 = (g(0, 0, 0) * fu) + (g(0, 0, 1) * fv)
    n01 = (g(0, 1, 0) * (fu - 1.0)) + (g(0, 1, 1) * fv)
    n10 = (g(1, 0, 0) * fu) + (g(1, 0, 1) * (fv - 1.0))
    n11 = (g(1, 1, 0) * (fu - 1.0)) + (g(1, 1, 1) * (fv - 1.0))
    tu, tv = _fade(fu), _fade(fv)
    top = n00 + (tu * (n01 - n00))
    bottom = n10 + (tu * (n11 - n10))
    noise = SQRT2 * (top + (tv * (bottom - top)))
    return torch.where(inside, noise, torch.zeros((), dtype=torch.float32, device=dev))


def row_extents(mask: Tensor) -> Tensor:
    """``(B, H, 2)`` int32 per-row ``(first x, last x + 1)`` of a ``(B, 1, H, W)`` mask, ``(W, 0)`` for an empty row."""
    m = mask[:, 0] > 0.5
    width = m.shape[-1]
    any_ = m.any(-1)
    first = torch.where(any_, m.to(torch.uint8).argmax(-1), width)
    last = torch.where(any_, width - m.flip(-1).to(torch.uint8).argmax(-1), 0)
    return torch.stack((first, last), dim=-1).to(torch.int32)


def perlin_mask_reference(
    res: Tensor,
    grads: Tensor,
    frame: Tensor,
    threshold: Tensor,
    combine: Tensor,
    foreground: Tensor | None,
    apply: Tensor,
    height: int,
    width: int,
) -> tuple[Tensor, Tensor]:
    """``(mask (B, 1, H, W) float32, row extents (B, H, 2) int32)``; ``foreground`` ``(B, H, W)`` float32 or None,
    ``apply`` ``(B,)`` bool, ``combine`` ``(B,)`` int32 (codes 1, 2 need L = 2)."""
    batch, lat = res.shape[:2]
    m = perlin_noise_reference(res, grads, frame, height, width) > threshold.view(batch, 1, 1, 1)
    mask = m[:, 0]
    if lat > 1:
        code = combine.view(batch, 1, 1)
        mask = torch.where(code == 1, mask | m[:, 1], torch.where(code == 2, mask & m[:, 1], mask))
    if foreground is not None:
        mask = mask & (foreground > 0.5)
    mask = (mask & apply.view(batch, 1, 1)).unsqueeze(1).to(torch.float32)
    return mask, row_extents(mask)


@register_impl("perlin_noise", "reference")
def _load_noise_reference():
    return perlin_noise_reference


@register_impl("perlin_mask", "reference")
def _load_mask_reference():
    return perlin_mask_reference
