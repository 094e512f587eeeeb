"""Realism (KID, Fréchet distance) and diversity of anomalies, on EfficientNet-Lite0 features of defect crops.

An anomaly is described by the crop around its mask: the mask's bounding box grown by :data:`CROP_MARGIN` of its
size on each side (at least :data:`MIN_CROP` pixels, clipped to the image), resized to :data:`CROP_SIZE`
squared and embedded with the network's 1280-d pooled head features. Real defects and synthetic anomalies go
through the same path, so the distances compare what the defects look like, not the whole image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from anofast.eval import _rand
from anofast.eval._rand import permutation
from anofast.eval.backbone import load_lite0

CROP_SIZE = 96
CROP_MARGIN = 0.25
MIN_CROP = 24
KID_SUBSET = 100
KID_SUBSETS = 20


def defect_crops(images: Tensor, masks: Tensor, size: int = CROP_SIZE) -> Tensor:
    """``(N, C, size, size)`` crops around the masks of the samples whose mask is non-empty (others dropped)."""
    crops = []
    height, width = images.shape[-2:]
    for image, mask in zip(images, masks):
        ys, xs = torch.nonzero(mask.reshape(height, width) > 0, as_tuple=True)
        if ys.numel() == 0:
            continue
        y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
        h = max(MIN_CROP, round((y1 - y0) * (1 + 2 * CROP_MARGIN)))
        w = max(MIN_CROP, round((x1 - x0) * (1 + 2 * CROP_MARGIN)))
        cy, cx = (y0 + y1) // 2, (x0 + x1) // 2
        top = min(max(cy - h // 2, 0), max(height - h, 0))
        left = min(max(cx - w // 2, 0), max(width - w, 0))
        crop = image[:, top : top + h, left : left + w].unsqueeze(0).to(torch.float32)
        crops.append(F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False, antialias=True))
    if not crops:
        return images.new_zeros((0, images.shape[1], size, size), dtype=torch.float32)
    return torch.cat(crops).clamp_(0, 1)


@torch.inference_mode()
def embed(images: Tensor, batch_size: int = 64) -> Tensor:
    """``(N, 1280)`` float64 Lite0 features of images in [0, 1]."""
    net = load_lite0(images.device)
    out = [net.embed(images[i : i + batch_size]) for i in range(0, images.shape[0], batch_size)]
    return torch.cat(out).to(torch.float64) if out else torch.zeros(0, 1280, dtype=torch.float64)


def _poly_mmd2(x: Tensor, y: Tensor) -> Tensor:
    """Unbiased MMD^2 with the cubic polynomial kernel ``(x.y / d + 1)^3`` (the KID kernel)."""
    d = x.shape[1]
    kxx = (x @ x.T / d + 1) ** 3
    kyy = (y @ y.T / d + 1) ** 3
    kxy = (x @ y.T / d + 1) ** 3
    m, n = x.shape[0], y.shape[0]
    return ((kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1)) + (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
            - 2 * kxy.mean())


def kid(x: Tensor, y: Tensor, *, subset: int = KID_SUBSET, subsets: int = KID_SUBSETS, seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance (here on Lite0 features): mean and std of the unbiased MMD^2 over random subsets.

    Subsets of ``min(subset, len(x), len(y))`` rows are drawn from the counter RNG (``Stream.EVAL``), so the
    result is a pure function of the features and ``seed``.

    Raises:
        ValueError: fewer than 2 samples on either side.
    """
    if x.shape[0] < 2 or y.shape[0] < 2:
        raise ValueError(f"KID needs at least 2 samples on each side, got {x.shape[0]} and {y.shape[0]}")
    k = min(subset, x.shape[0], y.shape[0])
    vals = torch.stack([
        _poly_mmd2(x[permutation(seed, _rand.KID_SUBSETS, x.shape[0], 2 * i)[:k]],
                   y[permutation(seed, _rand.KID_SUBSETS, y.shape[0], 2 * i + 1)[:k]])
        for i in range(subsets)
    ])
    return float(vals.mean()), float(vals.std())


def frechet_distance(x: Tensor, y: Tensor) -> float:
    """``|mu_x - mu_y|^2 + tr(S_x + S_y - 2 (S_x S_y)^(1/2))`` of two feature sets, in float64.

    With centred data ``A_x`` (n x d) and ``A_y`` (m x d), the non-zero eigenvalues of ``S_x S_y`` are the squared
    singular values of ``A_x A_y^T / sqrt((n-1)(m-1))``, so the trace of the square root is that small matrix's
    nuclear norm: exact, and O(n m d) instead of an eigen-decomposition in the feature dimension. With fewer
    samples than dimensions the distance is biased upwards: compare generators at equal sample counts.
    """
    if x.shape[0] < 2 or y.shape[0] < 2:
        raise ValueError(f"the Fréchet distance needs at least 2 samples on each side, got {x.shape[0]} and {y.shape[0]}")
    x, y = x.to(torch.float64), y.to(torch.float64)
    mx, my = x.mean(0), y.mean(0)
    ax, ay = x - mx, y - my
    n, m = x.shape[0], y.shape[0]
    trace_x = ax.pow(2).sum() / (n - 1)
    trace_y = ay.pow(2).sum() / (m - 1)
    root = torch.linalg.svdvals(ax @ ay.T).sum() / ((n - 1) * (m - 1)) ** 0.5
    return float((mx - my).pow(2).sum() + trace_x + trace_y - 2 * root)


def diversity(x: Tensor) -> float:
    """Mean pairwise cosine distance ``1 - cos`` between the rows of ``x`` (0: all the same direction).

    Raises:
        ValueError: fewer than 2 rows.
    """
    if x.shape[0] < 2:
        raise ValueError(f"diversity needs at least 2 samples, got {x.shape[0]}")
    u = F.normalize(x.to(torch.float64), dim=1)
    n = u.shape[0]
    cos = u @ u.T
    return float(1.0 - (cos.sum() - cos.diagonal().sum()) / (n * (n - 1)))
