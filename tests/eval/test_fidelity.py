"""Mask fidelity on hand-made outputs and on a real anofast generator (whose mask contract makes it perfect)."""

from __future__ import annotations

import math

import pytest
import torch

from anofast.eval.fidelity import PSNR_CAP, mask_fidelity, summarize
from anofast.synth.perlin import PerlinAnomaly


def _images(b=2, h=24, w=20):
    g = torch.Generator().manual_seed(0)
    return torch.rand(b, 3, h, w, generator=g) * 0.5 + 0.25


def test_exact_mask():
    x = _images()
    m = torch.zeros(2, 1, 24, 20)
    m[0, :, 4:16, 5:15] = 1  # sample 1: empty mask, unchanged
    y = torch.where(m > 0, x * 0.5, x)
    f = mask_fidelity(x, y, m)
    assert f["visible_fraction"][0] == 1.0 and math.isnan(f["visible_fraction"][1])
    assert f["leakage"].tolist() == [0.0, 0.0]
    assert f["background_psnr"].tolist() == [PSNR_CAP, PSNR_CAP]
    assert f["mask_area"][0] == pytest.approx(12 * 10 / (24 * 20))
    assert math.isnan(f["foreground_ratio"][0])
    s = summarize(f)
    assert s["empty_mask_fraction"] == 0.5 and s["visible_fraction"] == 1.0
    assert s["mask_area_quantiles"] == pytest.approx([0.25] * 5)


def test_partial_visibility_leakage_psnr_foreground():
    x = _images(1)
    m = torch.zeros(1, 1, 24, 20)
    m[..., 0:10, 0:10] = 1
    y = x.clone()
    y[..., 0:5, 0:10] = 0.0  # half of the mask changes
    y[..., 20, 0:4] += 0.1  # 4 changed pixels outside the mask
    fg = torch.zeros(1, 1, 24, 20)
    fg[..., :, 0:5] = 1
    f = mask_fidelity(x, y, m, foreground=fg)
    assert f["visible_fraction"][0] == pytest.approx(0.5)
    assert f["leakage"][0] == pytest.approx(4 / (24 * 20))
    mse = 4 * 3 * 0.01 / ((24 * 20 - 100) * 3)
    assert f["background_psnr"][0] == pytest.approx(10 * math.log10(1 / mse), rel=1e-4)
    assert f["foreground_ratio"][0] == pytest.approx(0.5)
    # a tolerance above the outside change hides the leak
    assert mask_fidelity(x, y, m, tol=0.2)["leakage"][0] == 0.0


def test_seam_score_hard_vs_soft_edges():
    x = torch.full((2, 1, 40, 40), 0.5)
    m = torch.zeros(2, 1, 40, 40)
    m[..., 8:32, 8:32] = 1
    yy, xx = torch.meshgrid(torch.arange(40.0), torch.arange(40.0), indexing="ij")
    texture = 0.1 * torch.sin(xx * 1.3) * torch.cos(yy * 0.9)  # interior detail
    hard = x[0] + m[0] * (0.4 + texture)  # pasted patch: a step at the boundary
    d = torch.minimum(torch.minimum(yy - 7, 32 - yy), torch.minimum(xx - 7, 32 - xx)).clamp(0, 8) / 8
    soft = x[0] + m[0] * (d * 0.4 + texture * d)  # feathered edge
    f = mask_fidelity(x, torch.stack([hard, soft]).clamp(0, 1), m)
    assert f["seam_score"][0] > 0.8 and f["seam_score"][1] < 0.5  # in [0, 1]: 0.5 = as smooth as inside
    unchanged = mask_fidelity(x, x, m)["seam_score"]
    assert torch.isnan(unchanged).all()  # nothing changed: undefined


def test_perlin_generator_fidelity():
    x = _images(4, 32, 32)
    out = PerlinAnomaly.draem(p_anomaly=1.0, empty_mask="retry")(x, seed=3)
    s = summarize(mask_fidelity(x, out.image, out.mask))
    assert s["visible_fraction"] == 1.0 and s["leakage"] == 0.0 and s["background_psnr"] == PSNR_CAP


def test_bad_inputs():
    x = _images()
    with pytest.raises(ValueError, match="synthetic must have the shape"):
        mask_fidelity(x, x[:, :, :-1], torch.zeros(2, 1, 24, 20))
    with pytest.raises(ValueError, match="mask must have shape"):
        mask_fidelity(x, x, torch.zeros(2, 1, 24, 21))
    with pytest.raises(ValueError, match="NaN"):
        mask_fidelity(x, x * float("nan"), torch.zeros(2, 1, 24, 20))
