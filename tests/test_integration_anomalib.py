"""anofast.integrations.anomalib: anomalib 2.x's PerlinAnomalyGenerator contract, and statistics against anomalib's
own class where anomalib is installed (from the repository root: .venv-peers/bin/python -m pytest this_file)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from anofast.integrations.anomalib import PerlinAnomalyGenerator, generate_perlin_noise
from anofast.testing import make_batch


def test_call_contract_single_and_batch():
    gen = PerlinAnomalyGenerator(probability=1.0)
    x = make_batch(3, 3, 40, 36)
    image, mask = gen(x[0])
    assert image.shape == (3, 40, 36) and mask.shape == (1, 40, 36)
    assert image.dtype == torch.float32 and mask.dtype == torch.float32
    images, masks = gen(x)
    assert images.shape == x.shape and masks.shape == (3, 1, 40, 36)
    assert set(masks.unique().tolist()) <= {0.0, 1.0}
    assert bool((masks.flatten(1).amax(1) == 1).all())  # probability 1: empty masks are re-drawn
    assert torch.equal(masks, (images != x).any(1, keepdim=True).float())  # exactly the changed pixels
    assert float(images.min()) >= 0 and float(images.max()) <= 1
    half, _ = gen(x.half())
    assert half.dtype == torch.float16


def test_torch_manual_seed_makes_it_repeatable():
    x = make_batch(4, 3, 32, 32)
    gen = PerlinAnomalyGenerator()
    torch.manual_seed(7)
    a = gen(x)
    b = gen(x)
    torch.manual_seed(7)
    c = gen(x)
    assert torch.equal(a[0], c[0]) and torch.equal(a[1], c[1])
    assert not torch.equal(a[0], b[0])  # consecutive calls differ
    # an explicit seed ignores torch's RNG and still varies per call
    s1, s2 = PerlinAnomalyGenerator(seed=3), PerlinAnomalyGenerator(seed=3)
    torch.manual_seed(1)
    first = s1(x)
    torch.manual_seed(2)
    assert torch.equal(first[0], s2(x)[0])
    assert not torch.equal(s1(x)[0], first[0])


def test_probability_zero_and_blend_factor():
    x = make_batch(3, 3, 24, 24)
    image, mask = PerlinAnomalyGenerator(probability=0.0)(x)
    assert torch.equal(image, x) and not mask.any()
    torch.manual_seed(0)
    image, mask = PerlinAnomalyGenerator(probability=1.0, blend_factor=1.0, anomaly_source_path=None)(x)
    assert mask.sum() > 0


def test_anomaly_source_folder(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "sub").mkdir()
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(tmp_path / "sub" / f"t{i}.png")
    gen = PerlinAnomalyGenerator(anomaly_source_path=tmp_path, probability=1.0)
    assert len(gen.anomaly_source_paths) == 3
    image, mask = gen(make_batch(2, 3, 32, 32))
    assert mask.sum() > 0


def test_generate_perlin_noise():
    torch.manual_seed(0)
    a = generate_perlin_noise(50, 70, device="cpu")
    torch.manual_seed(0)
    b = generate_perlin_noise(50, 70, device="cpu")
    assert a.shape == (50, 70) and torch.equal(a, b)
    assert float(a.abs().max()) <= 1.5 and float(a.std()) > 0.05
    fine = generate_perlin_noise(64, 64, scale=(16, 16), device="cpu")
    coarse = generate_perlin_noise(64, 64, scale=(1, 1), device="cpu")
    roughness = lambda n: (n[1:] - n[:-1]).abs().mean()  # noqa: E731
    assert roughness(fine) > 4 * roughness(coarse)


def test_does_not_import_anomalib_or_torchvision():
    code = ("import sys, anofast.integrations.anomalib as m, torch; m.PerlinAnomalyGenerator()(torch.rand(3, 16, 16)); "
            "print(sorted(k for k in sys.modules if k.split('.')[0] in ('anomalib', 'torchvision')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: PerlinAnomalyGenerator()(torch.rand(16, 16)), ValueError, "img"),
        (lambda: PerlinAnomalyGenerator()("image"), TypeError, "img"),
        (lambda: PerlinAnomalyGenerator()(torch.rand(2, 4, 8, 8)), ValueError, "channels"),
        (lambda: PerlinAnomalyGenerator()(torch.randn(2, 3, 8, 8) * 3), ValueError, r"\[0, 1\]"),
        (lambda: PerlinAnomalyGenerator(probability=2.0), ValueError, "p_anomaly"),
        (lambda: PerlinAnomalyGenerator(blend_factor=(0.9, 0.1)), ValueError, "blend_factor"),
        (lambda: PerlinAnomalyGenerator(anomaly_source_path="/nonexistent/dtd"), FileNotFoundError, "anomaly_source"),
        (lambda: PerlinAnomalyGenerator(seed=1.5), TypeError, "seed"),
        (lambda: generate_perlin_noise(0, 8), ValueError, "height"),
        (lambda: generate_perlin_noise(8, 8, scale=(64, 1)), ValueError, "scale"),
    ],
)
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_statistics_match_anomalib():
    """Same shapes and dtypes as anomalib's class; rate of empty masks and mean anomalous area within tolerance."""
    perlin = pytest.importorskip("anomalib.data.utils.generators.perlin", reason="anomalib is not installed")
    x = make_batch(48, 3, 128, 128, seed=1)
    stats = {}
    for name, cls in (("anomalib", perlin.PerlinAnomalyGenerator), ("anofast", PerlinAnomalyGenerator)):
        torch.manual_seed(0)
        image, mask = cls(probability=1.0)(x)
        image1, mask1 = cls()(x[0])
        assert image.shape == x.shape and mask.shape == (48, 1, 128, 128) and mask.dtype == torch.float32
        assert image1.shape == x[0].shape and mask1.shape == (1, 128, 128)
        assert set(mask.unique().tolist()) <= {0.0, 1.0}
        assert float(image.max()) <= 1.0
        area = mask.flatten(1).mean(1)
        torch.manual_seed(1)
        _, half = cls(probability=0.5)(x)
        stats[name] = (float(area.mean()), float((half.flatten(1).amax(1) == 0).float().mean()))
    (area_a, empty_a), (area_f, empty_f) = stats["anomalib"], stats["anofast"]
    # 48 samples: the mean area's standard error is ~11 %; the empty rate's ~0.07 (binomial, p = 0.5)
    assert 0.6 < area_f / area_a < 1.6, stats
    assert abs(empty_f - empty_a) < 0.25 and abs(empty_f - 0.5) < 0.2, stats
