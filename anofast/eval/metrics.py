"""Detection and segmentation metrics, vectorised (one sort per curve), exact under ties.

Conventions (the same as scikit-learn / anomalib):

- Scores are "higher = more anomalous"; labels are 0 (normal) / 1 (anomalous).
- A curve has one point per *distinct* score, so tied scores move together (AUROC then equals the
  Mann-Whitney statistic with ties counted 1/2).
- AUROC needs both classes, AP and F1-max need at least one positive, AUPRO needs at least one
  anomalous pixel and one normal pixel: otherwise they raise ``ValueError`` (a benchmark must not silently
  report a number that means nothing). Image metrics take one score per image, pixel metrics the flattened
  maps; empty ground-truth masks (an anomalous image whose defect is not outlined) add no region to AUPRO.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

FPR_LIMIT = 0.3


def _flat(scores: object, labels: object) -> tuple[Tensor, Tensor]:
    s = torch.as_tensor(scores).detach().reshape(-1).to("cpu")
    if s.dtype not in (torch.float32, torch.float64):  # float32 sorts faster and orders exactly like float64
        s = s.to(torch.float64)
    y = torch.as_tensor(labels).detach().reshape(-1).to("cpu")
    if s.numel() != y.numel():
        raise ValueError(f"scores and labels must have the same number of elements, got {s.numel()} and {y.numel()}")
    if s.numel() == 0:
        raise ValueError("scores is empty")
    if not bool(torch.isfinite(s).all()):
        raise ValueError("scores contains NaN or infinite values")
    if y.dtype == torch.bool or y.is_floating_point():
        y = y.to(torch.float64)
    if not bool(((y == 0) | (y == 1)).all()):
        raise ValueError("labels must be 0 or 1")
    return s, y.to(torch.bool)


def _counts(scores: object, labels: object) -> tuple[Tensor, Tensor, Tensor]:
    """Cumulative (true positives, false positives) at each distinct threshold, highest first, and the thresholds."""
    s, y = _flat(scores, labels)
    s, order = torch.sort(s, descending=True, stable=True)
    y = y[order].to(torch.float64)
    last = torch.ones_like(s, dtype=torch.bool)  # the last element of each run of equal scores
    last[:-1] = s[1:] != s[:-1]
    tp = torch.cumsum(y, 0)[last]
    fp = torch.cumsum(1.0 - y, 0)[last]
    return tp, fp, s[last]


def _roc(tp: Tensor, fp: Tensor) -> tuple[Tensor, Tensor]:
    if tp[-1] == 0 or fp[-1] == 0:
        raise ValueError("ROC needs both normal (0) and anomalous (1) labels")
    zero = torch.zeros(1, dtype=torch.float64)
    return torch.cat([zero, fp / fp[-1]]), torch.cat([zero, tp / tp[-1]])


def _pr(tp: Tensor, fp: Tensor) -> tuple[Tensor, Tensor]:
    if tp[-1] == 0:
        raise ValueError("precision/recall need at least one anomalous (1) label")
    return tp / (tp + fp), tp / tp[-1]


def _ap(precision: Tensor, recall: Tensor) -> float:
    steps = torch.diff(recall, prepend=torch.zeros(1, dtype=torch.float64))
    return float((steps * precision).sum())


def _f1max(precision: Tensor, recall: Tensor) -> float:
    return float((2 * precision * recall / (precision + recall).clamp_min(1e-300)).max())


def roc_curve(scores: object, labels: object) -> tuple[Tensor, Tensor, Tensor]:
    """``(fpr, tpr, thresholds)``, starting at (0, 0); one point per distinct score.

    Raises:
        ValueError: only one class is present (the curve is undefined).
    """
    tp, fp, thr = _counts(scores, labels)
    fpr, tpr = _roc(tp, fp)
    return fpr, tpr, torch.cat([torch.full((1,), float("inf"), dtype=thr.dtype), thr])


def auroc(scores: object, labels: object) -> float:
    """Area under the ROC curve (trapezoids; ties count 1/2)."""
    fpr, tpr, _ = roc_curve(scores, labels)
    return float(torch.trapezoid(tpr, fpr))


def precision_recall_curve(scores: object, labels: object) -> tuple[Tensor, Tensor, Tensor]:
    """``(precision, recall, thresholds)`` with thresholds decreasing (recall increasing).

    Raises:
        ValueError: there is no positive label.
    """
    tp, fp, thr = _counts(scores, labels)
    return (*_pr(tp, fp), thr)


def average_precision(scores: object, labels: object) -> float:
    """AP = sum over distinct thresholds of (recall step) x precision (scikit-learn's definition, no interpolation)."""
    return _ap(*precision_recall_curve(scores, labels)[:2])


def f1_max(scores: object, labels: object) -> float:
    """The best F1 score over all thresholds."""
    return _f1max(*precision_recall_curve(scores, labels)[:2])


def label_regions(masks: Tensor) -> tuple[Tensor, int]:
    """Connected components (8-connectivity) of ``(N, H, W)`` binary masks, numbered across all images.

    Returns:
        ``(N, H, W)`` int64 labels (0 = background, regions 1..count) and the region count.
    """
    from scipy import ndimage

    m = np.asarray(torch.as_tensor(masks).detach().to("cpu") > 0)
    out = np.zeros(m.shape, dtype=np.int64)
    count = 0
    for i in range(m.shape[0]):
        lab, n = ndimage.label(m[i], structure=np.ones((3, 3), dtype=bool))
        out[i] = np.where(lab > 0, lab + count, 0)
        count += n
    return torch.from_numpy(out), count


def _maps_and_masks(maps: object, masks: object) -> tuple[Tensor, Tensor]:
    a = torch.as_tensor(maps).detach().to("cpu")
    if a.dtype not in (torch.float32, torch.float64):
        a = a.to(torch.float64)
    m = torch.as_tensor(masks).detach().to("cpu")
    if a.dim() == 4 and a.shape[1] == 1:
        a = a[:, 0]
    if m.dim() == 4 and m.shape[1] == 1:
        m = m[:, 0]
    if a.dim() != 3 or a.shape != m.shape:
        raise ValueError(
            f"anomaly maps and masks must both be (N, H, W) or (N, 1, H, W) of the same size, "
            f"got {tuple(a.shape)} and {tuple(m.shape)}"
        )
    if not bool(torch.isfinite(a).all()):
        raise ValueError("anomaly maps contain NaN or infinite values")
    return a, m > 0


def pro_curve(maps: object, masks: object, fpr_limit: float = FPR_LIMIT) -> tuple[Tensor, Tensor]:
    """Per-region overlap (PRO) against pixel FPR, one point per distinct score, cut at ``fpr_limit``.

    PRO at a threshold is the mean over ground-truth regions (connected components, 8-connectivity) of the
    fraction of the region's pixels scored at or above it; FPR is the fraction of normal pixels (outside every
    mask, in all images) at or above it. The last point is interpolated linearly to exactly ``fpr_limit``.

    Raises:
        ValueError: no region, or no normal pixel.
    """
    a, m = _maps_and_masks(maps, masks)
    regions, count = label_regions(m)
    if count == 0:
        raise ValueError("AUPRO needs at least one anomalous pixel in the masks")
    regions = regions.reshape(-1)
    sizes = torch.bincount(regions, minlength=count + 1).to(torch.float64)
    n_normal = sizes[0]
    if n_normal == 0:
        raise ValueError("AUPRO needs normal pixels (every pixel is anomalous)")
    # each pixel's contribution: to FPR if normal, to the mean PRO (1 / (count * region size)) otherwise
    weight = torch.where(regions > 0, 1.0 / (count * sizes[regions]), torch.zeros((), dtype=torch.float64))
    normal = (regions == 0).to(torch.float64) / n_normal
    s, order = torch.sort(a.reshape(-1), descending=True, stable=True)
    last = torch.ones_like(s, dtype=torch.bool)
    last[:-1] = s[1:] != s[:-1]
    fpr = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(normal[order], 0)[last]])
    pro = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(weight[order], 0)[last]])
    k = int(torch.searchsorted(fpr, torch.tensor([fpr_limit], dtype=torch.float64), right=False)[0])
    if k >= fpr.numel():  # unreachable: the last point has FPR 1
        return fpr, pro
    if fpr[k] == fpr_limit:
        return fpr[: k + 1], pro[: k + 1]
    t = (fpr_limit - fpr[k - 1]) / (fpr[k] - fpr[k - 1])
    end_pro = pro[k - 1] + t * (pro[k] - pro[k - 1])
    return (torch.cat([fpr[:k], torch.tensor([fpr_limit], dtype=torch.float64)]),
            torch.cat([pro[:k], end_pro.reshape(1)]))


