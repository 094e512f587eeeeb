"""Reference of the texture-augmentation kernels: a chain of augmentation stages, and per-channel histograms.

This module is the specification that ``csrc/texture/texture.h`` and ``kernels/texture.py`` reproduce bit for
bit. Images are ``(B, 3, H, W)`` uint8 (planar RGB). Every float expression is written in the exact order the
kernels evaluate it (float32, no fused multiply-add), and every float -> uint8 conversion is :func:`round_u8`.

Stage modes (per sample; ``fparams`` is ``(B, 4)`` float32, ``lut`` is ``(B, 3, 256)`` uint8):

======  ==========  ====================================================================================
id      name        output (channels c = R, G, B; ``Y = 0.299 R + 0.587 G + 0.114 B`` evaluated left to right)
======  ==========  ====================================================================================
0       IDENTITY    ``src``
1       LUT         ``lut[b, c, src_c]``
2       BRIGHTNESS  ``round(src_c + (Y * fparams[0] + fparams[1]))``: add ``Y * (mul - 1) + add`` to every channel
3       HUESAT      HSV round trip: hue + ``fparams[0]`` (sextants, in [0, 6)), ``S * fparams[1] + fparams[2]``
                    clamped to [0, 1]; back with ``v - v S clamp(min(k, 4 - k), 0, 1)``, ``k = (hue + n) mod 6``,
                    ``n`` = 5, 3, 1 for R, G, B; reciprocals from :func:`reciprocal_table`, never a division
4       SHARPNESS   PIL ``ImageEnhance.Sharpness``: ``deg = (2 S + 13) // 26`` (``S / 13`` rounded half up, exact
                    integers), ``S`` the 3x3 sum with weights ``[[1,1,1],[1,5,1],[1,1,1]]`` (image-border pixels keep
                    ``src``), then ``round(deg + fparams[0] * (src - deg))``
5       AFFINE      bilinear sample of ``src`` at ``M (p - c) + c``, ``M = [[f0, f1], [f2, f3]]`` (x, y order),
                    ``c = ((W - 1) / 2, (H - 1) / 2)``; pixels outside the image read as 0
6       GRAYSCALE   ``round(Y)`` in all three channels
======  ==========  ====================================================================================

A call applies a chain of ``K`` stages per sample (``mode`` is ``(B, K)``), rounding to uint8 after each stage, so
the bytes equal ``K`` single-stage passes. A chain holds at most one stage that reads neighbours (SHARPNESS,
AFFINE), and only tables (LUT, IDENTITY) before it: the kernels apply those tables to the bytes it reads and carry
each pixel through the pointwise stages after it in registers, so the whole chain is one pass. Only pixels inside each sample's
``box = (y0, x0, y1, x1)`` (exclusive ends), and optionally only those where a ``where`` mask is set, are written;
the rest of ``out`` is left as it was.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

IDENTITY, LUT, BRIGHTNESS, HUESAT, SHARPNESS, AFFINE, GRAYSCALE = range(7)
MODE_NAMES = ("identity", "lut", "brightness", "huesat", "sharpness", "affine", "grayscale")

# Kinds of image-dependent tables (``texture_hist_lut``); the parameter is the cutoff % or the contrast factor.
HIST_NONE, HIST_AUTOCONTRAST, HIST_EQUALIZE, HIST_CONTRAST = range(4)

# Luma weights (ITU-R BT.601, as PIL's "L" conversion), float32 as the kernels hold them.
_W_R, _W_G, _W_B = (torch.tensor(w, dtype=torch.float32) for w in (0.299, 0.587, 0.114))


@functools.cache
def _reciprocal_table(device: str) -> Tensor:
    i = torch.arange(256, dtype=torch.float32)
    table = torch.ones(256, dtype=torch.float32) / i  # float32 division on the CPU, correctly rounded
    table[0] = 0.0  # 1/0 never matters: it multiplies a zero (grey pixels, black pixels)
    return table.to(device)


def reciprocal_table(device: torch.device | str = "cpu") -> Tensor:
    """``(256,)`` float32 with ``1 / i`` (``0`` at ``i = 0``): the kernels multiply by it instead of dividing.

    Cached per device; do not modify the returned tensor.
    """
    return _reciprocal_table(str(torch.device(device)))


def round_u8(x: Tensor) -> Tensor:
    """float -> uint8 as every anofast kernel does it: ``floor(x + 0.5)`` clamped to [0, 255]."""
    return torch.floor(x + 0.5).clamp_(0.0, 255.0).to(torch.uint8)


def luma(r: Tensor, g: Tensor, b: Tensor) -> Tensor:
    """``0.299 r + 0.587 g + 0.114 b`` in float32, summed left to right."""
    return r * _W_R + g * _W_G + b * _W_B


def _col(p: Tensor, k: int) -> Tensor:
    return p[:, k].view(-1, 1, 1)


def _lut(s: Tensor, p: Tensor, lut: Tensor, rec: Tensor) -> Tensor:
    n, c, h, w = s.shape
    return torch.gather(lut.long(), 2, s.reshape(n, c, h * w).long()).view(n, c, h, w).to(torch.uint8)


def _brightness(s: Tensor, p: Tensor, lut: Tensor, rec: Tensor) -> Tensor:
    f = s.to(torch.float32)
    delta = luma(f[:, 0], f[:, 1], f[:, 2]) * _col(p, 0) + _col(p, 1)
    return round_u8(f + delta.unsqueeze(1))


def _grayscale(s: Tensor, p: Tensor, lut: Tensor, rec: Tensor) -> Tensor:
    f = s.to(torch.float32)
    return round_u8(luma(f[:, 0], f[:, 1], f[:, 2])).unsqueeze(1).expand(-1, 3, -1, -1)


def _huesat(s: Tensor, p: Tensor, lut: Tensor, rec: Tensor) -> Tensor:
    si = s.long()
    r, g, b = si[:, 0], si[:, 1], si[:, 2]
    mx = torch.maximum(torch.maximum(r, g), b)
    d = mx - torch.minimum(torch.minimum(r, g), b)
    rd = rec[d]
    # RGB -> HSV, hue in sextants [-1, 5]; ties resolve in the order R, G, B.
    hue = torch.where(
        mx == r,
        (g - b).to(torch.float32) * rd,
        torch.where(mx == g, (b - r).to(torch.float32) * rd + 2.0, (r - g).to(torch.float32) * rd + 4.0),
    )
    hue = hue + _col(p, 0)
    hue = torch.where(hue >= 6.0, hue - 6.0, hue)
    hue = torch.where(hue < 0.0, hue + 6.0, hue)
    sat = (d.to(torch.float32) * rec[mx] * _col(p, 1) + _col(p, 2)).clamp(0.0, 1.0)
    v = mx.to(torch.float32)
    vs = v * sat
    out = []
    for n in (5.0, 3.0, 1.0):  # HSV -> RGB: v - v s clamp(min(k, 4 - k), 0, 1), k = (hue + n) mod 6
        k = hue + n
        k = torch.where(k >= 6.0, k - 6.0, k)
        out.append(round_u8(v - vs * torch.minimum(k, 4.0 - k).clamp(0.0, 1.0)))
    return torch.stack(out, dim=1)


def _sharpness(s: Tensor, p: Tensor, lut: Tensor, rec: Tensor) -> Tensor:
    h, w = s.shape[2:]
    deg = s.clone()
    if h >= 3 and w >= 3:
        si = s.to(torch.int32)
        total = 4 * si[:, :, 1:-1, 1:-1]
        for dy in range(3):
            for dx in range(3):
                total = total + si[:, :, dy : h - 2 + dy, dx : w - 2 + dx]
        deg[:, :, 1:-1, 1:-1] = ((2 * total + 13) // 26).to(torch.uint8)  # round(total / 13), half up: exact
    fd = deg.to(torch.float32)
    return round_u8(fd + p[:, 0].view(-1, 1, 1, 1) * (s.to(torch.float32) - fd))


def _affine(s: Tensor, p: Tensor, lut: Tensor, rec: Tensor) -> Tensor:
    n, c, h, w = s.shape
    cx = torch.tensor((w - 1) * 0.5, dtype=torch.float32)
    cy = torch.tensor((h - 1) * 0.5, dtype=torch.float32)
    dx = (torch.arange(w, dtype=torch.float32, device=s.device) - cx).view(1, 1, w)
    dy = (torch.arange(h, dtype=torch.float32, device=s.device) - cy).view(1, h, 1)
    sx = (_col(p, 0) * dx + _col(p, 1) * dy) + cx
    sy = (_col(p, 2) * dx + _col(p, 3) * dy) + cy
    fx0, fy0 = torch.floor(sx), torch.floor(sy)
    fx, fy = sx - fx0, sy - fy0
    ix, iy = fx0.long(), fy0.long()
    flat = s.reshape(n, c, h * w).to(torch.float32)

    def tap(oy: int, ox: int) -> Tensor:
        yy, xx = iy + oy, ix + ox
        inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        idx = (yy.clamp(0, h - 1) * w + xx.clamp(0, w - 1)).view(n, 1, h * w).expand(n, c, h * w)
        val = torch.gather(flat, 2, idx).view(n, c, h, w)
        return torch.where(inside.unsqueeze(1), val, torch.zeros((), dtype=torch.float32))

    v00, v01, v10, v11 = tap(0, 0), tap(0, 1), tap(1, 0), tap(1, 1)
    fx, fy = fx.unsqueeze(1), fy.unsqueeze(1)
    top = v00 + fx * (v01 - v00)
    bottom = v10 + fx * (v11 - v10)
    return round_u8(top + fy * (bottom - top))


_MODES = {
    IDENTITY: lambda s, p, lut, rec: s,
    LUT: _lut,
    BRIGHTNESS: _brightness,
    HUESAT: _huesat,
    SHARPNESS: _sharpness,
    AFFINE: _affine,
    GRAYSCALE: _grayscale,
}


def box_mask(box: Tensor, height: int, width: int) -> Tensor:
    """``(B, 1, H, W)`` bool: True inside each sample's ``(y0, x0, y1, x1)`` box (exclusive ends)."""
    ys = torch.arange(height, device=box.device).view(1, height)
    xs = torch.arange(width, device=box.device).view(1, width)
    b = box.long()
    in_y = (ys >= b[:, 0:1]) & (ys < b[:, 2:3])
    in_x = (xs >= b[:, 1:2]) & (xs < b[:, 3:4])
    return (in_y.unsqueeze(2) & in_x.unsqueeze(1)).unsqueeze(1)


