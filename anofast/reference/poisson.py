"""Reference of the ``poisson_blend`` op: batched Poisson image editing (Pérez et al. 2003) with a fixed-schedule
multigrid solver, the spec that ``csrc/poisson/poisson_cpu.cpp`` and ``kernels/poisson.py`` follow operation by
operation.

One patch per sample ``b``: the source rectangle ``src_box[b] = (sy, sx, sh, sw)`` of image ``source[src_index[b]]``
is resampled bilinearly to ``h x w`` (half-pixel centres, as OpenCV's ``INTER_LINEAR`` without its fixed-point
weights; ``scale = (sh / h, sw / w)`` comes from the host)::

    fy = max((i + 0.5) * scale_y - 0.5, 0);  iy = min(int(fy), sh - 1);  wy = fy - iy;  iy1 = min(iy + 1, sh - 1)
    (the same for x)   top = p00 + (p01 - p00) * wx;  bottom = p10 + (p11 - p10) * wx;  s = top + (bottom - top) * wy

and cloned into ``images[b]`` at ``box[b] = (y0, x0, h, w)``. The domain ``Omega`` is ``region`` (destination space)
inside the box minus the box border (so the border pixels are the Dirichlet boundary). For each channel, on ``p`` in
``Omega``::

    4 f_p - sum_{q in N4(p)} f_q = sum_{q in N4(p)} v_pq        f_q = dest_q for q outside Omega
    v_pq = s_p - s_q                                            mode 0: normal clone
    v_pq = s_p - s_q if |s_p - s_q| > |d_p - d_q| else d_p - d_q  mode 1: mixed gradients (per edge, per channel)

Solver (fixed schedule, no data-dependent stopping, no reductions): ``cycles`` V-cycles of a cell-centred multigrid.
Level ``l + 1`` halves level ``l`` (``ceil``); a coarse cell is active iff all of its 2x2 children are. On each level
red-black Gauss-Seidel, red = ``(i + j) even`` first::

    x_p <- (b_p + ((x_up + x_down) + (x_left + x_right))) * 0.25
    residual r_p = (b_p + ((x_up + x_down) + (x_left + x_right))) - 4 * x_p    (0 outside the level's domain)
    coarse rhs = (r[2I, 2J] + r[2I, 2J+1]) + (r[2I+1, 2J] + r[2I+1, 2J+1]);   coarse error starts at 0
    prolongation: x_p <- x_p + e[i // 2, j // 2] on active fine cells (piecewise constant)

with ``PRE`` sweeps before and ``POST`` after the coarse correction and ``COARSE`` sweeps on the coarsest level.
A patch's levels depend on its own size only (``levels(h, w)``: halved while the coarser level keeps
``min(size) >= 3``), so its result never depends on the other patches of the batch; a level whose domain is empty is a
no-op. The start value on ``Omega`` is the source. Only exactly rounded ``+ - *`` in this order, so every backend
gives the same bits.

Then, per pixel of ``Omega``: ``o = clamp(x, 0, 1)``; the pixel is a candidate where
``sum_c |o_c - d_c| > tol_sum`` (channels summed left to right); a 5x5 majority vote of candidates (>= 13 of 25,
zero outside the patch: NSA's median filter of its binary label) picks the pixels written: ``out = o`` there, the
destination elsewhere. Finally ``mask`` is rewritten over the whole box as ``any_c(out != original)``, so a mask
updated after every patch is exactly the set of changed pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from anofast._dispatch import register_impl
from anofast._validate import unit_float

PRE = 2  # smoothing sweeps before the coarse correction
POST = 2  # and after it
COARSE = 16  # sweeps on the coarsest level
MAJORITY = 13  # of the 5x5 window: the median of a binary map


def levels(h: int, w: int) -> list[tuple[int, int]]:
    """Level sizes of an ``h x w`` patch: halved (ceil) while the coarser level is at least 3 x 3."""
    dims = [(h, w)]
    while min(dims[-1]) >= 6:
        a, b = dims[-1]
        dims.append(((a + 1) // 2, (b + 1) // 2))
    return dims


def num_levels(h: Tensor, w: Tensor) -> Tensor:
    """``len(levels(h, w))`` for ``(N,)`` int tensors."""
    n = torch.ones_like(h)
    h, w = h.clone(), w.clone()
    while bool(((h >= 6) & (w >= 6)).any()):
        grow = (h >= 6) & (w >= 6)
        n = n + grow.to(n.dtype)
        h = torch.where(grow, (h + 1) // 2, h)
        w = torch.where(grow, (w + 1) // 2, w)
    return n


def level_masks(region: Tensor, box: Tensor) -> list[Tensor]:
    """``(N, Hl, Wl)`` bool domains per level of a ``(N, Hp, Wp)`` canvas: level 0 is ``region`` inside the patch
    minus its border, a coarse cell is active iff its 2x2 children are, and levels beyond a patch's own are empty."""
    n, hp, wp = region.shape
    dev = region.device
    h = box[:, 2].to(torch.int64)
    w = box[:, 3].to(torch.int64)
    i = torch.arange(hp, device=dev).view(1, hp, 1)
    j = torch.arange(wp, device=dev).view(1, 1, wp)
    hv, wv = h.view(n, 1, 1), w.view(n, 1, 1)
    out = [region & (i >= 1) & (i <= hv - 2) & (j >= 1) & (j <= wv - 2)]
    own = num_levels(h, w).view(n, 1, 1)
    hl, wl = hp, wp
    for level in range(1, len(levels(hp, wp))):
        hl, wl = (hl + 1) // 2, (wl + 1) // 2
        p = F.pad(out[-1], (0, 2 * wl - out[-1].shape[2], 0, 2 * hl - out[-1].shape[1]))
        m = p[:, 0::2, 0::2] & p[:, 0::2, 1::2] & p[:, 1::2, 0::2] & p[:, 1::2, 1::2]
        out.append(m & (own > level))
    return out


