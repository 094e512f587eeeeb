"""Reference of the ``cutpaste`` op: crop -> colour jitter -> rotate (nearest) -> paste, with the exact mask.

Per sample ``b`` the op reads one row of ``ints`` (int32) and one row of ``floats`` (float32), laid out as the
column constants below say (:func:`anofast.ops.cutpaste.pack_params` builds them). All arithmetic is float32,
exactly rounded, in the order written here (the C++ and Triton kernels repeat it operation by operation):

1. Contrast mean (only the contrast jitter needs it): over the source crop
   ``images[b, :, SRC_Y:SRC_Y+CROP_H, SRC_X:SRC_X+CROP_W]``, apply the jitter ops that come *before* contrast in
   the sample's order, take the grey value ``g`` (``0.2989 r + 0.587 g + 0.114 b``, the channel itself for C = 1),
   sum ``trunc(g * 2**24)`` as int64 (exact, so any summation order gives the same total) and
   ``mean = float32(sum) * INV_N`` (``INV_N = float32(2**-24 / (CROP_H * CROP_W))``, from the host).
2. Paste: output pixel ``(y, x)`` with ``Y = y - DST_Y`` in ``[0, BOX_H)``, ``X = x - DST_X`` in ``[0, BOX_W)``
   (and inside the foreground, when one is given) maps back to the crop::

       u = float(X) + OFF_U ; v = float(Y) + OFF_V          # pixel centre relative to the box centre
       sx = (ROT_A * u + ROT_B * v) + HALF_W ; sy = (ROT_D * u + ROT_E * v) + HALF_H
       inside = 0 <= sx < CROP_W and 0 <= sy < CROP_H       # the footprint (the rotated rectangle)
       source pixel = (SRC_Y + int(sy), SRC_X + int(sx))    # nearest, as PIL's rotate

   The source pixel gets the four jitter ops in the sample's ``ORDER`` (ids: 0 brightness, 1 contrast,
   2 saturation, 3 hue; torchvision ``ColorJitter`` semantics, see :func:`jitter`), and is written where
   ``inside``. For the normal variant the rotation is the identity and the box is the crop size, so
   ``sx = X + 0.5`` exactly: a plain copy of the crop.
3. ``mask = inside and any channel of out != image``: exactly the pixels that changed; everything else is the
   input, bit for bit.

Hue is rotated without any division (torchvision divides by the chroma and multiplies back): with
``d = max - min`` and ``x`` the chroma-scaled hue offset, ``D = d * base + x + d * HUE6`` (``HUE6 = 6 * hue``)
is the hue times ``6 d``; its sector ``i`` and ``d * frac`` follow from comparisons with ``j * d``. It is the
same hexcone rotation as torchvision's up to float rounding (about 1e-7); a zero hue shift is skipped, so
with all factors 1 and hue 0 the paste is an exact copy.
"""

from __future__ import annotations

import torch
from torch import Tensor

from anofast._dispatch import register_impl

# int32 columns
SRC_Y, SRC_X, CROP_H, CROP_W, DST_Y, DST_X, BOX_H, BOX_W, ORDER = 0, 1, 2, 3, 4, 5, 6, 7, 8
N_INTS = 12  # ORDER .. ORDER+3: the four jitter op ids in the order they are applied
# float32 columns
ROT_A, ROT_B, ROT_D, ROT_E, OFF_U, OFF_V, HALF_W, HALF_H = 0, 1, 2, 3, 4, 5, 6, 7
BRIGHT, CONTRAST, ONE_MINUS_CONTRAST, SAT, ONE_MINUS_SAT, HUE6, INV_N = 8, 9, 10, 11, 12, 13, 14
N_FLOATS = 15
# jitter op ids (torchvision ColorJitter's fn_idx order)
OP_BRIGHTNESS, OP_CONTRAST, OP_SATURATION, OP_HUE = 0, 1, 2, 3

GREY_R = 0.2989000082015991  # float32(0.2989), float32(0.587), float32(0.114): torchvision's grey weights
GREY_G = 0.5870000123977661
GREY_B = 0.11400000005960464
FIXED_SCALE = 16777216.0  # 2**24: grey values are summed as exact integers trunc(g * 2**24)


def _clamp01(t: Tensor) -> Tensor:
    t = torch.where(t > 0, t, 0.0)
    return torch.where(t < 1, t, 1.0)


def grey(rgb: list[Tensor]) -> Tensor:
    """torchvision's ``rgb_to_grayscale`` (float32, no FMA); the channel itself for one channel."""
    if len(rgb) == 1:
        return rgb[0]
    return (GREY_R * rgb[0] + GREY_G * rgb[1]) + GREY_B * rgb[2]


