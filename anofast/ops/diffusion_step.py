"""One fused, mask-guided diffusion sampler step: guidance, x0 estimate, scheduler update and re-noised known region.

The network call is the only other work of a step; everything the sampler does per element happens here in one
pass (reads ``x``, ``pred``, ``known``, ``mask`` and optionally the previous x0; writes ``x_s`` and optionally x0).
The formula and the coefficient table are specified in :mod:`anofast.reference.diffusion_step`.
"""

from __future__ import annotations

import torch
from torch import Tensor

import anofast.reference.diffusion_step  # noqa: F401  (registers the reference backend)
from anofast._dispatch import dispatch, num_threads, register_impl
from anofast._validate import check_param
from anofast.reference.diffusion_step import NUM_COEFS

MAX_COUNTER = 2**32


def diffusion_step(
    x: Tensor,
    pred: Tensor,
    known: Tensor,
    mask: Tensor,
    coefs: Tensor,
    seeds: Tensor,
    step: int,
    *,
    x0_prev: Tensor | None = None,
    want_x0: bool = False,
    backend: str = "auto",
) -> tuple[Tensor, Tensor | None]:
    """One sampler step from ``x_t`` to ``x_s`` with the known region replaced by the re-noised clean image.

    Args:
        x: ``(B, C, H, W)`` float32 current state ``x_t``.
        pred: the network's output: ``(B, C, H, W)``, or ``(2B, C, H, W)`` for classifier-free guidance
            (conditional rows first, then unconditional).
        known: ``(B, C, H, W)`` float32 clean image (model space) whose noised version fills the known region.
        mask: ``(B, 1, H, W)`` float32: generate where ``> 0.5``, known region elsewhere.
        coefs: ``(B, NUM_COEFS)`` float32 per-sample step scalars (``anofast.diffusion.samplers`` builds them).
        seeds: ``(B,)`` int64 per-sample seeds; the noise is drawn on ``Stream.DIFFUSION`` at counters
            ``step * C*H*W + element``.
        step: index of this step in the run (0 for the initial noising), ``(step + 1) * C*H*W <= 2**32``.
        x0_prev: ``(B, C, H, W)`` previous x0 estimate (multistep solvers), or None.
        want_x0: also return this step's x0 estimate.
        backend: ``auto``, ``reference``, ``cpp`` (CPU) or ``triton`` (CUDA).

    Returns:
        ``(x_s, x0)``: ``(B, C, H, W)`` float32, and the x0 estimate (or None without ``want_x0``).

    Backends:
        ``reference``, ``cpp`` and ``triton`` agree bit for bit (no FMA, no in-kernel division or transcendentals).
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype != torch.float32:
        raise TypeError(f"x must be float32, got {x.dtype}")
    if x.dim() != 4:
        raise ValueError(f"x must have shape (B, C, H, W), got {tuple(x.shape)}")
    batch, channels, height, width = x.shape
    dev = x.device
    x = x.contiguous()
    if not isinstance(pred, Tensor):
        raise TypeError(f"pred must be a torch.Tensor, got {type(pred).__name__}")
    if pred.dim() != 4 or tuple(pred.shape[1:]) != (channels, height, width) or pred.shape[0] not in (batch, 2 * batch):
        raise ValueError(
            f"pred must have shape ({batch}, {channels}, {height}, {width}) or, with guidance, "
            f"({2 * batch}, {channels}, {height}, {width}); got {tuple(pred.shape)}"
        )
    pred = check_param(pred, "pred", torch.float32, tuple(pred.shape), dev, like="x")
    known = check_param(known, "known", torch.float32, (batch, channels, height, width), dev, like="x")
    mask = check_param(mask, "mask", torch.float32, (batch, 1, height, width), dev, like="x")
    coefs = check_param(coefs, "coefs", torch.float32, (batch, NUM_COEFS), dev, like="x")
    seeds_dev = seeds.device if isinstance(seeds, Tensor) else dev
    seeds = check_param(seeds, "seeds", torch.int64, (batch,), seeds_dev, like="x")
    seeds = seeds.to(dev)
    if x0_prev is not None:
        x0_prev = check_param(x0_prev, "x0_prev", torch.float32, (batch, channels, height, width), dev, like="x")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step must be an int >= 0, got {step!r}")
    numel = channels * height * width
    if (step + 1) * numel > MAX_COUNTER:
        raise ValueError(
            f"step {step} with {numel} elements per sample overflows the 32-bit noise counter "
            f"(need (step + 1) * C*H*W <= 2**32)"
        )
    return dispatch("diffusion_step", dev, backend)(x, pred, known, mask, coefs, seeds, step, x0_prev, bool(want_x0))


@register_impl("diffusion_step", "cpp")
def _load_cpp():
    from anofast._backend import cpp_module
    from anofast._rng import normal_table

    fn = cpp_module().diffusion_step_cpu

    def diffusion_step_cpp(x, pred, known, mask, coefs, seeds, step, x0_prev, want_x0):
        out = torch.empty_like(x)
        x0 = torch.empty_like(x) if want_x0 else None
        fn(
            x.numpy(),
            pred.numpy(),
            known.numpy(),
            mask.numpy(),
            coefs.numpy(),
            seeds.numpy(),
            step,
            None if x0_prev is None else x0_prev.numpy(),
            normal_table().numpy(),
            out.numpy(),
            None if x0 is None else x0.numpy(),
            num_threads(),
        )
        return out, x0

    return diffusion_step_cpp


@register_impl("diffusion_step", "triton")
def _load_triton():
    from anofast._kernels.diffusion_step import diffusion_step_triton

    return diffusion_step_triton