def _nsum(x: Tensor) -> Tensor:
    """``(x_up + x_down) + (x_left + x_right)`` with zeros beyond the array."""
    p = F.pad(x, (1, 1, 1, 1))
    return (p[..., :-2, 1:-1] + p[..., 2:, 1:-1]) + (p[..., 1:-1, :-2] + p[..., 1:-1, 2:])


def _smooth(x: Tensor, b: Tensor, m: Tensor, parity: list[Tensor], sweeps: int) -> Tensor:
    for _ in range(sweeps):
        for colour in parity:
            x = torch.where(m & colour, (b + _nsum(x)) * 0.25, x)
    return x


def _parity(shape: tuple[int, int], device: torch.device) -> list[Tensor]:
    i = torch.arange(shape[0], device=device).view(-1, 1)
    j = torch.arange(shape[1], device=device).view(1, -1)
    red = (i + j) % 2 == 0
    return [red, ~red]


def _vcycle(x: Tensor, b: Tensor, masks: list[Tensor], own: Tensor, level: int) -> Tensor:
    """One V-cycle from ``level`` down; ``own`` (N, 1, 1) is each patch's level count."""
    m = masks[level]
    parity = _parity(tuple(x.shape[-2:]), x.device)
    last = own == level + 1  # patches whose coarsest level this is
    x = _smooth(x, b, m & last, parity, COARSE)
    if level == len(masks) - 1:
        return x
    mf = m & ~last
    x = _smooth(x, b, mf, parity, PRE)
    r = torch.where(mf, (b + _nsum(x)) - 4.0 * x, 0.0)
    hc, wc = masks[level + 1].shape[-2:]
    r = F.pad(r, (0, 2 * wc - r.shape[-1], 0, 2 * hc - r.shape[-2]))
    rc = (r[..., 0::2, 0::2] + r[..., 0::2, 1::2]) + (r[..., 1::2, 0::2] + r[..., 1::2, 1::2])
    e = _vcycle(torch.zeros_like(rc), rc, masks, own, level + 1)
    up = e.repeat_interleave(2, -2).repeat_interleave(2, -1)[..., : x.shape[-2], : x.shape[-1]]
    x = torch.where(mf, x + up, x)
    return _smooth(x, b, mf, parity, POST)


