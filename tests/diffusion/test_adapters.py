"""diffusers adapters with tiny randomly initialised UNets (no downloads); skipped without diffusers."""

from __future__ import annotations

import pytest
import torch

from anofast.diffusion import NoiseSchedule, from_diffusers, inpaint
from anofast.testing import make_batch

diffusers = pytest.importorskip("diffusers")
SCHED = NoiseSchedule.linear(num_train_steps=1000)


def _images_masks():
    images = make_batch(2, 3, 16, 16)
    masks = torch.zeros(2, 1, 16, 16)
    masks[:, :, 4:12, 3:13] = 1
    return images, masks


def _check(out, images, masks):
    outside = masks.expand_as(images) < 0.5
    assert torch.equal(out.image[outside], images[outside])
    assert torch.equal(out.mask, (out.image != images).any(1, keepdim=True).float())
    assert out.label.tolist() == [1, 1]


def test_unet2d_model_eps_and_v():
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(sample_size=16, in_channels=3, out_channels=3, layers_per_block=1,
                                 block_out_channels=(8, 16), norm_num_groups=4,
                                 down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D")).eval()  # fmt: skip
    images, masks = _images_masks()
    model = from_diffusers(unet)
    assert model.prediction == "eps"
    out = inpaint(model, images, masks, schedule=SCHED, steps=3, sampler="ddim", seed=0)
    _check(out, images, masks)
    again = inpaint(model, images, masks, schedule=SCHED, steps=3, sampler="ddim", seed=0)
    assert torch.equal(out.image, again.image)
    sched = diffusers.DDPMScheduler(prediction_type="v_prediction")
    assert from_diffusers(unet, scheduler=sched).prediction == "v"
    ab = NoiseSchedule.from_diffusers(sched).alphas_cumprod
    torch.testing.assert_close(ab, SCHED.alphas_cumprod, rtol=1e-5, atol=0)  # diffusers keeps float32 betas
    _check(inpaint(from_diffusers(unet, prediction="v"), images, masks, schedule=SCHED, steps=2, seed=1), images, masks)


def test_class_conditional_unet2d_with_guidance():
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(sample_size=16, in_channels=3, out_channels=3, layers_per_block=1,
                                 block_out_channels=(8, 16), norm_num_groups=4, num_class_embeds=3,
                                 down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D")).eval()  # fmt: skip
    images, masks = _images_masks()
    model = from_diffusers(unet, null_class=2)
    out = inpaint(model, images, masks, schedule=SCHED, steps=2, seed=0, guidance=2.0, cond=torch.tensor([0, 1]))
    _check(out, images, masks)
    with pytest.raises(ValueError, match="null_class"):
        inpaint(from_diffusers(unet), images, masks, schedule=SCHED, steps=2, seed=0, guidance=2.0,
                cond=torch.tensor([0, 1]))  # fmt: skip


def test_unet2d_condition_model_with_guidance():
    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel(sample_size=16, in_channels=4, out_channels=4, layers_per_block=1,
                                          block_out_channels=(8, 16), norm_num_groups=4, cross_attention_dim=8,
                                          attention_head_dim=4,
                                          down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                          up_block_types=("UpBlock2D", "CrossAttnUpBlock2D")).eval()  # fmt: skip
    latents = torch.rand(2, 4, 16, 16)  # a latent batch, scaled to [0, 1] as the API expects
    masks = torch.zeros(2, 1, 16, 16)
    masks[:, :, 2:10, 5:15] = 1
    text = torch.randn(2, 5, 8)
    out = inpaint(from_diffusers(unet), latents, masks, schedule=SCHED, steps=2, sampler="dpmpp2m", seed=0,
                  guidance=4.0, cond=text)  # fmt: skip
    _check(out, latents, masks)
    with pytest.raises(ValueError, match="needs cond"):
        inpaint(from_diffusers(unet), latents, masks, schedule=SCHED, steps=1, seed=0)


def test_from_diffusers_rejects_other_objects():
    with pytest.raises(TypeError, match="UNet2DModel or UNet2DConditionModel"):
        from_diffusers(torch.nn.Conv2d(3, 3, 1))
