"""FeatureNoise (SimpleNet / SuperSimpleNet / GLASS presets), GLASS's gradient ascent and PBAS's push."""

from __future__ import annotations

import pytest
import torch

import anofast
from anofast import sample_seeds
from anofast.synth.feature import (
    FeatureBatch,
    FeatureNoise,
    glass_ascent,
    glass_radius,
    pbas_push,
    project_to_band,
    update_pbas_centers,
)
from anofast.testing import backend_params


def _features(b: int = 3, c: int = 5, h: int = 16, w: int = 12, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, c, h, w, generator=torch.Generator().manual_seed(seed))


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.int32)


def _equal(a: anofast.synth.feature.FeatureBatch, b: anofast.synth.feature.FeatureBatch) -> bool:
    return (torch.equal(_bits(a.features), _bits(b.features)) and torch.equal(a.mask, b.mask)
            and torch.equal(a.label, b.label))


def test_lazy_export_and_presets():
    assert anofast.FeatureNoise is FeatureNoise
    s, ssn, g = FeatureNoise.simplenet(), FeatureNoise.supersimplenet(), FeatureNoise.glass()
    assert (s.std, s.perlin, s.copies) == (0.015, False, 1)
    assert (g.std, g.perlin, g.copies) == (0.015, False, 1)
    assert (ssn.std, ssn.perlin, ssn.perlin_threshold, ssn.p_empty, ssn.copies, ssn.overlap) == (
        0.015, True, 0.2, 0.5, 2, False)  # fmt: skip
    assert FeatureNoise.supersimplenet(perlin_threshold=0.6).perlin_threshold == 0.6
    assert "perlin_threshold" in repr(ssn)


def test_simplenet_noise_everywhere():
    f = _features()
    out = FeatureNoise.simplenet()(f, seed=1)
    assert isinstance(out, FeatureBatch) and out.features.shape == f.shape
    assert out.mask.shape == (3, 1, 16, 12) and out.mask.all() and out.label.tolist() == [1, 1, 1]
    assert abs((out.features - f).std().item() - 0.015) < 1e-3


def test_supersimplenet_duplicates_masks_and_labels():
    f = _features(4, 6, 32, 32)
    out = FeatureNoise.supersimplenet()(f, seed=3)
    assert out.features.shape == (8, 6, 32, 32) and out.mask.shape == (8, 1, 32, 32)
    src = torch.cat((f, f))
    changed = (_bits(out.features) != _bits(src)).any(dim=1, keepdim=True).float()
    assert torch.equal(out.mask, changed)  # the mask is exactly the changed feature pixels
    assert torch.equal(out.label, out.mask.flatten(1).amax(1).long())
    normal = out.label == 0
    assert torch.equal(out.features[normal], src[normal])  # a label-0 sample is bit-identical to its input
    assert out.params["copy"].tolist() == [0] * 4 + [1] * 4
    assert torch.equal(out.params["applied"], out.label.bool())


def test_supersimplenet_mask_statistics_match_methods():
    # METHODS.md section 0.1 (SuperSimpleNet at 64x64, not rotated): tau 0.2 -> 25.7 % mean coverage;
    # tau 0.6 -> 2.5 %, 9 % empty. Half of the copies are emptied by the coin.
    zeros = torch.zeros(500, 1, 64, 64)
    for thr, mean_cov in ((0.2, 0.257), (0.6, 0.025)):
        gen = FeatureNoise.supersimplenet(perlin_threshold=thr, p_empty=0.0, copies=1)
        cov = gen(zeros, seed=0).mask.mean(dim=(1, 2, 3))
        assert abs(cov.mean().item() - mean_cov) < 0.1 * mean_cov
    out = FeatureNoise.supersimplenet()(zeros[:200], seed=1)
    assert 0.4 < out.params["applied"].float().mean().item() < 0.6


@pytest.mark.parametrize("backend", backend_params("feature_noise"))
@pytest.mark.parametrize("preset", ["simplenet", "supersimplenet"])
def test_same_anomaly_on_every_backend(backend, preset):
    name, device = backend
    f = _features(3, 4, 9, 13)
    expected = getattr(FeatureNoise, preset)(backend="reference")(f, seed=5)
    got = getattr(FeatureNoise, preset)(backend=name)(f.to(device), seed=5)
    assert _equal(FeatureBatch(*(x.cpu() for x in got[:3]), got.params), expected)


