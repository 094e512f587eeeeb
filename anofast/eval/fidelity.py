"""Mask fidelity of any generator's output: does the mask mark what changed, and only that?

Per sample, from the input image ``x``, the output ``y`` and the mask ``m`` (changed = any channel differs by
more than ``tol``):

- ``visible_fraction`` = |m and changed| / |m| (1: every masked pixel really changed; NaN for an empty mask);
- ``leakage`` = |changed and not m| / (H W) (0: nothing changed outside the mask);
- ``background_psnr`` = PSNR of ``y`` against ``x`` outside the mask, in dB, capped at :data:`PSNR_CAP`
  (an untouched background is reported as the cap);
- ``seam_score`` = ``E_ring / (E_ring + E_inner)`` where ``E`` is the mean gradient energy |grad (y - x)|^2 on
  the 2-pixel ring on both sides of the mask's boundary and over the mask's interior (more than 2 px inside):
  in [0, 1], 0.5 when the change is as smooth at the boundary as inside, near 1 for hard pasted edges, below
  0.5 for feathered ones (NaN when the mask is empty, has no interior, or nothing changed);
- ``foreground_ratio`` = |m and F| / |m| for a foreground mask ``F`` (NaN without one or for an empty mask);
- ``mask_area`` = |m| / (H W).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from anofast._validate import check_images, check_mask

PSNR_CAP = 100.0
RING = 2


def _dilate(m: Tensor, r: int) -> Tensor:
    return F.max_pool2d(m, 2 * r + 1, stride=1, padding=r)


def _erode(m: Tensor, r: int) -> Tensor:
    return 1.0 - _dilate(1.0 - m, r)


def mask_fidelity(
    original: Tensor, synthetic: Tensor, mask: Tensor, *, foreground: Tensor | None = None, tol: float = 0.0
) -> dict[str, Tensor]:
    """Per-sample fidelity numbers (see the module docstring): a dict of ``(B,)`` float64 tensors.

    Args:
        original: ``(B, C, H, W)`` input images, float in [0, 1] or uint8.
        synthetic: the generator's output, same shape.
        mask: ``(B, 1, H, W)`` (or ``(B, H, W)``) mask returned with it.
        foreground: optional ``(B, 1, H, W)`` object mask.
        tol: a pixel counts as changed when some channel differs by more than ``tol``.
    """
    x = check_images(original, "original")
    y = check_images(synthetic, "synthetic")
    if y.shape != x.shape:
        raise ValueError(f"synthetic must have the shape of original {tuple(x.shape)}, got {tuple(y.shape)}")
    m = check_mask(mask, "mask", x).to(torch.float64)
    d = (y - x).to(torch.float64)
    changed = (d.abs() > tol).any(1, keepdim=True).to(torch.float64)
    hw = x.shape[2] * x.shape[3]
    area = m.sum((1, 2, 3))
    nan = torch.full_like(area, math.nan)
    out: dict[str, Tensor] = {"mask_area": area / hw}
    out["visible_fraction"] = torch.where(area > 0, (m * changed).sum((1, 2, 3)) / area.clamp_min(1), nan)
    out["leakage"] = ((1 - m) * changed).sum((1, 2, 3)) / hw
    background = (1 - m).sum((1, 2, 3))
    mse = ((1 - m) * d.pow(2)).sum((1, 2, 3)) / (background * x.shape[1]).clamp_min(1)
    psnr = 10 * torch.log10(1.0 / mse.clamp_min(10 ** (-PSNR_CAP / 10)))
    out["background_psnr"] = psnr.clamp(max=PSNR_CAP)
    # gradient energy of the change (forward differences, replicate edge), channel mean
    gx = F.pad(d[..., :, 1:] - d[..., :, :-1], (0, 1))
    gy = F.pad(d[..., 1:, :] - d[..., :-1, :], (0, 0, 0, 1))
    energy = (gx.pow(2) + gy.pow(2)).mean(1, keepdim=True)
    mf = m.to(torch.float32)
    ring = (_dilate(mf, RING) - _erode(mf, RING)).to(torch.float64)
    inner = _erode(mf, RING + 1).to(torch.float64)
    ring_mean = (energy * ring).sum((1, 2, 3)) / ring.sum((1, 2, 3)).clamp_min(1)
    inner_n = inner.sum((1, 2, 3))
    inner_mean = (energy * inner).sum((1, 2, 3)) / inner_n.clamp_min(1)
    total = ring_mean + inner_mean
    out["seam_score"] = torch.where((inner_n > 0) & (total > 0), ring_mean / total.clamp_min(1e-300), nan)
    if foreground is None:
        out["foreground_ratio"] = nan.clone()
    else:
        f = check_mask(foreground, "foreground", x).to(torch.float64)
        out["foreground_ratio"] = torch.where(area > 0, (m * f).sum((1, 2, 3)) / area.clamp_min(1), nan)
    return out


AREA_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def summarize(per_sample: dict[str, Tensor]) -> dict[str, float | list[float] | None]:
    """Means over samples with a non-empty mask (NaNs skipped), plus the mask-area quantiles and the empty share.

    ``mask_area_quantiles`` lists the area at :data:`AREA_QUANTILES` of the non-empty masks.
    """
    area = per_sample["mask_area"]
    nonempty = area > 0
    out: dict[str, float | list[float] | None] = {"empty_mask_fraction": float((~nonempty).to(torch.float64).mean())}
    for key, v in per_sample.items():
        v = v[nonempty]
        v = v[~torch.isnan(v)]
        out[key] = float(v.mean()) if v.numel() else None
    a = area[nonempty]
    q = torch.tensor(AREA_QUANTILES, dtype=torch.float64)
    out["mask_area_quantiles"] = torch.quantile(a, q).tolist() if a.numel() else None
    return out