def aupro(maps: object, masks: object, fpr_limit: float = FPR_LIMIT) -> float:
    """Area under the PRO curve up to ``fpr_limit`` divided by ``fpr_limit`` (1 = perfect), see :func:`pro_curve`."""
    if not 0.0 < fpr_limit <= 1.0:
        raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit!r}")
    fpr, pro = pro_curve(maps, masks, fpr_limit)
    return float(torch.trapezoid(pro, fpr)) / fpr_limit


def per_region_overlap(maps: object, masks: object, threshold: float) -> Tensor:
    """Overlap of each ground-truth region with ``maps >= threshold``: a ``(regions,)`` float64 tensor."""
    a, m = _maps_and_masks(maps, masks)
    regions, count = label_regions(m)
    r = regions.reshape(-1)
    hit = (a.reshape(-1) >= threshold).to(torch.float64)
    sizes = torch.bincount(r, minlength=count + 1).to(torch.float64)
    return (torch.bincount(r, weights=hit, minlength=count + 1) / sizes.clamp_min(1))[1:]


def detection_metrics(image_scores: object, image_labels: object, maps: object, masks: object) -> dict[str, float]:
    """Every metric of the protocol: image AUROC / AP / F1-max, pixel AUROC / AP / F1-max, AUPRO@0.3.

    Equal to calling the functions one by one; each score set is sorted once for its three curve metrics.
    """
    a, m = _maps_and_masks(maps, masks)
    out = {}
    for prefix, scores, labels in (("image", image_scores, image_labels), ("pixel", a, m)):
        tp, fp, _ = _counts(scores, labels)
        fpr, tpr = _roc(tp, fp)
        precision, recall = _pr(tp, fp)
        out[f"{prefix}_auroc"] = float(torch.trapezoid(tpr, fpr))
        out[f"{prefix}_ap"] = _ap(precision, recall)
        out[f"{prefix}_f1max"] = _f1max(precision, recall)
    out["aupro"] = aupro(a, m)
    return out
