"""Few-step diffusion inpainting: fused mask-guided samplers, model adapters and a few-shot defect model.

``inpaint(model, images, masks, schedule=NoiseSchedule.linear(), steps=10, sampler="ddim", seed=0)`` works with
any ``model(x_t, t, cond) -> eps or v``; :func:`from_diffusers` wraps a diffusers ``UNet2DModel`` /
``UNet2DConditionModel``; :class:`FewShotInpainter` is a small pixel-space model trained on a few real defects.
"""

from __future__ import annotations

from anofast.diffusion.inpaint import ddim_invert, inpaint, run_sampler, sample
from anofast.diffusion.samplers import SAMPLERS, plan, timesteps
from anofast.diffusion.schedule import NoiseSchedule

__all__ = [
    "SAMPLERS", "NoiseSchedule", "inpaint", "sample", "ddim_invert", "run_sampler", "plan", "timesteps",
    "from_diffusers", "FewShotInpainter",
]  # fmt: skip


def __getattr__(name: str):
    if name == "from_diffusers":
        from anofast.diffusion.adapters import from_diffusers

        return from_diffusers
    if name == "FewShotInpainter":
        from anofast.diffusion.fewshot import FewShotInpainter

        return FewShotInpainter
    raise AttributeError(f"module 'anofast.diffusion' has no attribute {name!r}")
