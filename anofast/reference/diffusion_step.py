"""Reference of the ``diffusion_step`` op: one fused, mask-guided sampler step.

Per element ``e`` of sample ``b`` (float32, exactly this operation order; ``k = coefs[b]``)::

    pred = cond[b] if not guided else uncond + k[G] * (cond - uncond)    # classifier-free guidance
    x0 = k[P0] * x + k[P1] * pred                                       # x0 estimate (eps- or v-prediction)
    x0 = x0 if x0 > -k[CLIP] else -k[CLIP] ; x0 = x0 if x0 < k[CLIP] else k[CLIP]
    z = to_normal(bits(stream_key(sample_key(seed[b]), DIFFUSION), step * numel + e))
    xs = k[CX] * x + k[C0] * x0 [+ k[CP] * x0_prev] + k[CZ] * z        # the scheduler step (added left to right)
    kn = k[KA] * known + k[KS] * z                                      # the known region, re-noised to step s
    out = xs if mask > 0.5 else kn

``numel = C * H * W``. Every sampler (DDIM with eta, DPM-Solver++ 2M, AIAS jumps, DDPM) is an instance of this
update with per-step scalars computed on the host in float64 (``anofast.diffusion.samplers``); the noise ``z`` is
used by the scheduler inside the mask and by the re-noising outside it, so one draw per element per step suffices.
"""

from __future__ import annotations

import torch
from torch import Tensor

from anofast import _rng
from anofast._dispatch import register_impl

# Columns of the (B, K) float32 coefficient table.
G, P0, P1, CLIP, CX, C0, CP, CZ, KA, KS = range(10)
NUM_COEFS = 10


def noise_counters(step: int, numel: int, device: torch.device) -> Tensor:
    """``(1, numel)`` int64 counters of ``step``: ``step * numel + element`` (uint32, checked by the caller)."""
    return step * numel + torch.arange(numel, dtype=torch.int64, device=device).view(1, numel)


def diffusion_step_reference(
    x: Tensor,
    pred: Tensor,
    known: Tensor,
    mask: Tensor,
    coefs: Tensor,
    seeds: Tensor,
    step: int,
    x0_prev: Tensor | None,
    want_x0: bool,
) -> tuple[Tensor, Tensor | None]:
    """``(x_s (B, C, H, W), x0 (B, C, H, W) or None)`` for one step; see the module docstring.

    ``x``, ``known`` ``(B, C, H, W)`` float32; ``pred`` ``(B, C, H, W)`` or ``(2B, C, H, W)`` (conditional rows
    first, then unconditional: guided); ``mask`` ``(B, 1, H, W)`` float32; ``coefs`` ``(B, NUM_COEFS)`` float32;
    ``seeds`` ``(B,)`` int64; ``x0_prev`` ``(B, C, H, W)`` or None.
    """
    batch = x.shape[0]
    numel = x[0].numel()
    k = [coefs[:, i].view(batch, 1, 1, 1) for i in range(NUM_COEFS)]
    cond = pred[:batch]
    if pred.shape[0] == 2 * batch:
        uncond = pred[batch:]
        e = uncond + k[G] * (cond - uncond)
    else:
        e = cond
    x0 = k[P0] * x + k[P1] * e
    x0 = torch.where(x0 > -k[CLIP], x0, -k[CLIP])
    x0 = torch.where(x0 < k[CLIP], x0, k[CLIP])
    skey = _rng.stream_key(_rng.sample_key(seeds.to(x.device)), _rng.Stream.DIFFUSION).view(batch, 1)
    bits = _rng.bits(skey, noise_counters(step, numel, x.device))
    z = _rng.to_normal(bits, _rng.normal_table(x.device)).view_as(x)
    xs = k[CX] * x + k[C0] * x0
    if x0_prev is not None:
        xs = xs + k[CP] * x0_prev
    xs = xs + k[CZ] * z
    kn = k[KA] * known + k[KS] * z
    out = torch.where(mask > 0.5, xs, kn)
    return out, (x0 if want_x0 else None)


@register_impl("diffusion_step", "reference")
def _load_reference():
    return diffusion_step_reference