def texture_stage_reference(
    src: Tensor,
    mode: Tensor,
    fparams: Tensor,
    lut: Tensor,
    box: Tensor,
    out: Tensor,
    where: Tensor | None = None,
    sparse: Tensor | None = None,
    src_index: Tensor | None = None,
) -> Tensor:
    """Applies a chain of stages per sample (see the module docstring) inside ``box``; returns ``out``.

    Args:
        src: ``(N, 3, H, W)`` uint8; sample ``b`` reads ``src[src_index[b]]`` (``src[b]`` without ``src_index``).
        mode: ``(B, K)`` int32 mode ids: stage ``k`` of sample ``b`` applies ``mode[b, k]`` to the result of stage
            ``k - 1``, rounding to uint8 in between (``K`` separate passes give the same bytes).
        fparams: ``(B, K, 4)`` float32 per-stage scalars of the mode.
        lut: ``(B, K, 3, 256)`` uint8 per-stage tables (LUT mode).
        box: ``(B, 4)`` int32 ``(y0, x0, y1, x1)``, exclusive ends.
        out: ``(B, 3, H, W)`` uint8, written inside the boxes only.
        where: optional ``(B, 1, H, W)`` float32: where given, sample ``b`` with ``sparse[b]`` (every sample when
            ``sparse`` is None) is written only at its pixels with ``where > 0.5`` inside the box.
        sparse: optional ``(B,)`` bool.
        src_index: optional ``(B,)`` int64.
    """
    batch, _, height, width = out.shape
    if batch == 0:
        return out
    image = src if src_index is None else src[src_index]
    rec = reciprocal_table(src.device)
    for k in range(mode.shape[1]):
        stage = mode[:, k].long()
        result = torch.empty_like(image)
        for m in torch.unique(stage).tolist():
            idx = (stage == m).nonzero().flatten()
            result[idx] = _MODES[m](image[idx], fparams[idx, k], lut[idx, k], rec)
        image = result
    write = box_mask(box, height, width)
    if where is not None:
        dense = torch.zeros(batch, dtype=torch.bool, device=out.device) if sparse is None else ~sparse
        write = write & ((where > 0.5) | dense.view(batch, 1, 1, 1))
    out.copy_(torch.where(write, image, out))
    return out


