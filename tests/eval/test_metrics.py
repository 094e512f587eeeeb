"""Metrics against slow, obvious implementations and hand-checked cases."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy import ndimage

from anofast.eval import metrics as M


# ------------------------------------------------------------------------------------------ slow references
def slow_auroc(s, y):
    pos = [a for a, l in zip(s, y) if l]
    neg = [a for a, l in zip(s, y) if not l]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def slow_pr(s, y):
    """(precision, recall) at each distinct threshold, highest first."""
    out = []
    for t in sorted(set(s), reverse=True):
        tp = sum(1 for a, l in zip(s, y) if a >= t and l)
        fp = sum(1 for a, l in zip(s, y) if a >= t and not l)
        out.append((tp / (tp + fp), tp / sum(y)))
    return out


def slow_ap(s, y):
    ap, prev = 0.0, 0.0
    for p, r in slow_pr(s, y):
        ap += (r - prev) * p
        prev = r
    return ap


def slow_f1max(s, y):
    return max((2 * p * r / (p + r) if p + r else 0.0) for p, r in slow_pr(s, y))


def slow_aupro(maps, masks, limit=0.3):
    """Threshold by threshold: label regions per image, overlap per region, FPR on normal pixels."""
    maps, masks = np.asarray(maps, np.float64), np.asarray(masks) > 0
    regions = []
    for i in range(len(maps)):
        lab, n = ndimage.label(masks[i], structure=np.ones((3, 3)))
        regions += [(i, lab == k) for k in range(1, n + 1)]
    normal = ~masks
    pts = [(0.0, 0.0)]
    for t in sorted(set(maps.ravel().tolist()), reverse=True):
        hit = maps >= t
        fpr = (hit & normal).sum() / normal.sum()
        pro = np.mean([(hit[i] & r).sum() / r.sum() for i, r in regions])
        pts.append((fpr, pro))
    area = 0.0
    for (f0, p0), (f1, p1) in zip(pts, pts[1:]):
        if f0 >= limit:
            break
        if f1 > limit:
            p1 = p0 + (limit - f0) / (f1 - f0) * (p1 - p0)
            f1 = limit
        area += (f1 - f0) * (p0 + p1) / 2
    return area / limit


# ------------------------------------------------------------------------------------------------ tests
@pytest.mark.parametrize("seed", range(6))
def test_image_metrics_match_slow_reference_with_ties(seed):
    g = torch.Generator().manual_seed(seed)
    n = 40
    s = torch.randint(0, 8, (n,), generator=g).float() / 7  # few distinct values: many ties
    y = torch.randint(0, 2, (n,), generator=g)
    y[0], y[1] = 0, 1
    sl, yl = s.tolist(), y.tolist()
    assert M.auroc(s, y) == pytest.approx(slow_auroc(sl, yl), abs=1e-12)
    assert M.average_precision(s, y) == pytest.approx(slow_ap(sl, yl), abs=1e-12)
    assert M.f1_max(s, y) == pytest.approx(slow_f1max(sl, yl), abs=1e-12)


def test_hand_checked_values():
    # perfect separation, reversed, and all tied
    assert M.auroc([0.1, 0.2, 0.9, 0.8], [0, 0, 1, 1]) == 1.0
    assert M.auroc([0.9, 0.8, 0.1, 0.2], [0, 0, 1, 1]) == 0.0
    assert M.auroc([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1]) == 0.5
    # AP: ranking 1,0,1 -> precision 1 at recall 1/2, 2/3 at recall 1 -> (1 + 2/3) / 2
    assert M.average_precision([3, 2, 1], [1, 0, 1]) == pytest.approx(5 / 6)
    # one tie across classes at the top: precision 1/2 at recall 1
    assert M.average_precision([1, 1], [0, 1]) == 0.5
    # F1: best at threshold 2 (tp 1, fp 0, fn 1 -> 2/3) or 1 (tp 2, fp 1 -> 0.8)
    assert M.f1_max([3, 2, 1], [1, 0, 1]) == pytest.approx(0.8)


def test_one_class_raises():
    with pytest.raises(ValueError, match="both normal"):
        M.auroc([0.1, 0.2], [0, 0])  # all normal
    with pytest.raises(ValueError, match="at least one anomalous"):
        M.average_precision([0.1, 0.2], [0, 0])
    with pytest.raises(ValueError, match="at least one anomalous"):
        M.f1_max([0.1, 0.2], [0, 0])
    assert M.average_precision([0.1, 0.2], [1, 1]) == 1.0  # all anomalous: AP is defined


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="same number"):
        M.auroc([0.1, 0.2, 0.3], [0, 1])
    with pytest.raises(ValueError, match="NaN"):
        M.auroc([float("nan"), 0.2], [0, 1])
    with pytest.raises(ValueError, match="0 or 1"):
        M.auroc([0.1, 0.2], [0, 2])
    with pytest.raises(ValueError, match="empty"):
        M.auroc([], [])
    with pytest.raises(ValueError, match="same size"):
        M.aupro(torch.zeros(2, 4, 4), torch.zeros(2, 4, 5))


@pytest.mark.parametrize("seed", range(4))
def test_aupro_matches_slow_reference(seed):
    g = torch.Generator().manual_seed(seed)
    maps = (torch.rand(3, 9, 11, generator=g) * 6).floor() / 6  # ties
    masks = torch.zeros(3, 9, 11)
    masks[0, 1:4, 2:5] = 1
    masks[0, 6:8, 8:10] = 1  # a second region in the same image
    masks[1, 4:9, 0:3] = 1
    # image 2: an empty mask (an anomalous image without outline) adds no region
    maps = maps + masks * torch.rand(3, 9, 11, generator=g) * 0.5
    for limit in (0.3, 0.05, 1.0):
        assert M.aupro(maps, masks, limit) == pytest.approx(slow_aupro(maps, masks, limit), abs=1e-12)


def test_aupro_hand_checked():
    masks = torch.zeros(1, 4, 4)
    masks[0, :2, :2] = 1
    assert M.aupro(masks * 2.0, masks) == pytest.approx(1.0)  # perfect map
    # constant map: FPR jumps 0 -> 1 with PRO 0 -> 1; the segment up to 0.3 has PRO rising to 0.3 -> area 0.045
    assert M.aupro(torch.zeros(1, 4, 4), masks) == pytest.approx(0.5 * 0.3 * 0.3 / 0.3)
    with pytest.raises(ValueError, match="at least one anomalous pixel"):
        M.aupro(torch.rand(2, 4, 4), torch.zeros(2, 4, 4))
    with pytest.raises(ValueError, match="normal pixels"):
        M.aupro(torch.rand(1, 4, 4), torch.ones(1, 4, 4))


def test_per_region_overlap():
    masks = torch.zeros(1, 5, 5)
    masks[0, 0, 0:2] = 1  # region 1: 2 pixels
    masks[0, 3:5, 3:5] = 1  # region 2: 4 pixels
    maps = torch.zeros(1, 5, 5)
    maps[0, 0, 0] = 1
    maps[0, 3:5, 3:5] = 1
    assert M.per_region_overlap(maps, masks, 0.5).tolist() == [0.5, 1.0]


def test_detection_metrics_keys():
    maps = torch.rand(4, 6, 6)
    masks = torch.zeros(4, 6, 6)
    masks[2:, 1:3, 1:3] = 1
    out = M.detection_metrics(maps.amax((1, 2)), torch.tensor([0, 0, 1, 1]), maps, masks)
    assert set(out) == {"image_auroc", "image_ap", "image_f1max", "pixel_auroc", "pixel_ap", "pixel_f1max", "aupro"}
    assert all(0.0 <= v <= 1.0 for v in out.values())
    assert out["image_auroc"] == M.auroc(maps.amax((1, 2)), torch.tensor([0, 0, 1, 1]))
    assert out["pixel_ap"] == M.average_precision(maps, masks)
    assert out["pixel_f1max"] == M.f1_max(maps.double(), masks)  # float32 and float64 scores rank alike
    assert out["aupro"] == M.aupro(maps, masks)
