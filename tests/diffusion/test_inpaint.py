"""Samplers and mask-guided inpainting: closed forms, exactness of the known region and mask, determinism, errors."""

from __future__ import annotations

import math

import pytest
import torch

import anofast
from anofast import sample_seeds
from anofast.diffusion import NoiseSchedule, ddim_invert, inpaint, plan, sample, timesteps
from anofast.diffusion.samplers import aias
from anofast.reference.diffusion_step import C0, CP, CX, CZ
from anofast.testing import backend_params, make_batch

SCHED = NoiseSchedule.linear(num_train_steps=1000)
SAMPLERS = ("ddim", "dpmpp2m", "fast")


def _case(batch=2, channels=3, size=(12, 14), seed=0):
    images = make_batch(batch, channels, *size, seed=seed)
    g = torch.Generator().manual_seed(seed)
    masks = torch.zeros(batch, 1, *size)
    masks[:, :, 2:9, 3:11] = 1.0
    masks[-1] *= (torch.rand(1, *size, generator=g) > 0.3).float()
    return images, masks


def oracle(target: torch.Tensor, prediction: str = "eps"):
    """A model that knows the clean image: it predicts the true noise (or v) of any x_t."""
    abar = SCHED.alphas_cumprod.to(torch.float32)

    def model(x, t, cond):
        a, s = abar[t].sqrt().view(-1, 1, 1, 1), (1 - abar[t]).sqrt().view(-1, 1, 1, 1)
        x0 = target.repeat(x.shape[0] // target.shape[0], 1, 1, 1)
        eps = (x - a * x0) / s
        return eps if prediction == "eps" else a * eps - s * x0

    return model


def gaussian_model(mean: float, std: float):
    """The exact eps-predictor for data x0 ~ N(mean, std^2) per element."""
    abar = SCHED.alphas_cumprod

    def model(x, t, cond):
        ab = abar[t].view(-1, 1, 1, 1)
        var = ab * std**2 + 1 - ab
        return ((1 - ab).sqrt() * (x.double() - ab.sqrt() * mean) / var).float()

    return model


def test_schedule_api():
    sched = anofast.diffusion.NoiseSchedule.linear(num_train_steps=1000)
    ab = sched.alphas_cumprod
    assert ab.shape == (1000,) and bool((ab[1:] < ab[:-1]).all()) and 0 < float(ab[-1]) < float(ab[0]) < 1
    assert NoiseSchedule.cosine(100).alphas_cumprod.shape == (100,)
    assert NoiseSchedule.scaled_linear().betas[0] == pytest.approx(0.00085)
    with pytest.raises(ValueError, match="num_train_steps"):
        NoiseSchedule.linear(num_train_steps=1)


@pytest.mark.parametrize("prediction", ["eps", "v"])
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_oracle_model_recovers_the_clean_image(sampler, prediction):
    images, masks = _case()
    target = make_batch(2, 3, 12, 14, seed=9) * 2 - 1  # what the model believes is inside the mask
    out = inpaint(oracle(target, prediction), images, masks, schedule=SCHED, steps=10, sampler=sampler, seed=0,
                  prediction=prediction)  # fmt: skip
    inside = masks.expand_as(images) > 0.5
    torch.testing.assert_close(out.image[inside], ((target + 1) / 2)[inside], rtol=0, atol=2e-6)
    assert torch.equal(out.image[~inside], images[~inside])  # known region: bit for bit


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_known_region_exact_and_mask_is_the_changed_pixels(sampler):
    images, masks = _case(3, 3, (15, 17))
    images[0, :, 4:6, 4:6] = 1.0  # saturated pixels: a clamp to 1 leaves them unchanged, so the mask drops them
    model = gaussian_model(1.0, 0.5)
    out = inpaint(model, images, masks, schedule=SCHED, steps=6, sampler=sampler, seed=1, eta=0.5, dilate=1)
    changed = (out.image != images).any(1, keepdim=True)
    assert torch.equal(out.mask, changed.float())
    assert bool((out.mask <= masks).all())
    assert out.mask.sum() > 0.8 * masks.sum()
    outside = masks.expand_as(images) < 0.5
    assert torch.equal(out.image[outside], images[outside])
    assert out.label.tolist() == [1, 1, 1]
    assert out.params["seed"].shape == (3,) and int(out.params["start_step"][0]) == 999


def test_empty_mask_gives_label_zero_and_the_input():
    images, masks = _case()
    masks[1] = 0
    out = inpaint(gaussian_model(0.0, 0.5), images, masks, schedule=SCHED, steps=3, seed=0)
    assert out.label.tolist() == [1, 0] and torch.equal(out.image[1], images[1]) and out.mask[1].sum() == 0


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_same_seed_same_result_on_every_backend_batch_and_thread_count(sampler):
    images, masks = _case(3, 3, (9, 10))
    model = gaussian_model(0.2, 0.4)
    kw = dict(schedule=SCHED, steps=4, sampler=sampler, eta=1.0)
    ref = inpaint(model, images, masks, seed=5, backend="reference", **kw)
    for name, device in [p.values[0] for p in backend_params("diffusion_step") if not p.marks]:
        got = inpaint(model, images.to(device), masks.to(device), seed=5, backend=name, **kw)
        assert torch.equal(got.image.cpu(), ref.image) and torch.equal(got.mask.cpu(), ref.mask), name
    torch.set_num_threads(1)
    one_thread = inpaint(model, images, masks, seed=5, **kw)
    assert torch.equal(one_thread.image, ref.image)
    for i in range(3):
        single = inpaint(model, images[i : i + 1], masks[i : i + 1], seed=sample_seeds(5, 1, offset=i), **kw)
        assert torch.equal(single.image, ref.image[i : i + 1])
    other = inpaint(model, images, masks, seed=6, **kw)
    assert not torch.equal(other.image, ref.image)


def test_ddim_eta0_is_deterministic_and_invertible():
    g = torch.Generator().manual_seed(0)
    x0 = (0.3 + 0.5 * torch.randn(2, 1, 16, 16, generator=g)).clamp(-1, 1)
    model = gaussian_model(0.3, 0.5)
    noise = ddim_invert(model, x0, schedule=SCHED, steps=50)
    assert 0.8 < float(noise.std()) < 1.2  # a Gaussian start state
    back = sample(model, noise, schedule=SCHED, steps=50, sampler="ddim", eta=0.0, seed=0)
    again = sample(model, noise, schedule=SCHED, steps=50, sampler="ddim", eta=0.0, seed=123)
    assert torch.equal(back, again)  # eta = 0: the seed plays no part
    err = (back - x0).abs().max()
    assert err < 0.1, err  # the inversion evaluates the model at the state it has, not the one it seeks:
    fine = sample(model, ddim_invert(model, x0, schedule=SCHED, steps=200), schedule=SCHED, steps=200, seed=0)
    assert (fine - x0).abs().max() < err / 3  # a first-order error, which shrinks with the step size
    noisy = sample(model, noise, schedule=SCHED, steps=50, sampler="ddim", eta=1.0, seed=0)
    assert (noisy - x0).abs().max() > 10 * err


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_samplers_draw_from_the_data_distribution(sampler):
    # with the exact score of x0 ~ N(0.3, 0.5^2) the samples approach that mean and spread as the steps grow
    # (few-step DDIM and AIAS under-disperse: x0 estimates at high noise are shrunk to the mean)
    def draw(steps):
        zeros, ones = torch.zeros(1, 1, 64, 64), torch.ones(1, 1, 64, 64)
        return anofast.diffusion.run_sampler(gaussian_model(0.3, 0.5), zeros, ones, sample_seeds(2, 1),
                                             schedule=SCHED, steps=steps, sampler=sampler)  # fmt: skip

    few, many = draw(10), draw(50)
    assert abs(float(many.mean()) - 0.3) < 0.03 and abs(float(many.std()) - 0.5) < 0.08, (many.mean(), many.std())
    assert abs(float(many.std()) - 0.5) < abs(float(few.std()) - 0.5)
    if sampler == "dpmpp2m":  # second order: already close at 20 steps
        assert abs(float(draw(20).std()) - 0.5) < 0.03


def test_plans_closed_forms():
    # DPM-Solver++ first order is DDIM with eta = 0
    ddim, dpm = plan(SCHED, 10, "ddim"), plan(SCHED, 10, "dpmpp2m")
    assert dpm[0].coefs[CX] == pytest.approx(ddim[0].coefs[CX]) and dpm[0].coefs[C0] == pytest.approx(ddim[0].coefs[C0])
    assert dpm[1].uses_prev and dpm[0].keeps_x0 and not dpm[-1].uses_prev and not ddim[1].uses_prev
    # the last step of every sampler lands on the x0 estimate
    for sampler in SAMPLERS:
        last = plan(SCHED, 10, sampler)[-1]
        assert last.s == -1 and last.coefs[CX] == pytest.approx(0, abs=1e-12) and last.coefs[C0] == pytest.approx(1)
        assert last.coefs[CZ] == 0
    # AIAS jumps compose: (t -> m) then (m -> s) equals (t -> s)
    p1, s1, v1 = aias(SCHED, 900, 400)
    p2, s2, v2 = aias(SCHED, 400, 37)
    p, s, v = aias(SCHED, 900, 37)
    assert p == pytest.approx(p2 * p1) and s == pytest.approx(p2 * s1 + s2) and v == pytest.approx(p2**2 * v1 + v2)
    # one AIAS step is the DDPM posterior
    ab, ab1, beta = SCHED.abar(500), SCHED.abar(499), float(SCHED.betas[500])
    assert aias(SCHED, 500, 499) == pytest.approx(
        ((1 - beta) ** 0.5 * (1 - ab1) / (1 - ab), ab1**0.5 * beta / (1 - ab), (1 - ab1) * beta / (1 - ab))
    )
    # grids: trailing spacing from T - 1; FAST ends with the two DDPM steps 1 -> 0 -> clean
    assert timesteps(SCHED, 10, "ddim") == [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]
    assert timesteps(SCHED, 10, "fast")[-3:] == [125, 1, 0][-3:] or timesteps(SCHED, 10, "fast")[-2:] == [1, 0]
    assert timesteps(SCHED, 10, "ddim", strength=0.5)[0] == 499
    assert len(timesteps(SCHED, 50, "ddim", strength=0.01)) == 10  # never more steps than training steps
    assert not any(st.coefs[CP] for st in plan(SCHED, 5, "fast"))
    assert math.isfinite(plan(SCHED, 1, "dpmpp2m")[0].coefs[C0])


def test_guidance_is_one_batched_call_and_combines_like_cfg():
    images, masks = _case()
    cond = torch.ones(2, 4)
    calls = []

    def model(x, t, c):
        calls.append(x.shape[0])
        return 0.1 * x + c[:, :1].view(-1, 1, 1, 1)  # cond rows shift the prediction, null rows (zeros) do not

    out = inpaint(model, images, masks, schedule=SCHED, steps=4, seed=0, guidance=3.0, cond=cond)
    assert calls == [4] * 4

    def combined(x, t, c):
        u = 0.1 * x
        return u + torch.tensor(3.0) * ((0.1 * x + 1.0) - u)

    ref = inpaint(combined, images, masks, schedule=SCHED, steps=4, seed=0, cond=cond)
    assert torch.equal(out.image, ref.image)
    calls.clear()
    inpaint(model, images, masks, schedule=SCHED, steps=2, seed=0, cond=cond)
    assert calls == [2, 2]


def test_strength_starts_from_the_noised_image():
    images, masks = _case()
    model = gaussian_model(0.0, 0.5)
    weak = inpaint(model, images, masks, schedule=SCHED, steps=5, seed=0, strength=0.05)
    strong = inpaint(model, images, masks, schedule=SCHED, steps=5, seed=0, strength=1.0)
    assert int(weak.params["start_step"][0]) == 49
    assert (weak.image - images).abs().mean() < (strong.image - images).abs().mean()


def test_bad_input_raises_clear_errors():
    images, masks = _case()
    model = gaussian_model(0.0, 0.5)
    kw = dict(schedule=SCHED, seed=0)
    with pytest.raises(ValueError, match=r"masks must have shape \(2, 1, 12, 14\)"):
        inpaint(model, images, masks[..., :10], **kw)
    with pytest.raises(ValueError, match="steps must be an int >= 1"):
        inpaint(model, images, masks, steps=0, **kw)
    with pytest.raises(ValueError, match="sampler must be one of"):
        inpaint(model, images, masks, sampler="euler", **kw)
    with pytest.raises(ValueError, match="prediction must be one of"):
        inpaint(model, images, masks, prediction="x0", **kw)
    with pytest.raises(ValueError, match=r"model returned shape \(2, 1, 12, 14\)"):
        inpaint(lambda x, t, c: x[:, :1], images, masks, **kw)
    with pytest.raises(TypeError, match="model must return a torch.Tensor"):
        inpaint(lambda x, t, c: x.numpy(), images, masks, **kw)
    with pytest.raises(ValueError, match="non-finite"):
        inpaint(lambda x, t, c: x * float("nan"), images, masks, **kw)
    with pytest.raises(ValueError, match="needs a condition"):
        inpaint(model, images, masks, guidance=2.0, **kw)
    with pytest.raises(ValueError, match="strength"):
        inpaint(model, images, masks, strength=0.0, **kw)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        inpaint(model, images * 3, masks, **kw)
    with pytest.raises(ValueError, match="empty batch"):
        inpaint(model, images[:0], masks[:0], **kw)
