"""Reference of ``procedural_texture``: seeded "describable textures" rendered from the counter RNG.

This module is the specification that ``csrc/procedural/procedural.h`` and ``kernels/procedural.py`` reproduce
bit for bit. Per sample the host gives a 32-bit stream key, ``iparams = (kind, octaves, spots, 0)`` (int32) and
``fparams`` (float32, layout below); every pixel ``(y, x)`` (``X``, ``Y`` its float32 coordinates) is then:

1. fractal value noise ``n = sum_o amp[o] * value(X * step[o], Y * step[o], o)``, ``o < octaves``: ``value`` is the
   bilinear blend (vertical first), with smoothstep weights ``s(t) = t t (3 - 2 t)``, of the lattice values
   ``L(i, j, o) = uniform(key, ((o * 4096 + (j & 4095)) * 4096 + (i & 4095)))`` at the four cell corners;
2. a pattern ``t`` by kind: 0 clouds ``n``; 1 marble ``tri^4 * 0.75 + n * 0.25``; 2 stripes
   ``tri * 0.75 + n * 0.25`` (``tri = |2 frac(z) - 1|``, ``z = X ax + Y ay + warp n``); 3 woven: a basket weave of
   three-thread bands, alternating direction by lattice-cell parity in the rotated frame, ``* 0.75 + n * 0.25``;
   4 cells: the squared distance to the nearest jittered feature point (jitter ``L(i, j, 6)``, ``L(i, j, 7)``) in the
   3 x 3 neighbouring cells, times ``cell_scale``, clamped to 1 (``1 - that`` for spots), ``* 0.75 + n * 0.25``;
   5 grain ``n`` (high frequency);
3. ``t = clamp((t - 0.5) * contrast + shift, 0, 1)``; colour = the two-segment ramp ``c0 -> c1 -> c2`` at ``t``;
4. plus luminance grain ``(uniform(key, 2^27 + y W + x) - 0.5) * grain``, rounded to uint8 (``floor(v + 0.5)``,
   clamped).

``fparams`` layout (``F_*`` constants): steps[0:6], amps[6:12], ax, ay, warp, contrast, shift, grain, cell_step,
cell_scale, c0[20:23], c1[23:26], c2[26:29]. Only ``*``, ``+``, ``-``, floor, abs, min and max are used: no
division or transcendental function, so every backend computes the same bits.
"""

from __future__ import annotations

import torch
from torch import Tensor

from anofast import _rng
from anofast.reference.texture import round_u8

KIND_NAMES = ("clouds", "marble", "stripes", "woven", "cells", "grain")
CLOUDS, MARBLE, STRIPES, WOVEN, CELLS, GRAIN = range(6)
MAX_OCTAVES = 6
F_STEPS, F_AMPS, F_AX, F_AY, F_WARP, F_CONTRAST, F_SHIFT = 0, 6, 12, 13, 14, 15, 16
F_GRAIN, F_CELL_STEP, F_CELL_SCALE = 17, 18, 19
F_C0, F_C1, F_C2 = 20, 23, 26
NUM_F = 32
PIXEL_COUNTER_BASE = 1 << 27  # lattice counters stay below this (octave slots 0..7)
JITTER_X, JITTER_Y = 6, 7  # lattice "octave" slots of the cell feature points


def _f32(v: float) -> Tensor:
    return torch.tensor(v, dtype=torch.float32)


def lattice(key: int, i: Tensor, j: Tensor, slot: int) -> Tensor:
    """float32 lattice values ``L(i, j, slot)`` of one sample's stream ``key``."""
    counter = (slot * 4096 + (j & 4095)) * 4096 + (i & 4095)
    return _rng.to_unit_float(_rng.bits(torch.tensor(key, dtype=torch.int64), counter))


def _smooth(t: Tensor) -> Tensor:
    return t * t * (3.0 - 2.0 * t)


def _value_noise(key: int, xs: Tensor, ys: Tensor, step: Tensor, octave: int) -> Tensor:
    u = xs * step  # (1, W)
    v = ys * step  # (H, 1)
    i, j = torch.floor(u).long(), torch.floor(v).long()
    fu, fv = u - torch.floor(u), v - torch.floor(v)
    # Lattice values on the needed corners only (exactly the per-pixel hashes the kernels compute).
    ii = torch.arange(int(i.max()) + 2)
    jj = torch.arange(int(j.max()) + 2)
    table = lattice(key, ii.view(1, -1), jj.view(-1, 1), octave)
    a, b = table[j, i], table[j, i + 1]
    c, d = table[j + 1, i], table[j + 1, i + 1]
    su, sv = _smooth(fu), _smooth(fv)
    left = a + sv * (c - a)  # vertical first: the C++ kernel then blends one lattice row per image row
    right = b + sv * (d - b)
    return left + su * (right - left)