def texture_histogram_reference(images: Tensor, index: Tensor) -> Tensor:
    """``(N, 3, 256)`` int32: per-channel histogram of the whole image ``images[index[n]]``."""
    sel = images[index.long()]
    n, c = sel.shape[:2]
    offsets = (torch.arange(n * c, device=images.device) * 256).view(n * c, 1)
    flat = (sel.reshape(n * c, sel[0, 0].numel() if n else 0).long() + offsets).flatten()
    return torch.bincount(flat, minlength=n * c * 256).view(n, c, 256).to(torch.int32)


# --- image-dependent tables ---------------------------------------------------------------------------------------


def _round_table(x: Tensor) -> Tensor:
    return torch.floor(x + 0.5).clamp_(0, 255).to(torch.uint8)


def autocontrast_lut(hist: Tensor, cutoff: Tensor) -> Tensor:
    """PIL ``ImageOps.autocontrast(image, cutoff)`` tables, vectorised.

    Args:
        hist: ``(N, 3, 256)`` integer per-channel histograms.
        cutoff: ``(N,)`` integer percentages removed at each end.

    Returns:
        ``(N, 3, 256)`` uint8 tables, equal to PIL's.
    """
    h = hist.to(torch.int64)
    n = h.sum(dim=2, keepdim=True)
    cut = n * cutoff.to(torch.int64).view(-1, 1, 1) // 100
    # PIL's loop removes `cut` pixels from the low end: bin i keeps clamp(cumsum_i - cut, 0, h_i); same at the top.
    h = torch.minimum((h.cumsum(2) - cut).clamp(min=0), h)
    h = torch.minimum((h.flip(2).cumsum(2) - cut).clamp(min=0), h.flip(2)).flip(2)
    idx = torch.arange(256, device=h.device)
    nz = h > 0
    lo = torch.where(nz, idx, 256).amin(dim=2, keepdim=True)
    hi = torch.where(nz, idx, -1).amax(dim=2, keepdim=True)
    span = (hi - lo).clamp(min=1).to(torch.float64)
    scale = torch.full_like(span, 255.0) / span  # not 255.0 / span: torch evaluates that as reciprocal() * 255
    offset = -lo.to(torch.float64) * scale
    lut = (idx.to(torch.float64) * scale + offset).trunc().clamp_(0, 255)  # PIL: int(ix * scale + offset)
    lut = torch.where(hi <= lo, idx.to(torch.float64), lut)
    return lut.to(torch.uint8)


