"""Procedural anomaly-source textures: the built-in source when the user gives no texture images.

``procedural_texture(seeds, H, W)`` renders one texture per seed from a family of "describable textures": clouds
(fractal value noise), marble (warped veins), stripes, woven (basket weave), cells / spots (Worley-like), and grain,
each with its own frequency, octave count, orientation, contrast, grain and a two- or three-colour palette. The
per-sample scalars are drawn with ``rng_uniform`` on ``Stream.PROCEDURAL`` (uniform ``u[i]``, counters below); the
pixels hash the sample's ``Stream.PROCEDURAL_PIXELS`` key in the kernel. The rendering is specified in
:mod:`anofast.reference.procedural`; every backend produces the same bytes.

Counters of ``Stream.PROCEDURAL``: 0 kind, 1 base frequency, 2 octaves, 3 persistence, 4 contrast, 5 angle,
6 periods, 7 warp, 8 grain, 9 cells per side, 10 cell scale, 11 spots, 12 bias, 13 hue, 14 hue spread,
15 saturation, 16 grey, 17 dark value, 18 light value, 19 middle value, 20 two-colour palette.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
from torch import Tensor

from anofast import _rng
from anofast._dispatch import dispatch, num_threads, register_impl
from anofast._rng import Stream
from anofast._validate import check_tensor
from anofast.ops.rng import rng_uniform
from anofast.reference.procedural import (
    CELLS,
    F_AMPS,
    F_AX,
    F_AY,
    F_C0,
    F_C1,
    F_C2,
    F_CELL_SCALE,
    F_CELL_STEP,
    F_CONTRAST,
    F_GRAIN,
    F_SHIFT,
    F_STEPS,
    F_WARP,
    KIND_NAMES,
    MAX_OCTAVES,
    NUM_F,
    WOVEN,
)

__all__ = ["KIND_NAMES", "ProceduralParams", "procedural_texture", "sample_procedural_params"]

NUM_UNIFORMS = 21

# Per kind: base frequency (lattice cells across the longer side), octaves, pattern periods across the longer side,
# warp, grain amplitude (uint8 units), contrast.
_KIND_RANGES = {
    "clouds": ((2.0, 8.0), (3, 6), (0.0, 0.0), (0.0, 0.0), (0.0, 10.0), (0.9, 1.8)),
    "marble": ((1.5, 4.0), (3, 5), (1.5, 6.0), (1.0, 3.0), (0.0, 8.0), (0.9, 1.6)),
    "stripes": ((1.5, 4.0), (2, 4), (4.0, 24.0), (0.0, 0.8), (0.0, 10.0), (1.0, 2.2)),
    "woven": ((2.0, 6.0), (1, 3), (6.0, 20.0), (0.0, 0.3), (0.0, 8.0), (1.0, 2.0)),
    "cells": ((2.0, 6.0), (2, 4), (0.0, 0.0), (0.0, 0.0), (0.0, 10.0), (1.0, 2.0)),
    "grain": ((6.0, 16.0), (2, 3), (0.0, 0.0), (0.0, 0.0), (25.0, 55.0), (0.6, 1.2)),
}


@dataclass(frozen=True)
class ProceduralParams:
    """Per-sample procedural texture parameters (see :mod:`anofast.reference.procedural` for the layout).

    Attributes:
        keys: ``(B,)`` int64 uint32 stream keys of the in-kernel hashing (``Stream.PROCEDURAL_PIXELS``).
        iparams: ``(B, 4)`` int32 ``(kind, octaves, spots, 0)``.
        fparams: ``(B, 32)`` float32 frequencies, amplitudes, pattern, contrast, grain and palette.
    """

    keys: Tensor
    iparams: Tensor
    fparams: Tensor

    def to(self, device: torch.device | str) -> ProceduralParams:
        """A copy with every tensor on ``device``."""
        return ProceduralParams(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    @property
    def kinds(self) -> list[str]:
        """The texture kind of each sample."""
        return [KIND_NAMES[k] for k in self.iparams[:, 0].tolist()]


def _span(u: Tensor, lo: float, hi: float) -> Tensor:
    return lo + u * (hi - lo)


def _hsv_to_rgb(h: Tensor, s: Tensor, v: Tensor) -> Tensor:
    """``(N, 3)`` RGB in [0, 255] (float64) from hue in turns, saturation and value in [0, 1]."""
    k = torch.stack([(5.0 + h * 6.0) % 6.0, (3.0 + h * 6.0) % 6.0, (1.0 + h * 6.0) % 6.0], dim=1)
    a = torch.minimum(k, 4.0 - k).clamp(0.0, 1.0)
    return 255.0 * (v.view(-1, 1) - v.view(-1, 1) * s.view(-1, 1) * a)


def sample_procedural_params(seeds: Tensor, height: int, width: int, *, backend: str = "auto") -> ProceduralParams:
    """Draws the parameters of ``procedural_texture`` from the seeds only (sample ``i`` = ``seeds[i:i+1]``).

    Args:
        seeds: ``(B,)`` int64 per-sample seeds.
        height: image height (frequencies are set per pixel of the longer side).
        width: image width.
        backend: backend of the ``rng_uniform`` draws (all agree bit for bit).

    Returns:
        :class:`ProceduralParams` on the CPU.
    """
    seeds = check_tensor(seeds, "seeds")
    if seeds.dtype != torch.int64 or seeds.dim() != 1:
        raise TypeError(f"seeds must be a (B,) int64 tensor, got {seeds.dtype} of shape {tuple(seeds.shape)}")
    u = rng_uniform(seeds, Stream.PROCEDURAL, NUM_UNIFORMS, backend=backend).cpu().to(torch.float64)
    seeds = seeds.cpu()
    batch = seeds.shape[0]
    kind = torch.floor(u[:, 0] * len(KIND_NAMES)).clamp(max=len(KIND_NAMES) - 1).long()
    ranges = torch.tensor(
        [[*r[0], *r[1], *r[2], *r[3], *r[4], *r[5]] for r in (_KIND_RANGES[k] for k in KIND_NAMES)],
        dtype=torch.float64,
    )[kind]  # (B, 12): per-kind lo/hi pairs
    longest = float(max(height, width, 1))
    f0 = _span(u[:, 1], ranges[:, 0], ranges[:, 1])
    octaves = (ranges[:, 2] + torch.floor(u[:, 2] * (ranges[:, 3] - ranges[:, 2] + 1))).clamp(max=ranges[:, 3])
    # No octave finer than 8-pixel cells: finer value noise looks like blocks, not texture (grain does the fine detail).
    finest = torch.floor(torch.log2(torch.clamp(longest / (8.0 * f0), min=1.0))) + 1
    octaves = torch.minimum(octaves, finest).long()
    persistence = _span(u[:, 3], 0.4, 0.65)
    o = torch.arange(MAX_OCTAVES, dtype=torch.float64)
    amps = persistence.view(-1, 1) ** o * (o < octaves.view(-1, 1))
    amps = amps / amps.sum(dim=1, keepdim=True)
    steps = f0.view(-1, 1) * 2.0**o / longest
    theta = u[:, 5] * math.pi
    # Periods per pixel, capped so that small images keep stripes of >= 12 px and woven threads of >= 8 px.
    cap = torch.where(kind == WOVEN, 1.0 / 24.0, 1.0 / 12.0).to(torch.float64)
    periods = torch.minimum(_span(u[:, 6], ranges[:, 4], ranges[:, 5]) / longest, cap)
    fp = torch.zeros(batch, NUM_F, dtype=torch.float64)
    fp[:, F_STEPS : F_STEPS + MAX_OCTAVES] = steps
    fp[:, F_AMPS : F_AMPS + MAX_OCTAVES] = amps
    fp[:, F_AX] = torch.cos(theta) * periods
    fp[:, F_AY] = torch.sin(theta) * periods
    fp[:, F_WARP] = _span(u[:, 7], ranges[:, 6], ranges[:, 7])
    fp[:, F_GRAIN] = _span(u[:, 8], ranges[:, 8], ranges[:, 9])
    fp[:, F_CONTRAST] = _span(u[:, 4], ranges[:, 10], ranges[:, 11])
    fp[:, F_SHIFT] = 0.5 + _span(u[:, 12], -0.1, 0.1)
    fp[:, F_CELL_STEP] = _span(u[:, 9], 4.0, 14.0) / longest
    fp[:, F_CELL_SCALE] = _span(u[:, 10], 1.0, 2.5)
    spots = (u[:, 11] < 0.5) & (kind == CELLS)
    # Palette: dark, middle and light colours around one hue (near grey one time in five).
    hue, spread = u[:, 13], _span(u[:, 14], -0.1, 0.1)
    sat = _span(u[:, 15], 0.05, 0.7) * torch.where(u[:, 16] < 0.2, 0.15, 1.0)
    dark, light = _span(u[:, 17], 0.05, 0.45), _span(u[:, 18], 0.6, 1.0)
    c0 = _hsv_to_rgb(hue % 1.0, sat, dark)
    c2 = _hsv_to_rgb((hue + 2.0 * spread) % 1.0, sat * 0.8, light)
    c1 = _hsv_to_rgb((hue + spread) % 1.0, sat, dark + _span(u[:, 19], 0.3, 0.7) * (light - dark))
    c1 = torch.where((u[:, 20] < 0.4).view(-1, 1), (c0 + c2) * 0.5, c1)  # a two-colour palette
    fp[:, F_C0 : F_C0 + 3], fp[:, F_C1 : F_C1 + 3], fp[:, F_C2 : F_C2 + 3] = c0, c1, c2
    iparams = torch.zeros(batch, 4, dtype=torch.int32)
    iparams[:, 0], iparams[:, 1], iparams[:, 2] = kind.int(), octaves.int(), spots.int()
    keys = _rng.stream_key(_rng.sample_key(seeds), Stream.PROCEDURAL_PIXELS)
    return ProceduralParams(keys=keys, iparams=iparams, fparams=fp.to(torch.float32))


def procedural_texture(seeds: Tensor, height: int, width: int, *, backend: str = "auto") -> Tensor:
    """Renders one seeded procedural texture per sample.

    Args:
        seeds: ``(B,)`` int64 per-sample seeds (the output's device is theirs).
        height: image height (>= 1).
        width: image width (>= 1); ``height * width <= 2**30``.
        backend: ``auto``, ``reference``, ``cpp`` or ``triton``.

    Returns:
        ``(B, 3, H, W)`` uint8 textures, identical on every backend.

    Example:
        >>> procedural_texture(torch.tensor([1, 2]), 8, 8).shape
        torch.Size([2, 3, 8, 8])
    """
    for name, v in (("height", height), ("width", width)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if height * width > 2**30:
        raise ValueError(f"height * width must be <= 2**30 (pixel counters), got {height}x{width}")
    p = sample_procedural_params(seeds, height, width, backend=backend).to(seeds.device)
    render = dispatch("procedural_texture", seeds.device, backend)
    return render(p.keys, p.iparams, p.fparams, height, width)


@register_impl("procedural_texture", "reference")
def _load_reference():
    from anofast.reference.procedural import procedural_texture_reference

    return procedural_texture_reference


@register_impl("procedural_texture", "cpp")
def _load_cpp():
    from anofast._backend import cpp_module

    fn = cpp_module().procedural_texture_cpu

    def procedural_texture_cpp(keys: Tensor, iparams: Tensor, fparams: Tensor, height: int, width: int) -> Tensor:
        out = torch.empty((keys.shape[0], 3, height, width), dtype=torch.uint8)
        fn(keys.numpy(), iparams.numpy(), fparams.numpy(), out.numpy(), num_threads())
        return out

    return procedural_texture_cpp


@register_impl("procedural_texture", "triton")
def _load_triton():
    from anofast._kernels.procedural import procedural_texture_triton

    return procedural_texture_triton
