"""Noise schedules: the training-time ``betas`` / ``alphas_cumprod`` a diffusion model was trained with."""

from __future__ import annotations

import math

import torch
from torch import Tensor


class NoiseSchedule:
    """A discrete DDPM noise schedule (float64 on the CPU; the samplers derive their per-step scalars from it).

    Attributes:
        betas: ``(T,)`` float64 per-step noise variances.
        alphas_cumprod: ``(T,)`` float64 ``ᾱ_t = prod_{i<=t} (1 - β_i)`` (strictly decreasing, in (0, 1)).

    Example:
        >>> sched = NoiseSchedule.linear(num_train_steps=1000)
        >>> sched.alphas_cumprod.shape, sched.num_train_steps
        (torch.Size([1000]), 1000)
    """

    def __init__(self, betas: Tensor):
        if not isinstance(betas, Tensor):
            betas = torch.as_tensor(betas)
        betas = betas.detach().to(device="cpu", dtype=torch.float64).flatten()
        if betas.numel() < 2:
            raise ValueError(f"betas must hold at least 2 training steps, got {betas.numel()}")
        if not bool(((betas > 0) & (betas < 1)).all()):
            raise ValueError("betas must lie in the open interval (0, 1)")
        self.betas = betas
        self.alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)

    @property
    def num_train_steps(self) -> int:
        return int(self.betas.numel())

    @classmethod
    def linear(cls, num_train_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> NoiseSchedule:
        """DDPM's linear betas (Ho et al. 2020; diffusers ``beta_schedule="linear"``)."""
        _check_steps(num_train_steps)
        return cls(torch.linspace(beta_start, beta_end, num_train_steps, dtype=torch.float64))

    @classmethod
    def scaled_linear(
        cls, num_train_steps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012
    ) -> NoiseSchedule:
        """Stable Diffusion's / LDM's betas, linear in sqrt (diffusers ``beta_schedule="scaled_linear"``)."""
        _check_steps(num_train_steps)
        return cls(torch.linspace(beta_start**0.5, beta_end**0.5, num_train_steps, dtype=torch.float64) ** 2)

    @classmethod
    def cosine(cls, num_train_steps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> NoiseSchedule:
        """Nichol & Dhariwal's cosine schedule (diffusers ``"squaredcos_cap_v2"``)."""
        _check_steps(num_train_steps)
        t = torch.arange(num_train_steps + 1, dtype=torch.float64) / num_train_steps
        f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
        return cls((1 - f[1:] / f[:-1]).clamp(max=max_beta))

    @classmethod
    def from_diffusers(cls, scheduler: object) -> NoiseSchedule:
        """The schedule of a diffusers scheduler (anything with a ``betas`` tensor)."""
        betas = getattr(scheduler, "betas", None)
        if not isinstance(betas, Tensor):
            name = type(scheduler).__name__
            raise TypeError(f"scheduler must have a betas tensor (diffusers schedulers do), got {name}")
        return cls(betas)

    def abar(self, t: int) -> float:
        """``ᾱ_t`` as a Python float, with ``ᾱ_{-1} = 1`` (the clean image)."""
        return 1.0 if t < 0 else float(self.alphas_cumprod[t])

    def __repr__(self) -> str:
        b = self.betas
        return f"NoiseSchedule(T={self.num_train_steps}, beta {float(b[0]):.3g}..{float(b[-1]):.3g})"


def _check_steps(n: object) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"num_train_steps must be an int >= 2, got {n!r}")