def _frac(z: Tensor) -> Tensor:
    return z - torch.floor(z)


def _tri(z: Tensor) -> Tensor:
    return torch.abs(2.0 * _frac(z) - 1.0)


def _thread(w: Tensor) -> Tensor:
    return 1.0 - torch.abs(2.0 * _frac(3.0 * w) - 1.0)


def _cells(key: int, xs: Tensor, ys: Tensor, step: Tensor, scale: Tensor, spots: bool) -> Tensor:
    px, py = xs * step, ys * step
    ci, cj = torch.floor(px).long(), torch.floor(py).long()
    best = torch.full((ys.shape[0], xs.shape[1]), 8.0)
    for dj in (-1, 0, 1):
        for di in (-1, 0, 1):
            ii, jj = ci + di, cj + dj
            fx = ii.to(torch.float32) + lattice(key, ii, torch.zeros_like(ii) + jj, JITTER_X)
            fy = jj.to(torch.float32) + lattice(key, ii + torch.zeros_like(jj), jj, JITTER_Y)
            dx, dy = px - fx, py - fy
            best = torch.minimum(best, dx * dx + dy * dy)
    t = torch.minimum(best * scale, _f32(1.0))
    return 1.0 - t if spots else t


def procedural_texture_reference(keys: Tensor, iparams: Tensor, fparams: Tensor, height: int, width: int) -> Tensor:
    """``(B, 3, H, W)`` uint8 textures (see the module docstring).

    Args:
        keys: ``(B,)`` int64 holding each sample's uint32 stream key (``Stream.PROCEDURAL_PIXELS``).
        iparams: ``(B, 4)`` int32 ``(kind, octaves, spots, 0)``.
        fparams: ``(B, 32)`` float32, layout ``F_*``.
        height: image height.
        width: image width.
    """
    batch, device = keys.shape[0], keys.device
    out = torch.empty((batch, 3, height, width), dtype=torch.uint8)
    xs = torch.arange(width, dtype=torch.float32).view(1, width)
    ys = torch.arange(height, dtype=torch.float32).view(height, 1)
    pix = (torch.arange(height).view(height, 1) * width + torch.arange(width).view(1, width)) + PIXEL_COUNTER_BASE
    keys, iparams, fparams = keys.cpu(), iparams.cpu(), fparams.cpu()
    for b in range(batch):
        key = int(keys[b])
        kind, octaves, spots = (int(v) for v in iparams[b, :3])
        f = fparams[b]
        n = torch.zeros(height, width)
        for o in range(octaves):
            n = n + f[F_AMPS + o] * _value_noise(key, xs, ys, f[F_STEPS + o], o)
        if kind in (MARBLE, STRIPES):
            tri = _tri((xs * f[F_AX] + ys * f[F_AY]) + f[F_WARP] * n)
            t = (tri * tri) * (tri * tri) if kind == MARBLE else tri
            t = t * 0.75 + n * 0.25
        elif kind == WOVEN:
            z1 = (xs * f[F_AX] + ys * f[F_AY]) + f[F_WARP] * n
            z2 = (ys * f[F_AX] - xs * f[F_AY]) + f[F_WARP] * n
            odd = ((torch.floor(z1).long() + torch.floor(z2).long()) & 1) == 1
            t = torch.where(odd, _thread(_frac(z1)), _thread(_frac(z2))) * 0.75 + n * 0.25
        elif kind == CELLS:
            t = _cells(key, xs, ys, f[F_CELL_STEP], f[F_CELL_SCALE], bool(spots)) * 0.75 + n * 0.25
        else:  # clouds, grain
            t = n
        t = ((t - 0.5) * f[F_CONTRAST] + f[F_SHIFT]).clamp(0.0, 1.0)
        w = t * 2.0
        grain = (_rng.to_unit_float(_rng.bits(torch.tensor(key), pix)) - 0.5) * f[F_GRAIN]
        for c in range(3):
            c0, c1, c2 = f[F_C0 + c], f[F_C1 + c], f[F_C2 + c]
            col = torch.where(w < 1.0, c0 + w * (c1 - c0), c1 + (w - 1.0) * (c2 - c1))
            out[b, c] = round_u8(col + grain)
    return out.to(device)