def hue_shift(r: Tensor, g: Tensor, b: Tensor, hue6: Tensor) -> list[Tensor]:
    """Rotates the hue by ``hue6 / 6`` turns (torchvision ``adjust_hue`` semantics, no division)."""
    maxc = torch.where(r > torch.where(g > b, g, b), r, torch.where(g > b, g, b))
    minc = torch.where(r < torch.where(g < b, g, b), r, torch.where(g < b, g, b))
    d = maxc - minc
    is_r = maxc == r
    is_g = ~is_r & (maxc == g)
    base = torch.where(is_r, 0.0, torch.where(is_g, 2.0, 4.0))
    x = torch.where(is_r, g - b, torch.where(is_g, b - r, r - g))
    big = (d * base + x) + d * hue6
    six = d * 6.0
    big = torch.where(big < 0, big + six, big)
    big = torch.where(big >= six, big - six, big)
    sector = (
        (big >= d * 1.0).int() + (big >= d * 2.0).int() + (big >= d * 3.0).int() + (big >= d * 4.0).int()
        + (big >= d * 5.0).int()
    )  # fmt: skip
    f = big - sector.to(torch.float32) * d
    f = torch.where(f > 0, f, 0.0)
    f = torch.where(f < d, f, d)
    v, p = maxc, minc
    t = _clamp01(minc + f)
    q = _clamp01(maxc - f)
    s = sector
    r2 = torch.where((s == 0) | (s == 5), v, torch.where(s == 1, q, torch.where((s == 2) | (s == 3), p, t)))
    g2 = torch.where(s == 0, t, torch.where((s == 1) | (s == 2), v, torch.where(s == 3, q, p)))
    b2 = torch.where((s == 0) | (s == 1), p, torch.where(s == 2, t, torch.where((s == 3) | (s == 4), v, q)))
    return [r2, g2, b2]


def jitter_op(op: int, px: list[Tensor], f: Tensor, contrast_add: Tensor) -> list[Tensor]:
    """One jitter op on a list of channel tensors; ``contrast_add = (1 - contrast) * mean``."""
    if op == OP_BRIGHTNESS:
        return [_clamp01(f[BRIGHT] * c) for c in px]
    if op == OP_CONTRAST:
        return [_clamp01(f[CONTRAST] * c + contrast_add) for c in px]
    if len(px) == 1:  # saturation and hue leave grey images unchanged (as torchvision)
        return px
    if op == OP_SATURATION:
        gr = grey(px)
        return [_clamp01(f[SAT] * c + f[ONE_MINUS_SAT] * gr) for c in px]
    if float(f[HUE6]) == 0.0:  # an exact identity when the hue is not jittered (all backends skip it)
        return px
    return hue_shift(*px, f[HUE6])


def contrast_mean(crop: Tensor, order: list[int], f: Tensor) -> Tensor:
    """float32 mean grey value of the crop after the jitter ops that precede contrast (see the module doc)."""
    px = list(crop.unbind(0))
    zero = torch.zeros((), dtype=torch.float32)
    for op in order:
        if op == OP_CONTRAST:
            break
        px = jitter_op(op, px, f, zero)
    total = (grey(px) * FIXED_SCALE).to(torch.int64).sum()
    return total.to(torch.float32) * f[INV_N]


def cutpaste_reference(
    images: Tensor, ints: Tensor, floats: Tensor, foreground: Tensor | None
) -> tuple[Tensor, Tensor, Tensor]:
    """``(out (B, C, H, W) float32, mask (B, 1, H, W) float32, row counts (B, H) int32)``.

    A row count is -1 where the row of the input holds a value outside [0, 1] or NaN (the caller raises).
    ``images`` ``(B, C, H, W)`` float32; ``ints`` ``(B, 12)`` int32; ``floats`` ``(B, 15)`` float32;
    ``foreground`` ``(B, 1, H, W)`` float32 or None: paste only where it is ``> 0.5``.
    """
    batch, channels, height, width = images.shape
    dev = images.device
    out = images.clone()
    changed = torch.zeros((batch, 1, height, width), dtype=torch.bool, device=dev)
    for b in range(batch):
        sy, sx, ch, cw, dy, dx, bh, bw = ints[b, :ORDER].tolist()
        order = ints[b, ORDER : ORDER + 4].tolist()
        if bh <= 0 or bw <= 0 or ch <= 0 or cw <= 0:
            continue
        f = floats[b]
        crop = images[b, :, sy : sy + ch, sx : sx + cw]
        contrast_add = f[ONE_MINUS_CONTRAST] * contrast_mean(crop, order, f)
        y0, y1, x0, x1 = max(dy, 0), min(dy + bh, height), max(dx, 0), min(dx + bw, width)
        if y0 >= y1 or x0 >= x1:
            continue
        u = (torch.arange(x0, x1, device=dev) - dx).to(torch.float32).view(1, -1) + f[OFF_U]
        v = (torch.arange(y0, y1, device=dev) - dy).to(torch.float32).view(-1, 1) + f[OFF_V]
        srcx = (f[ROT_A] * u + f[ROT_B] * v) + f[HALF_W]
        srcy = (f[ROT_D] * u + f[ROT_E] * v) + f[HALF_H]
        inside = (srcx >= 0) & (srcx < float(cw)) & (srcy >= 0) & (srcy < float(ch))
        if foreground is not None:
            inside = inside & (foreground[b, 0, y0:y1, x0:x1] > 0.5)
        ix = torch.where(inside, srcx, 0.0).to(torch.int64)
        iy = torch.where(inside, srcy, 0.0).to(torch.int64)
        px = list(crop[:, iy, ix].unbind(0))
        for op in order:
            px = jitter_op(op, px, f, contrast_add)
        region = images[b, :, y0:y1, x0:x1]
        new = torch.where(inside, torch.stack(px), region)
        out[b, :, y0:y1, x0:x1] = new
        changed[b, 0, y0:y1, x0:x1] = (new != region).any(dim=0)
    rows = changed[:, 0].sum(dim=-1, dtype=torch.int32)
    bad = ~((images >= 0) & (images <= 1)).all(dim=3).all(dim=1)
    return out, changed.to(torch.float32), torch.where(bad, -1, rows)


@register_impl("cutpaste", "reference")
def _load_reference():
    return cutpaste_reference