@pytest.mark.parametrize("preset", ["simplenet", "supersimplenet"])
def test_thread_count_and_batch_invariance(preset):
    gen = getattr(FeatureNoise, preset)()
    f = _features(4, 6, 20, 18)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = gen(f, seed=9)
        torch.set_num_threads(2)
        two = gen(f, seed=9)
    finally:
        torch.set_num_threads(threads)
    assert _equal(one, two)
    for i in range(4):  # sample i alone, with its per-sample seed, gives the same copies
        alone = gen(f[i : i + 1], seed=sample_seeds(9, 1, offset=i))
        rows = [i + k * 4 for k in range(gen.copies)]
        assert torch.equal(_bits(alone.features), _bits(one.features[rows]))
        assert torch.equal(alone.mask, one.mask[rows]) and torch.equal(alone.label, one.label[rows])
    assert not torch.equal(gen(f, seed=10).features, one.features)


def test_sample_params_apply_replay():
    gen = FeatureNoise.supersimplenet()
    f = _features()
    params = gen.sample_params(3, seed=4)
    assert len(params) == 6
    assert _equal(gen.apply(f, params), gen(f, seed=4))


def test_real_mask_overlap_and_foreground():
    f = _features(2, 3, 24, 24)
    real = torch.zeros(2, 1, 24, 24)
    real[:, :, :12] = 1
    gen = FeatureNoise.supersimplenet(p_empty=0.0, perlin_threshold=-1.0)  # Perlin mask = everything
    out = gen(f, seed=0, mask=real)
    src = torch.cat((f, f))
    changed = (_bits(out.features) != _bits(src)).any(dim=1, keepdim=True)
    assert not changed[:, :, :12].any() and changed[:, :, 12:].all()  # no noise inside real anomalies
    assert out.mask.all() and out.label.tolist() == [1] * 4  # real anomalies kept in the mask
    over = FeatureNoise.supersimplenet(p_empty=0.0, perlin_threshold=-1.0, overlap=True)(f, seed=0, mask=real)
    assert (_bits(over.features) != _bits(src)).any(dim=1).all()
    fg = torch.zeros(2, 1, 24, 24, dtype=torch.bool)
    fg[:, :, :, 5:9] = True
    out = FeatureNoise.simplenet()(f, seed=0, foreground=fg)
    assert torch.equal(out.mask.bool(), fg)


def test_inplace_writes_into_the_features():
    f = _features(3, 4, 10, 10)
    expected = FeatureNoise.simplenet()(f, seed=2)
    x = f.clone()
    out = FeatureNoise.simplenet()(x, seed=2, inplace=True)
    assert out.features.data_ptr() == x.data_ptr() and torch.equal(_bits(x), _bits(expected.features))
    with pytest.raises(ValueError, match="inplace"):
        FeatureNoise.supersimplenet()(f, seed=2, inplace=True)


def test_duplicated_batch_in_one_buffer_and_gradients():
    gen = FeatureNoise.supersimplenet(p_empty=0.0)
    f = _features(3, 4, 12, 12)
    expected = gen(f, seed=6)
    buf = torch.empty(6, 4, 12, 12)
    buf[:3] = f  # the backbone writes into the first half
    got = gen(buf[:3], seed=6, out=buf)
    assert got.features.data_ptr() == buf.data_ptr() and _equal(got, expected)
    x = f.clone().requires_grad_(True)  # the adaptor is trained through the noisy features
    gen(x, seed=6).features.sum().backward()
    assert torch.equal(x.grad, torch.full_like(f, 2.0))


def test_rejects_bad_inputs():
    gen = FeatureNoise.supersimplenet()
    f = _features()
    with pytest.raises(TypeError, match="features"):
        gen(f.half(), seed=0)
    with pytest.raises(TypeError, match="features"):
        gen(f.numpy(), seed=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="features"):
        gen(f[0], seed=0)
    with pytest.raises(ValueError, match="empty batch"):
        gen(f[:0], seed=0)
    with pytest.raises(ValueError, match="mask"):
        gen(f, seed=0, mask=torch.zeros(3, 1, 4, 4))
    with pytest.raises(ValueError, match="foreground"):
        gen(f, seed=0, foreground=torch.full((3, 1, 16, 12), float("nan")))
    with pytest.raises(TypeError, match="seed"):
        gen(f, seed=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="params"):
        gen.apply(f, gen.sample_params(2, seed=0))
    with pytest.raises(ValueError, match="std"):
        FeatureNoise(std=-1.0)
    with pytest.raises(ValueError, match="p_empty"):
        FeatureNoise(p_empty=1.5)
    with pytest.raises(ValueError, match="copies"):
        FeatureNoise(copies=0)
    with pytest.raises(ValueError, match="res_exp_range"):
        FeatureNoise(res_exp_range=(0, 7))


# --- GLASS gradient ascent ----------------------------------------------------------------------------------


def _discriminator(d: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(d, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1), torch.nn.Sigmoid())