def _canvas_index(box: Tensor, hp: int, wp: int, height: int, width: int) -> tuple[Tensor, Tensor, Tensor]:
    """Rows, columns (clamped into the image) of each ``(hp, wp)`` canvas cell, and whether it is inside the box."""
    n = box.shape[0]
    dev = box.device
    i = torch.arange(hp, device=dev).view(1, hp, 1)
    j = torch.arange(wp, device=dev).view(1, 1, wp)
    inside = (i < box[:, 2].view(n, 1, 1)) & (j < box[:, 3].view(n, 1, 1))
    rows = (box[:, 0].to(torch.int64).view(n, 1, 1) + i).clamp(0, height - 1).expand(n, hp, wp)
    cols = (box[:, 1].to(torch.int64).view(n, 1, 1) + j).clamp(0, width - 1).expand(n, hp, wp)
    return rows, cols, inside


def resample(source: Tensor, src_index: Tensor, src_box: Tensor, scale: Tensor, hp: int, wp: int) -> Tensor:
    """``(B, C, hp, wp)``: each source rectangle resampled bilinearly to its patch size (see the module docstring)."""
    n = src_box.shape[0]
    dev = source.device
    hs, ws = source.shape[2:]

    def axis(count: int, start: Tensor, size: Tensor, s: Tensor, limit: int) -> tuple[Tensor, Tensor, Tensor]:
        f = (torch.arange(count, device=dev, dtype=torch.float32).view(1, -1) + 0.5) * s.view(n, 1) - 0.5
        f = torch.where(f > 0, f, 0.0)
        top = (size.to(torch.int64) - 1).clamp(min=0).view(n, 1)
        i0 = torch.minimum(f.to(torch.int64), top)
        wgt = f - i0.to(torch.float32)
        i1 = torch.minimum(i0 + 1, top)
        base = start.to(torch.int64).view(n, 1)
        return (base + i0).clamp(0, limit - 1), (base + i1).clamp(0, limit - 1), wgt

    y0, y1, wy = axis(hp, src_box[:, 0], src_box[:, 2], scale[:, 0], hs)
    x0, x1, wx = axis(wp, src_box[:, 1], src_box[:, 3], scale[:, 1], ws)
    k = src_index.to(torch.int64).view(n, 1, 1)

    def at(r: Tensor, c: Tensor) -> Tensor:
        return source[k, :, r.view(n, hp, 1), c.view(n, 1, wp)].permute(0, 3, 1, 2)  # (n, C, hp, wp)

    wx4, wy4 = wx.view(n, 1, 1, wp), wy.view(n, 1, hp, 1)
    p00, p01 = at(y0, x0), at(y0, x1)
    p10, p11 = at(y1, x0), at(y1, x1)
    top = p00 + (p01 - p00) * wx4
    bottom = p10 + (p11 - p10) * wx4
    return top + (bottom - top) * wy4


def guidance(src: Tensor, dest: Tensor, mode: Tensor) -> Tensor:
    """``b_p = (v_up + v_down) + (v_left + v_right)`` of the guidance field (normal or mixed per patch)."""

    def edge(a: Tensor, shift: tuple[int, int]) -> Tensor:
        return a - torch.roll(a, shift, dims=(-2, -1))  # p - q; wrap-around only reaches border cells (unused)

    mixed = (mode != 0).view(-1, 1, 1, 1)
    out = []
    for shift in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        s, d = edge(src, shift), edge(dest, shift)
        out.append(torch.where(mixed & ~(s.abs() > d.abs()), d, s))
    return (out[0] + out[1]) + (out[2] + out[3])


