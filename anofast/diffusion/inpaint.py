"""Mask-guided few-step inpainting with any ``model(x_t, t, cond) -> eps or v`` (METHODS.md §7.2).

Images in [0, 1] are mapped to the model space ``2x - 1``. Inside the mask the sampler denoises from the noised
image (``strength`` picks the start step); outside, every step replaces the state by the clean image re-noised to
the step's target level with a fresh counter-RNG draw. Each step is one fused ``diffusion_step`` pass. At the end
the input is pasted back bit for bit outside the mask, and the returned mask is the placement mask intersected with
the pixels that really changed, so ``mask == (image != input).any(channel)`` exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from anofast import _rng
from anofast._validate import check_images, check_mask
from anofast.diffusion.samplers import PREDICTIONS, SAMPLERS, init_coefs, plan, timesteps
from anofast.diffusion.schedule import NoiseSchedule
from anofast.ops.diffusion_step import diffusion_step
from anofast.reference.diffusion_step import G
from anofast.types import AnomalyBatch

Model = Callable[[Tensor, Tensor, Any], Tensor]
Cond = Tensor | dict[str, Tensor] | None
_ANY_CHANNELS = tuple(range(1, 257))  # RGB, grey, latents, multispectral ...


def inpaint(
    model: Model,
    images: Tensor,
    masks: Tensor,
    *,
    schedule: NoiseSchedule,
    steps: int = 20,
    sampler: str = "dpmpp2m",
    seed: int | Tensor | None = None,
    eta: float = 0.0,
    guidance: float | Tensor = 1.0,
    cond: Cond = None,
    null_cond: Cond = None,
    prediction: str | None = None,
    strength: float = 1.0,
    clip: float | None = None,
    dilate: int = 0,
    backend: str = "auto",
) -> AnomalyBatch:
    """Inpaints ``images`` inside ``masks`` with a diffusion model in ``steps`` network evaluations.

    Args:
        model: ``model(x_t, t, cond) -> prediction`` with ``x_t`` ``(N, C, H, W)`` float32 in the model space,
            ``t`` ``(N,)`` int64 training steps and ``cond`` as given (``N = 2B`` with guidance: the conditional
            rows, then the unconditional ones, in one call). A ``prediction`` attribute (``"eps"`` / ``"v"``) and
            a ``null_cond(cond)`` method are used when present (the diffusers adapters have them).
        images: ``(B, C, H, W)`` float in [0, 1] or uint8, any ``C`` (mapped to the model space ``2x - 1``).
        masks: ``(B, 1, H, W)`` (or ``(B, H, W)``) placement masks: generate where set.
        schedule: the noise schedule the model was trained with.
        steps: network evaluations (``>= 1``; with guidance each evaluates a doubled batch).
        sampler: ``"ddim"``, ``"dpmpp2m"`` (DPM-Solver++ 2M) or ``"fast"`` (AIAS jumps + 2 DDPM steps).
        seed: int, ``(B,)`` int64 per-sample seeds, or None (torch's global RNG).
        eta: DDIM stochasticity (0 = deterministic); ignored by the other samplers.
        guidance: classifier-free guidance scale (a number or ``(B,)``); 1 = no unconditional call.
        cond: the model's condition (a tensor or a dict of tensors with leading ``B``), or None.
        null_cond: the unconditional condition for guidance (default: ``model.null_cond(cond)``, else zeros).
        prediction: ``"eps"`` or ``"v"`` (default: ``model.prediction`` or ``"eps"``).
        strength: in (0, 1]: the sampler starts from step ``round(strength * T) - 1`` of the noised image.
        clip: clip the x0 estimate to ``[-clip, clip]`` (pixel-space models: 1.0), or None.
        dilate: grow the mask by this many pixels while sampling (the seam is harmonised; the paste and the
            returned mask still use the given mask).
        backend: backend of the fused step.

    Returns:
        :class:`~anofast.AnomalyBatch`: ``image`` (bit-identical to the input outside the mask), ``mask`` (the
        exact changed pixels), ``label`` and per-sample ``params`` (seed, guidance, start step, steps).

    Raises:
        TypeError, ValueError: bad images or masks (shape, dtype, values), ``steps < 1``, an unknown sampler or
            prediction, guidance without a condition, or a model output of the wrong shape or non-finite.
    """
    images = check_images(images, channels=_ANY_CHANNELS)
    mask = check_mask(masks, "masks", images)
    batch = images.shape[0]
    guide = _check_args(steps, sampler, eta, strength, guidance, batch, cond)
    prediction = _prediction(model, prediction)
    seeds = _rng.resolve_seeds(seed, batch)
    known = images * 2.0 - 1.0
    sample_mask = mask if not dilate else F.max_pool2d(mask, 2 * dilate + 1, stride=1, padding=dilate)
    x = run_sampler(
        model, known, sample_mask, seeds, schedule=schedule, steps=steps, sampler=sampler, eta=eta, guidance=guide,
        cond=cond, null_cond=null_cond, prediction=prediction, strength=strength, clip=clip, backend=backend,
    )  # fmt: skip
    generated = ((x + 1.0) * 0.5).clamp(0.0, 1.0)
    placed = mask > 0.5
    out = torch.where(placed, generated, images)
    changed = placed & (out != images).any(dim=1, keepdim=True)
    grid = timesteps(schedule, steps, sampler, strength)
    params = {
        "seed": seeds,
        "guidance": guide.cpu(),
        "start_step": torch.full((batch,), grid[0], dtype=torch.int64),
        "steps": torch.full((batch,), len(grid), dtype=torch.int64),
    }
    label = changed.flatten(1).any(1).to(torch.int64)
    return AnomalyBatch(image=out, mask=changed.to(torch.float32), label=label, params=params)


def run_sampler(
    model: Model,
    known: Tensor,
    mask: Tensor,
    seeds: Tensor,
    *,
    schedule: NoiseSchedule,
    steps: int,
    sampler: str,
    eta: float = 0.0,
    guidance: Tensor | None = None,
    cond: Cond = None,
    null_cond: Cond = None,
    prediction: str = "eps",
    strength: float = 1.0,
    clip: float | None = None,
    init: Tensor | None = None,
    backend: str = "auto",
) -> Tensor:
    """The sampling loop in model space: returns the final state (the clean estimate inside ``mask``, ``known``
    outside). ``init`` replaces the initial noising of ``known`` (e.g. a latent from :func:`ddim_invert`)."""
    batch = known.shape[0]
    device = known.device
    steps_plan = plan(schedule, steps, sampler, strength=strength, eta=eta, prediction=prediction, clip=clip)
    g = torch.ones(batch, dtype=torch.float32) if guidance is None else guidance.to(torch.float32).cpu()
    guided = bool((g != 1).any())
    if guided:
        null_cond = _null_cond(model, cond, null_cond)
        both = _cat_cond(cond, null_cond)
    if init is None:
        k0 = torch.tensor(init_coefs(schedule, steps_plan[0].t), dtype=torch.float32).expand(batch, -1).contiguous()
        x, _ = diffusion_step(known, known, known, torch.zeros_like(mask), k0.to(device), seeds, 0, backend=backend)
    else:
        x = init.to(torch.float32).contiguous()
    x0_prev = None
    with torch.inference_mode():
        for i, st in enumerate(steps_plan):
            t = torch.full((batch,), st.t, dtype=torch.int64, device=device)
            if guided:
                pred = model(torch.cat((x, x)), torch.cat((t, t)), both)
            else:
                pred = model(x, t, cond)
            pred = _check_pred(pred, x, guided)
            k = torch.tensor(st.coefs, dtype=torch.float32).repeat(batch, 1)
            k[:, G] = g
            x, x0 = diffusion_step(
                x, pred, known, mask, k.to(device), seeds, i + 1,
                x0_prev=x0_prev if st.uses_prev else None, want_x0=st.keeps_x0, backend=backend,
            )  # fmt: skip
            x0_prev = x0
    if not bool(torch.isfinite(x).all()):
        raise ValueError("model returned non-finite values (NaN or inf) during sampling")
    return x


def sample(
    model: Model,
    noise: Tensor,
    *,
    schedule: NoiseSchedule,
    steps: int = 20,
    sampler: str = "ddim",
    eta: float = 0.0,
    cond: Cond = None,
    prediction: str | None = None,
    seed: int | Tensor | None = 0,
    backend: str = "auto",
) -> Tensor:
    """Unmasked generation from a given start state ``noise`` (model space, at step ``T - 1``): the clean estimate.

    With ``sampler="ddim"`` and ``eta=0`` this is deterministic and inverts :func:`ddim_invert`.
    """
    if not isinstance(noise, Tensor) or noise.dim() != 4:
        raise ValueError(f"noise must be a (B, C, H, W) tensor, got {getattr(noise, 'shape', type(noise))}")
    batch = noise.shape[0]
    _check_args(steps, sampler, eta, 1.0, 1.0, batch, cond)
    ones = torch.ones(batch, 1, *noise.shape[2:], dtype=torch.float32, device=noise.device)
    return run_sampler(
        model, torch.zeros_like(noise, dtype=torch.float32), ones, _rng.resolve_seeds(seed, batch), schedule=schedule,
        steps=steps, sampler=sampler, eta=eta, cond=cond, prediction=_prediction(model, prediction), init=noise,
        backend=backend,
    )  # fmt: skip


def ddim_invert(
    model: Model,
    x0: Tensor,
    *,
    schedule: NoiseSchedule,
    steps: int = 50,
    cond: Cond = None,
    prediction: str | None = None,
) -> Tensor:
    """Deterministic DDIM inversion of clean model-space ``x0`` to the start state of :func:`sample`.

    Runs the eta = 0 grid backwards; each step ``s -> t`` evaluates the model at ``(x_s, t)`` (the usual
    first-order approximation of the implicit inverse), so the round trip is exact up to the step error.
    """
    prediction = _prediction(model, prediction)
    _check_args(steps, "ddim", 0.0, 1.0, 1.0, x0.shape[0], cond)
    grid = timesteps(schedule, steps, "ddim")
    x = x0.to(torch.float64)
    with torch.inference_mode():
        for s, t in zip([-1] + grid[::-1][:-1], grid[::-1], strict=True):
            ab_s, ab_t = schedule.abar(s), schedule.abar(t)
            tt = torch.full((x.shape[0],), t, dtype=torch.int64, device=x.device)
            pred = _check_pred(model(x.to(torch.float32), tt, cond), x, False).to(torch.float64)
            if prediction == "eps":
                eps = pred
                x0_hat = (x - (1 - ab_s) ** 0.5 * eps) / ab_s**0.5
            else:  # v at t, read at the current state: eps = σ x + α v, x0 = α x − σ v (with ᾱ_t)
                eps = (1 - ab_t) ** 0.5 * x + ab_t**0.5 * pred
                x0_hat = ab_t**0.5 * x - (1 - ab_t) ** 0.5 * pred
            x = ab_t**0.5 * x0_hat + (1 - ab_t) ** 0.5 * eps
    return x.to(torch.float32)


# --------------------------------------------------------------------------------------------------- helpers
def _check_args(steps, sampler, eta, strength, guidance, batch: int, cond) -> Tensor:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}; got {sampler!r}")
    if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not 0.0 <= eta:
        raise ValueError(f"eta must be a number >= 0, got {eta!r}")
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0.0 < strength <= 1.0:
        raise ValueError(f"strength must lie in (0, 1], got {strength!r}")
    if isinstance(guidance, Tensor):
        g = guidance.detach().to("cpu", torch.float32).flatten()
        if g.numel() == 1:
            g = g.expand(batch)
        if g.numel() != batch:
            raise ValueError(f"guidance must be a number or a ({batch},) tensor, got shape {tuple(guidance.shape)}")
    elif isinstance(guidance, (int, float)) and not isinstance(guidance, bool):
        g = torch.full((batch,), float(guidance), dtype=torch.float32)
    else:
        raise TypeError(f"guidance must be a number or a tensor, got {type(guidance).__name__}")
    if not bool(torch.isfinite(g).all()):
        raise ValueError("guidance must be finite")
    if bool((g != 1).any()) and cond is None:
        raise ValueError("guidance != 1 needs a condition (cond=) to contrast with the unconditional prediction")
    return g.contiguous()


def _prediction(model: Model, prediction: str | None) -> str:
    if prediction is None:
        prediction = getattr(model, "prediction", "eps")
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
    if not callable(model):
        raise TypeError(f"model must be callable as model(x_t, t, cond), got {type(model).__name__}")
    return prediction


def _check_pred(pred: object, x: Tensor, guided: bool) -> Tensor:
    if not isinstance(pred, Tensor):
        raise TypeError(f"model must return a torch.Tensor, got {type(pred).__name__}")
    want = ((2 if guided else 1) * x.shape[0], *x.shape[1:])
    if tuple(pred.shape) != want:
        raise ValueError(f"model returned shape {tuple(pred.shape)}; expected {want} (the shape of its input x_t)")
    if pred.device != x.device:
        raise ValueError(f"model returned a tensor on {pred.device}; expected {x.device}")
    return pred.to(torch.float32).contiguous()


def _null_cond(model: Model, cond: Cond, null_cond: Cond) -> Cond:
    if null_cond is not None:
        return null_cond
    make = getattr(model, "null_cond", None)
    if callable(make):
        return make(cond)
    if isinstance(cond, Tensor) and cond.is_floating_point():
        return torch.zeros_like(cond)
    raise ValueError("guidance needs null_cond= (the unconditional condition) for this kind of cond")


def _cat_cond(cond: Cond, null: Cond) -> Cond:
    if isinstance(cond, Tensor) and isinstance(null, Tensor):
        return torch.cat((cond, null.to(cond.device)))
    if isinstance(cond, dict) and isinstance(null, dict):
        return {k: torch.cat((v, null[k].to(v.device))) for k, v in cond.items()}
    raise TypeError("cond and null_cond must both be tensors or both dicts of tensors")