def equalize_lut(hist: Tensor) -> Tensor:
    """PIL ``ImageOps.equalize`` tables, vectorised: ``(N, 3, 256)`` histograms -> uint8 tables equal to PIL's."""
    h = hist.to(torch.int64)
    idx = torch.arange(256, device=h.device)
    last = torch.where(h > 0, idx, -1).amax(dim=2, keepdim=True)
    last_count = torch.gather(h, 2, last.clamp(min=0))
    step = (h.sum(dim=2, keepdim=True) - last_count) // 255
    nonzero_bins = (h > 0).sum(dim=2, keepdim=True)
    before = h.cumsum(2) - h  # pixels strictly below each value
    lut = ((step // 2 + before) // step.clamp(min=1)).clamp_(max=255)  # PIL's point() clips at 255
    lut = torch.where((nonzero_bins <= 1) | (step == 0), idx, lut)
    return lut.to(torch.uint8)


def contrast_lut(hist: Tensor, factor: Tensor) -> Tensor:
    """Contrast around the grey mean (torchvision ``adjust_contrast``): ``round(v f + m (1 - f))``.

    ``m = 0.299 mean_R + 0.587 mean_G + 0.114 mean_B`` from the per-channel histograms, in float64.
    """
    h = hist.to(torch.float64)
    values = torch.arange(256, dtype=torch.float64, device=h.device)
    means = (h * values).sum(dim=2) / h.sum(dim=2).clamp(min=1.0)
    # Exact integer sums above; written out here so no reduction order can differ between devices.
    m = (means[:, 0] * 0.299 + means[:, 1] * 0.587 + means[:, 2] * 0.114).view(-1, 1, 1)
    f = factor.to(torch.float64).view(-1, 1, 1)
    return _round_table(values * f + m * (1.0 - f)).expand(-1, 3, -1).contiguous()


def texture_hist_lut_reference(hist: Tensor, kind: Tensor, param: Tensor) -> Tensor:
    """``(N, 3, 256)`` uint8 tables from ``(N, 3, 256)`` histograms: ``kind`` 0 identity, 1 :func:`autocontrast_lut`
    (``param`` = cutoff %, rounded half up), 2 :func:`equalize_lut`, 3 :func:`contrast_lut` (``param`` = factor)."""
    n = hist.shape[0]
    out = torch.arange(256, dtype=torch.uint8, device=hist.device).expand(n, 3, 256).contiguous()
    kind = kind.long()
    cutoff = torch.floor(param.to(torch.float64) + 0.5).to(torch.int64)
    for k, build in (
        (HIST_AUTOCONTRAST, lambda i: autocontrast_lut(hist[i], cutoff[i])),
        (HIST_EQUALIZE, lambda i: equalize_lut(hist[i])),
        (HIST_CONTRAST, lambda i: contrast_lut(hist[i], param[i])),
    ):
        idx = (kind == k).nonzero().flatten()
        if idx.numel():
            out[idx] = build(idx)
    return out