def poisson_blend_reference(
    out: Tensor, init: Tensor | None, original: Tensor, mask: Tensor, diff: Tensor | None, source: Tensor,
    src_index: Tensor, src_box: Tensor, scale: Tensor, box: Tensor, mode: Tensor, region: Tensor | None,
    tol_sum: float, cycles: int,
) -> None:
    """Blends in place: ``out`` (B, C, H, W) float32 is the destination (first set to ``unit_float(init)`` when the
    uint8 ``init`` is given) and receives the result; ``mask``
    (B, 1, H, W) float32 is rewritten over each box as ``any_c(out != original)``, and ``diff`` (optional, the same
    shape) as ``sum_c |out - original|`` in channel order.

    ``original`` and ``source`` (N, C, Hs, Ws) are float32, or uint8 read as ``float32(v) * float32(1 / 255)``;
    ``src_index`` (B,) int32, ``src_box`` (B, K, 4) int32 ``(sy, sx, sh, sw)``,
    ``scale`` (B, K, 2) float32 ``(sh / h, sw / w)``, ``box`` (B, K, 4) int32 ``(y0, x0, h, w)``: K rounds, one after
    the other; ``mode`` (B,) int32 (0 normal, 1 mixed), ``region`` (B, 1, H, W) uint8 (destination space),
    ``tol_sum`` a float32 value (the change threshold summed over channels), ``cycles`` V-cycles. Arguments are
    checked by the caller.
    """
    if init is not None:
        out.copy_(unit_float(init))
    if source.dtype == torch.uint8:
        source = unit_float(source)
    if original.dtype == torch.uint8:
        original = unit_float(original)
    for k in range(box.shape[1]):
        _blend_round(out, original, mask, diff, source, src_index, src_box[:, k], scale[:, k], box[:, k], mode, region,
                     tol_sum, cycles)


def _blend_round(
    out: Tensor, original: Tensor, mask: Tensor, diff: Tensor | None, source: Tensor, src_index: Tensor,
    src_box: Tensor, scale: Tensor, box: Tensor, mode: Tensor, region: Tensor | None, tol_sum: float, cycles: int,
) -> None:
    """One round of :func:`poisson_blend_reference`: ``src_box`` (B, 4), ``scale`` (B, 2), ``box`` (B, 4); ``source``
    and ``original`` float32."""
    batch, channels, height, width = out.shape
    if batch == 0 or int(box[:, 2].max()) == 0:
        return
    hp, wp = int(box[:, 2].max()), int(box[:, 3].max())
    rows, cols, inside = _canvas_index(box, hp, wp, height, width)
    bi = torch.arange(batch, device=out.device).view(batch, 1, 1).expand(batch, hp, wp)
    dest = out[bi, :, rows, cols].permute(0, 3, 1, 2)  # (B, C, hp, wp)
    src = resample(source, src_index, src_box, scale, hp, wp)
    allowed = inside if region is None else (region[bi, 0, rows, cols] != 0) & inside
    masks = level_masks(allowed, box)
    own = num_levels(box[:, 2].to(torch.int64), box[:, 3].to(torch.int64))
    m0 = masks[0].unsqueeze(1)
    b = torch.where(m0, guidance(src, dest, mode), 0.0).reshape(batch * channels, hp, wp)
    x = torch.where(m0, src, dest).reshape(batch * channels, hp, wp)
    flat = [mk.repeat_interleave(channels, 0) for mk in masks]
    own = own.repeat_interleave(channels, 0).view(-1, 1, 1)
    for _ in range(cycles):
        x = _vcycle(x, b, flat, own, 0)
    o = x.view(batch, channels, hp, wp)
    o = torch.where(o > 0, o, 0.0)
    o = torch.where(o < 1, o, 1.0)
    step = (o - dest).abs()
    total = step[:, 0]
    for c in range(1, channels):
        total = total + step[:, c]
    cand = (masks[0] & (total > tol_sum)).to(torch.float32).unsqueeze(1)
    votes = F.conv2d(F.pad(cand, (2, 2, 2, 2)), torch.ones(1, 1, 5, 5, device=cand.device))
    sel = masks[0] & (votes[:, 0] >= MAJORITY)
    blended = torch.where(sel.unsqueeze(1), o, dest)
    bi, r, c = bi[inside], rows[inside], cols[inside]
    vals = blended.permute(0, 2, 3, 1)[inside]  # (n, C)
    out[bi, :, r, c] = vals
    before = original[bi, :, r, c]
    mask[bi, 0, r, c] = (vals != before).any(dim=1).to(mask.dtype)
    if diff is not None:
        change = (vals - before).abs()
        total = change[:, 0]
        for ch in range(1, channels):
            total = total + change[:, ch]
        diff[bi, 0, r, c] = total


@register_impl("poisson_blend", "reference")
def _load_reference():
    return poisson_blend_reference