def test_glass_ascent_makes_fakes_look_more_normal_within_the_band():
    true = _features(2, 8, 6, 6)
    noisy = FeatureNoise.glass()(true, seed=0).features
    disc = _discriminator(8)
    rows = lambda x: x.permute(0, 2, 3, 1).reshape(-1, 8)  # noqa: E731
    before = disc(rows(noisy)).mean().item()
    out = glass_ascent(noisy, true, disc, steps=20, step_size=0.05)
    assert out.shape == noisy.shape and not out.requires_grad
    assert disc(rows(out)).mean().item() < before  # ascent on BCE(., 1): scores move towards "normal"
    dist = torch.linalg.vector_norm(rows(out) - rows(true), dim=1)
    assert dist.min() >= 0.5 - 1e-5 and dist.max() <= 1.0 + 1e-5  # manifold band [0.5, 1.0] after the last step
    assert all(p.grad is None for p in disc.parameters())  # only the features get gradients


def test_glass_ascent_hypersphere_band_and_steps():
    true = _features(1, 4, 5, 5, seed=1).permute(0, 2, 3, 1).reshape(-1, 4)
    center = true.mean(0, keepdim=True)
    noisy = true + 0.015 * torch.randn(true.shape, generator=torch.Generator().manual_seed(2))
    r = glass_radius(true, center.expand_as(true))
    out = glass_ascent(noisy, true, _discriminator(4), mode="hypersphere", center=center)
    dist = torch.linalg.vector_norm(out - center, dim=1)
    assert dist.min() >= r - 1e-5 and dist.max() <= 2 * r + 1e-5
    # no projection step reached: only the normalised gradient steps (each exactly step_size long)
    three = glass_ascent(noisy, true, _discriminator(4), steps=3, step_size=0.01)
    assert torch.linalg.vector_norm(three - noisy, dim=1).max() <= 0.03 + 1e-6
    assert torch.equal(glass_ascent(noisy, true, _discriminator(4), steps=0), noisy)
    with pytest.raises(ValueError, match="center"):
        glass_ascent(noisy, true, _discriminator(4), mode="hypersphere")
    with pytest.raises(ValueError, match="true"):
        glass_ascent(noisy, true[:3], _discriminator(4))
    with pytest.raises(TypeError, match="discriminator"):
        glass_ascent(noisy, true, None)  # type: ignore[arg-type]


def test_project_to_band():
    anchor = torch.zeros(3, 2)
    x = torch.tensor([[0.1, 0.0], [0.0, 3.0], [0.6, 0.8]])
    out = project_to_band(x, anchor, 0.5, 2.0)
    assert torch.allclose(torch.linalg.vector_norm(out, dim=1), torch.tensor([0.5, 2.0, 1.0]))
    assert torch.allclose(out[2], x[2]) and out[0, 1] == 0 and out[1, 0] == 0  # direction kept


# --- PBAS ---------------------------------------------------------------------------------------------------


def test_pbas_push_moves_away_from_the_nearest_centre_by_k_mean_radius():
    g = torch.Generator().manual_seed(3)
    centers = torch.tensor([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0]])
    feats = centers[torch.tensor([0, 0, 1, 1, 1])] + 0.5 * torch.randn(5, 3, generator=g)
    fake = pbas_push(feats, centers, k=0.25)
    d = feats - centers[torch.tensor([0, 0, 1, 1, 1])]
    step = fake - feats
    r = torch.linalg.vector_norm(d, dim=1).mean()
    assert torch.allclose(torch.linalg.vector_norm(step, dim=1), torch.full((5,), 0.25 * r.item()), atol=1e-6)
    cos = torch.nn.functional.cosine_similarity(step, d, dim=1)
    assert torch.allclose(cos, torch.ones(5), atol=1e-5)  # radially outwards from the centre
    assert (torch.linalg.vector_norm(fake - centers[torch.tensor([0, 0, 1, 1, 1])], dim=1)
            > torch.linalg.vector_norm(d, dim=1)).all()  # fmt: skip
    maps = feats.T.reshape(1, 3, 1, 5)  # (B, D, h, w) in, same shape out
    assert torch.allclose(pbas_push(maps, centers).reshape(3, 5).T, fake)


def test_update_pbas_centers():
    first = torch.randn(4, 6, 3, generator=torch.Generator().manual_seed(0))
    c = update_pbas_centers(None, first)
    assert torch.allclose(c, first.mean(0))
    c2 = update_pbas_centers(c, first)  # the same batch again: every mean matches its own centre
    assert torch.allclose(c2, c)
    shifted = update_pbas_centers(c, first + 1.0)
    assert not torch.allclose(shifted, c)
    with pytest.raises(ValueError, match="features"):
        update_pbas_centers(c, first[0])
