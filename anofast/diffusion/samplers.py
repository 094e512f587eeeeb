"""Few-step samplers as per-step scalar plans for the fused ``diffusion_step`` op.

Every sampler here moves ``x_t -> x_s`` (``s < t`` on a grid of training steps, ``s = -1`` the clean image, ``ᾱ_{-1}
= 1``) with the same element-wise update ``x_s = cx x + c0 x̂0 + cp x̂0_prev + cz z`` where ``x̂0 = p0 x + p1 pred``
(METHODS.md §7.1). The scalars are computed here in float64 and handed to the kernel as float32, so the kernel needs
no division or transcendental function:

- ``ddim``: ``x_s = √ᾱ_s x̂0 + √(1−ᾱ_s−σ²) ε̂ + σ z``, ``σ = η √((1−ᾱ_s)/(1−ᾱ_t)) √(1−ᾱ_t/ᾱ_s)``, with ``ε̂ = (x −
  √ᾱ_t x̂0)/√(1−ᾱ_t)`` (the noise implied by the possibly clipped x̂0, as diffusers does).
- ``dpmpp2m``: DPM-Solver++ (2M) in ``λ = log(α/σ)``: first order on the first step, second order
  ``D = (1 + 1/2r) x̂0_i − 1/2r x̂0_{i−1}`` after, and first order on the final step to the clean image.
- ``fast``: FAST's AIAS (training-free part): the DDPM posterior steps between two grid points are composed into
  one affine-Gaussian jump ``x_e = Π x + Σ x̂0 + √Var z`` (x̂0 held over the segment). Our reading of METHODS §7.6:
  ``steps`` network evaluations = ``steps − 2`` jumps on a uniform grid from the start step down to ``t = 1``,
  then the two exact DDPM steps ``1 → 0`` and ``0 → clean``; FARM (a trained refinement network) is not part of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from anofast.diffusion.schedule import NoiseSchedule
from anofast.reference.diffusion_step import C0, CLIP, CP, CX, CZ, KA, KS, NUM_COEFS, P0, P1

SAMPLERS = ("ddim", "dpmpp2m", "fast")
PREDICTIONS = ("eps", "v")


@dataclass(frozen=True)
class Step:
    """One planned step: evaluate the model at ``t``, move to ``s``.

    Attributes:
        t: training step the model is called with.
        s: target step (``-1`` = the clean image).
        coefs: ``NUM_COEFS`` float64 scalars (the guidance column is filled per sample by the caller).
        uses_prev: the update reads the previous step's x0 estimate.
        keeps_x0: a later step reads this step's x0 estimate.
    """

    t: int
    s: int
    coefs: tuple[float, ...]
    uses_prev: bool
    keeps_x0: bool


def start_step(schedule: NoiseSchedule, strength: float) -> int:
    """Training step the sampling starts from: ``round(strength * T) - 1`` (``T - 1`` at strength 1)."""
    return max(0, round(strength * schedule.num_train_steps) - 1)


def timesteps(schedule: NoiseSchedule, steps: int, sampler: str, strength: float = 1.0) -> list[int]:
    """Descending grid of model-evaluation steps (at most ``steps``, fewer if the start step is small)."""
    t0 = start_step(schedule, strength)
    n = steps
    if sampler == "fast" and n >= 3 and t0 > 1:
        grid = [round(1 + (t0 - 1) * (n - 2 - i) / (n - 2)) for i in range(n - 1)] + [0]
    else:
        grid = [round((t0 + 1) * (n - i) / n) - 1 for i in range(n)]
    return sorted({t for t in grid if t >= 0}, reverse=True)


def plan(
    schedule: NoiseSchedule,
    steps: int,
    sampler: str,
    *,
    strength: float = 1.0,
    eta: float = 0.0,
    prediction: str = "eps",
    clip: float | None = None,
) -> list[Step]:
    """The per-step scalars of ``sampler`` over ``timesteps(schedule, steps, sampler, strength)``."""
    grid = timesteps(schedule, steps, sampler, strength)
    targets = grid[1:] + [-1]
    out: list[Step] = []
    h_prev = None
    for i, (t, s) in enumerate(zip(grid, targets, strict=True)):
        ab_t, ab_s = schedule.abar(t), schedule.abar(s)
        a_t, sig_t, a_s, sig_s = math.sqrt(ab_t), math.sqrt(1 - ab_t), math.sqrt(ab_s), math.sqrt(1 - ab_s)
        k = [0.0] * NUM_COEFS
        if prediction == "eps":
            k[P0], k[P1] = 1.0 / a_t, -sig_t / a_t
        else:  # v = α ε − σ x0  ->  x0 = α x − σ v
            k[P0], k[P1] = a_t, -sig_t
        k[CLIP] = math.inf if clip is None else float(clip)
        k[KA], k[KS] = a_s, sig_s
        uses_prev = False
        if sampler == "ddim":
            var = eta * eta * (1 - ab_s) / (1 - ab_t) * (1 - ab_t / ab_s)
            d = math.sqrt(max(0.0, 1 - ab_s - var))
            k[CX], k[C0], k[CZ] = d / sig_t, a_s - d * a_t / sig_t, math.sqrt(var)
        elif sampler == "dpmpp2m":
            if s < 0:  # h = inf: the update is x̂0 itself
                k[CX], k[C0] = 0.0, 1.0
            else:
                h = math.log(a_s / sig_s) - math.log(a_t / sig_t)
                phi = -math.expm1(-h)  # 1 - e^{-h}
                k[CX], k[C0] = sig_s / sig_t, a_s * phi
                if h_prev is not None:
                    r = h_prev / h
                    k[C0] = a_s * phi * (1 + 1 / (2 * r))
                    k[CP] = -a_s * phi / (2 * r)
                    uses_prev = True
                h_prev = h
        elif sampler == "fast":
            k[CX], k[C0], var = aias(schedule, t, s)
            k[CZ] = math.sqrt(var)
        else:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
        out.append(Step(t=t, s=s, coefs=tuple(k), uses_prev=uses_prev, keeps_x0=False))
    # a step keeps its x0 estimate when the next one reads it
    return [
        Step(st.t, st.s, st.coefs, st.uses_prev, i + 1 < len(out) and out[i + 1].uses_prev) for i, st in enumerate(out)
    ]


def aias(schedule: NoiseSchedule, t_start: int, t_end: int) -> tuple[float, float, float]:
    """``(Π, Σ, Var)`` of the composed DDPM posterior steps ``t_start -> t_end`` with x̂0 held fixed (FAST's AIAS).

    One step ``i -> i-1``: ``x_{i-1} = B_i x_i + A_i x̂0 + σ_i z`` with ``A_i = √ᾱ_{i−1} β_i/(1−ᾱ_i)``,
    ``B_i = √α_i (1−ᾱ_{i−1})/(1−ᾱ_i)``, ``σ_i² = (1−ᾱ_{i−1}) β_i/(1−ᾱ_i)``.
    """
    pi, sigma, var = 1.0, 0.0, 0.0
    for i in range(t_start, t_end, -1):
        ab_i, ab_prev = schedule.abar(i), schedule.abar(i - 1)
        beta = float(schedule.betas[i])
        a_coef = math.sqrt(ab_prev) * beta / (1 - ab_i)
        b_coef = math.sqrt(1 - beta) * (1 - ab_prev) / (1 - ab_i)
        pi, sigma = b_coef * pi, b_coef * sigma + a_coef
        var = b_coef * b_coef * var + (1 - ab_prev) * beta / (1 - ab_i)
    return pi, sigma, var


def init_coefs(schedule: NoiseSchedule, t: int) -> tuple[float, ...]:
    """Scalars of the initial noising (step 0): every element becomes ``√ᾱ_t known + √(1−ᾱ_t) z``."""
    k = [0.0] * NUM_COEFS
    k[CLIP] = math.inf
    k[KA], k[KS] = math.sqrt(schedule.abar(t)), math.sqrt(1 - schedule.abar(t))
    return tuple(k)
