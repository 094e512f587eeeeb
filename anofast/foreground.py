"""Automatic foreground masks, so that anomalies land on the object and not on the background.

When to use it: object categories photographed on a plain background (MVTec AD bottle, cable, capsule, hazelnut,
metal nut, pill, screw, toothbrush, transistor; VisA's objects; MVTec 3D-AD with its xyz). Do not use it for
textures, where the whole image is the surface (carpet, grid, leather, tile, wood, magnetic tile): there the
border looks like the centre and the estimate is meaningless; pass no foreground instead.

    fg = anofast.foreground.estimate(images)              # (B, 1, H, W) float32 {0, 1}
    out = anofast.PerlinAnomaly.draem()(images, seed=0, foreground=fg)

Methods (per sample, batched in torch):

- ``"border"``: the background colour is the median of a band along the image border; a pixel is foreground when
  its colour distance to it exceeds twice the 95th percentile of that distance on the band (the background's own
  variation), and at least ``min_contrast``.
- ``"otsu"``: Otsu threshold of the grey level; the side of the threshold that holds most of the border is the
  background (so dark objects on bright backgrounds work as well as bright on dark).
- ``"auto"``: both, keeping per sample the one that marks fewer border pixels as foreground (ties: ``"border"``).
- ``depth=`` given: geometry instead of colour: a plane is fitted (RANSAC on the counter RNG, then least squares on
  its inliers) to the border band of the depth map or organized point cloud; foreground is what stands farther than
  ``plane_distance`` from it (MVTec 3D-AD / 3DSR / M3DM practice; invalid points, 0, are background).

Then a clean-up: morphological opening and closing (``smooth`` pixels), hole filling and, with
``largest_component=True``, only the largest connected component is kept. Connectivity is analysed on a grid of at
most 64 x 64 cells, on the whole batch at once: hole filling is a flood fill from the border, connected components
are label propagation with pointer jumping (a few passes, not one per cell of a component's length).

Cost: about 1 ms per 256² image on the CPU (32 uint8 RGB 256² images: 30-45 ms on 2 threads of a shared 2-CPU
AMD EPYC; about 4x less than the first version, which propagated labels one pixel per pass, in the same runs, 5x
on 1 thread), computed once per image (a data set's foregrounds can be cached), while a generator runs on every
sample of every epoch; so it is plain torch (CPU or CUDA) and has no C++ / Triton kernels
(``benchmarks/bench_foreground.py`` measures it).
"""

from __future__ import annotations

import itertools
import warnings
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from anofast import _rng
from anofast._rng import Stream
from anofast._validate import check_images, check_tensor, unit_float
from anofast.ops.rng import rng_uniform

Method = Literal["auto", "border", "otsu"]
_RANSAC_COUNTER = 1 << 20  # counters on Stream.COMPOSE used by the plane fit (OneOf uses counters 0, 1)
_RANSAC_ITERS = 64
_BINS = 256
_BORDER_QUANTILE, _BORDER_MARGIN = 0.95, 2.0  # "border": threshold = 2 x the 95th percentile on the border

__all__ = ["components", "estimate", "fill_holes", "fit_plane", "largest_component", "otsu_threshold"]


def estimate(
    images: Tensor | None,
    method: Method = "auto",
    *,
    depth: Tensor | None = None,
    border: int | None = None,
    min_contrast: float = 0.05,
    smooth: int | None = None,
    largest_component: bool = True,
    holes: bool = True,
    plane_distance: float | None = None,
    seed: int | Tensor = 0,
    empty: Literal["full", "keep"] = "full",
) -> Tensor:
    """Estimates the foreground (object) of each image.

    Args:
        images: ``(B, C, H, W)`` float in [0, 1] or uint8, C in {1, 3}; may be None when ``depth`` is given.
        method: ``"auto"``, ``"border"`` or ``"otsu"`` (see the module docstring); ignored with ``depth``.
        depth: optional ``(B, 1, H, W)`` depth map or ``(B, 3, H, W)`` organized point cloud (x, y, z); 0 (or
            non-finite) marks invalid points. The foreground is then what stands off the fitted background plane.
        border: width in pixels of the border band that samples the background (default: 4 % of the shorter
            side, at least 2).
        min_contrast: smallest colour distance (in [0, 1] units) that counts as foreground for ``"border"``.
        smooth: size of the opening/closing structuring element in pixels (default: 1.5 % of the shorter side,
            odd, at least 3); 1 disables it.
        largest_component: keep only the largest 8-connected component.
        holes: fill holes (background regions not connected to the image border).
        plane_distance: distance to the plane above which a point is foreground, in the units of ``depth``
            (default: 0.005 for point clouds, as in metres, and 2 % of the depth range for depth maps).
        seed: seed of the RANSAC draws (int or ``(B,)`` int64 per-sample seeds).
        empty: ``"full"``: a sample whose estimate is empty gets an all-ones foreground (and a warning), so a
            generator still places anomalies; ``"keep"``: return it empty.

    Returns:
        ``(B, 1, H, W)`` float32 {0, 1} on the device of the input.

    Raises:
        TypeError, ValueError: bad images, depth or options (the message names the argument).
    """
    if method not in ("auto", "border", "otsu"):
        raise ValueError(f"method must be 'auto', 'border' or 'otsu', got {method!r}")
    if empty not in ("full", "keep"):
        raise ValueError(f"empty must be 'full' or 'keep', got {empty!r}")
    if not isinstance(min_contrast, (int, float)) or not 0.0 <= min_contrast < 1.0:
        raise ValueError(f"min_contrast must be a number in [0, 1), got {min_contrast!r}")
    if images is None and depth is None:
        raise ValueError("images: pass images, depth, or both")
    x = None if images is None else check_images(images)
    ref = x if x is not None else check_tensor(depth, "depth")
    if ref.dim() != 4:
        raise ValueError(f"depth must have shape (B, 1, H, W) or (B, 3, H, W), got {tuple(ref.shape)}")
    batch, _, height, width = ref.shape
    band = _check_int(border, "border", max(2, round(0.04 * min(height, width))))
    if 2 * band >= min(height, width):
        raise ValueError(f"border={band} leaves no interior in a {height}x{width} image")
    k = _check_int(smooth, "smooth", max(3, round(0.015 * min(height, width)) | 1))
    if k % 2 == 0:
        raise ValueError(f"smooth must be odd, got {k}")

    if depth is not None:
        fg = _from_depth(depth, x, _border_band(height, width, band, ref.device), plane_distance, seed)
    else:
        assert x is not None
        fg = _from_colour(x, images if images.dtype == torch.uint8 else None, method, band, min_contrast)
    del x, ref  # the float images (25 MB for 32 RGB 256² ones): the clean-up reuses their memory

    if k > 1:
        fg = _open_close(fg, k)
    if holes:
        fg = fill_holes(fg)
    if largest_component:
        fg = _largest(fg)
    out = fg.view(torch.uint8).to(torch.float32)  # (bool tensors convert and reduce much slower than uint8)
    if empty == "full":
        none = out.flatten(1).amax(1) == 0
        if bool(none.any()):
            warnings.warn(f"foreground.estimate: {int(none.sum())} of {batch} samples have an empty foreground; "
                          "using the whole image for them (pass empty='keep' to get them empty)", stacklevel=2)
            out[none] = 1.0
    return out.contiguous()


def _from_colour(x: Tensor, levels: Tensor | None, method: Method, band: int, min_contrast: float) -> Tensor:
    """The raw colour mask ``(B, 1, H, W)`` bool; ``levels``: the uint8 images ``x`` was converted from, if any."""
    if method in ("border", "auto"):
        fg_border, on_edge_border = _border_distance(x, band, min_contrast, levels)
    if method in ("otsu", "auto"):
        fg_otsu, on_edge_otsu = _otsu_polarity(x, band)
    if method == "border":
        return fg_border
    if method == "otsu":
        return fg_otsu
    pick_otsu = on_edge_otsu < on_edge_border  # per sample, the one that marks fewer border pixels
    fg_border[pick_otsu] = fg_otsu[pick_otsu]
    return fg_border


def _check_int(value: int | None, name: str, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return value


def _border_band(height: int, width: int, band: int, device: torch.device) -> Tensor:
    edge = torch.ones((1, 1, height, width), dtype=torch.bool, device=device)
    edge[..., band:height - band, band:width - band] = False
    return edge


# ----------------------------------------------------------------------------------------------- colour
def otsu_threshold(values: Tensor, valid: Tensor | None = None, bins: int = _BINS) -> Tensor:
    """Per-row Otsu threshold of ``(B, N)`` values in [0, 1] (a histogram of ``bins`` bins per row).

    Returns ``(B,)`` float32 thresholds: a value ``> threshold`` is in the upper class.
    """
    step, weight = _slice(values.shape[1]), None if valid is None else valid.to(values.dtype).to(torch.float64)
    hist = []
    for i in range(0, max(len(values), 1), step):  # a slice of the rows at a time
        idx = values[i : i + step].clamp(0, 1).mul_(bins - 1).add_(0.5)
        hist.append(_histograms(idx, bins, None if weight is None else weight[i : i + step]))
    hist = torch.cat(hist).to(torch.float64)
    levels = torch.arange(bins, dtype=torch.float64, device=values.device)
    w0 = hist.cumsum(1)
    m0 = (hist * levels).cumsum(1)
    total, mtot = w0[:, -1:], m0[:, -1:]
    w1 = total - w0
    between = (mtot * w0 - m0 * total) ** 2 / (w0 * w1).clamp_min(1e-12)
    between = torch.where((w0 > 0) & (w1 > 0), between, torch.zeros_like(between))
    t = between.argmax(1).to(torch.float32)
    return (t + 0.5) / (bins - 1)


def _slice(pixels: int) -> int:
    """How many images of ``pixels`` pixels to process at a time where a computation makes full-size temporaries:
    small ones stay in the cache, and a heap that stays small is reused from call to call (fresh memory costs page
    faults)."""
    return max(1, (1 << 18) // max(pixels, 1))


def _histograms(idx: Tensor, bins: int, weight: Tensor | None = None) -> Tensor:
    """Per-row histograms ``(R, bins)`` of ``(R, N)`` bin indices in [0, bins) (floats are truncated), optionally
    weighted by ``(R, N)`` weights: one ``bincount`` over all rows."""
    r = idx.shape[0]
    dtype = torch.int32 if r * bins < 2**31 else torch.int64
    keys = idx.to(dtype)
    keys += torch.arange(0, r * bins, bins, dtype=dtype, device=idx.device).view(r, 1)
    return torch.bincount(keys.flatten(), None if weight is None else weight.flatten(), r * bins).view(r, bins)


def _band_values(t: Tensor, band: int) -> Tensor:
    """The pixels of the border band of a ``(B, C, H, W)`` tensor, ``(B, C, N)`` (in no particular order)."""
    inner = t[..., band:-band, :]
    return torch.cat((t[..., :band, :].flatten(2), t[..., -band:, :].flatten(2), inner[..., :band].flatten(2),
                      inner[..., -band:].flatten(2)), 2)


def _quantile(values: Tensor, q: float, f) -> Tensor:
    """``torch.quantile(f(values), q, dim=1)`` (linear interpolation) of ``(B, N)`` float32 values ``>= +0`` for a
    non-decreasing ``f``, bit for bit: a top-k on the int32 bit patterns (which sort like such floats, and select
    faster) finds the two order statistics instead of a sort, ``f`` is applied to them only, and they are
    interpolated as ``torch.quantile`` does (same dtype, shapes and ``lerp_``)."""
    b, n = values.shape
    rank = torch.tensor(q, dtype=values.dtype) * (n - 1)
    below, above = int(rank), int(rank.ceil())
    top = values.view(torch.int32).topk(n - below, dim=1, sorted=False).values  # the order statistics >= below
    two = top.topk(min(2, n - below), dim=1, largest=False).values.view(values.dtype)  # below, below + 1
    lo = f(two[:, :1].contiguous())
    hi = f(two[:, above - below : above - below + 1].contiguous())
    weight = torch.full((b, 1), float(rank - below), dtype=values.dtype, device=values.device)
    return lo.lerp_(hi, weight).squeeze(1)


def _sqrt_threshold(t: Tensor) -> Tensor:
    """The largest float ``m`` with ``sqrt(m) <= t``, per element of ``t >= 0``: ``sqrt(m) > t`` iff
    ``m > threshold``, as torch's ``sqrt`` is non-decreasing (exhaustively checked on [0, 4]: not correctly rounded
    on the CPU, within an ulp). The answer lies within a few ulps of ``t * t``: the largest of 17 candidates."""
    ulps = torch.arange(-8, 9, dtype=torch.int32, device=t.device)
    cand = ((t * t).view(torch.int32).unsqueeze(-1) + ulps).view(t.dtype)  # negative bit patterns are NaNs: skipped
    return torch.where(cand.sqrt() <= t.unsqueeze(-1), cand, -torch.inf).amax(-1)


def _border_distance(x: Tensor, band: int, min_contrast: float, levels: Tensor | None) -> tuple[Tensor, Tensor]:
    """The ``"border"`` mask ``(B, 1, H, W)`` and its pixel count on the border band ``(B,)``. ``levels``: the uint8
    images ``x`` was converted from, if any (their medians come from histograms, much faster than a selection).

    The distance to the background colour is ``sqrt(sq)``, ``sq`` the mean square over the channels; it is compared
    (as ``sq`` with a threshold) and its quantile taken (from two order statistics of ``sq``) without computing the
    square root of every pixel (slow on zeros on the CPU)."""
    b, c = x.shape[:2]
    if levels is not None:
        edge = _band_values(levels, band)
        cum = _histograms(edge.flatten(0, 1), 256).cumsum(1)
        bg = unit_float((cum <= (edge.shape[-1] - 1) // 2).sum(1))  # as check_images scales
    else:  # the lower median, as Tensor.median, selected (faster) on the int32 bit patterns: they sort like the
        # floats in [-0, 1] but for -0 < +0, and a median of -0 for +0 or the reverse changes no (x - bg) ** 2
        edge = _band_values(x, band)
        bg = edge.view(torch.int32).kthvalue((edge.shape[-1] + 1) // 2, dim=2).values.view(torch.float32)
    bg = bg.view(b, c, 1, 1)
    # the distance is sqrt(sq), the RMS over the channels; ((x - bg) ** 2).mean(1) a slice of the batch at a time
    sq, step = x.new_empty((b, 1, *x.shape[2:])), _slice(x[0, 0].numel())
    for i in range(0, b, step):
        d = x[i : i + step] - bg[i : i + step]
        torch.mean(d.mul_(d), 1, keepdim=True, out=sq[i : i + step])
    # Foreground differs from the background colour more than the background varies along the border.
    sq_edge = _band_values(sq, band).flatten(1)
    spread = _quantile(sq_edge, _BORDER_QUANTILE, torch.sqrt)  # of the distance sqrt(sq)
    t = _sqrt_threshold((_BORDER_MARGIN * spread).clamp_min(min_contrast)).view(b, 1, 1, 1)
    return sq > t, (sq_edge > t.view(b, 1)).sum(1)


def _otsu_polarity(x: Tensor, band: int) -> tuple[Tensor, Tensor]:
    """The ``"otsu"`` mask ``(B, 1, H, W)`` and its pixel count on the border band ``(B,)``."""
    b, _, h, w = x.shape
    if x.shape[1] == 1:
        grey = x.mean(1)
    else:  # 0.299 * r + 0.587 * g + 0.114 * b, in that order, a slice of the batch at a time
        grey, step = x.new_empty((b, h, w)), _slice(h * w)
        for i in range(0, b, step):
            red, green, blue = x[i : i + step].unbind(1)
            part = torch.mul(red, 0.299, out=grey[i : i + step])
            part += green * 0.587
            part += blue * 0.114
    t = otsu_threshold(grey.flatten(1))
    upper = (grey > t.view(-1, 1, 1)).unsqueeze(1)
    n_edge = 2 * band * (h + w - 2 * band)
    upper_edge = _band_values(upper, band).flatten(1).sum(1)
    # the fractions of the image as float32 means (exact counts, then / (h * w)), as a full-size mean computes them
    # on the CPU (a mean that scales by 1 / (h * w) instead gives the same test below 5M pixels on the band)
    edge_fraction = torch.tensor(float(n_edge), dtype=torch.float32, device=x.device) / (h * w)
    upper_on_edge = upper_edge.float() / (h * w) / edge_fraction
    bright_background = upper_on_edge > 0.5
    flip = bright_background.to(torch.uint8).view(-1, 1, 1, 1)
    fg = (upper.view(torch.uint8) ^ flip).view(torch.bool)  # (bool ops broadcast much slower than uint8 ones)
    return fg, torch.where(bright_background, n_edge - upper_edge, upper_edge)


# ---------------------------------------------------------------------------------------------- geometry
def fit_plane(points: Tensor, valid: Tensor, seeds: Tensor, inlier: float | Tensor) -> Tensor:
    """RANSAC + least-squares plane ``z = a x + b y + c`` per sample.

    Args:
        points: ``(B, N, 3)`` float (x, y, z).
        valid: ``(B, N)`` bool, the points that may be used.
        seeds: ``(B,)`` int64 per-sample seeds (draws on ``Stream.COMPOSE``, counters from 2**20).
        inlier: vertical distance (a number or ``(B,)``) under which a point supports a plane.

    Returns:
        ``(B, 3)`` float64 coefficients ``(a, b, c)``.
    """
    b, n, _ = points.shape
    p = points.to(torch.float64)
    inlier = torch.as_tensor(inlier, dtype=torch.float64, device=p.device).expand(b).view(b, 1)
    # Candidate triples: indices into each sample's valid points (counter RNG, so any backend/batch agrees).
    u = rng_uniform(seeds, Stream.COMPOSE, _RANSAC_COUNTER + 3 * _RANSAC_ITERS)[:, _RANSAC_COUNTER:]
    u = u.to(p.device).to(torch.float64)
    counts = valid.sum(1, keepdim=True)  # (B, 1)
    order = torch.argsort((~valid).to(torch.int8), dim=1, stable=True)  # valid points first
    pick = (u * counts).long().clamp_max((counts - 1).clamp_min(0))  # (B, 3K)
    tri = torch.gather(p, 1, torch.gather(order, 1, pick).unsqueeze(-1).expand(-1, -1, 3)).view(b, -1, 3, 3)
    # Plane through 3 points: solve [x y 1] [a b c]^T = z (singular triples get a zero score).
    a_mat = torch.cat((tri[..., :2], torch.ones_like(tri[..., :1])), -1)
    det = torch.linalg.det(a_mat)
    ok = det.abs() > 1e-12
    safe = torch.where(ok.view(*ok.shape, 1, 1), a_mat, torch.eye(3, dtype=p.dtype, device=p.device))
    coef = torch.linalg.solve(safe, tri[..., 2:]).squeeze(-1)  # (B, K, 3)
    pred = torch.einsum("bkc,bnc->bkn", coef[..., :2], p[..., :2]) + coef[..., 2:]
    support = (((pred - p[:, None, :, 2]).abs() < inlier.view(b, 1, 1)) & valid[:, None]).sum(-1)
    support = torch.where(ok, support, torch.zeros_like(support))
    best = coef[torch.arange(b, device=p.device), support.argmax(1)]
    # Refine: least squares on the inliers of the best plane.
    resid = ((p[..., :2] * best[:, None, :2]).sum(-1) + best[:, 2:] - p[..., 2]).abs()
    w = ((resid < inlier) & valid).to(p.dtype).unsqueeze(-1)
    design = torch.cat((p[..., :2], torch.ones_like(p[..., :1])), -1) * w
    lhs = design.transpose(1, 2) @ design + 1e-9 * torch.eye(3, dtype=p.dtype, device=p.device)
    rhs = design.transpose(1, 2) @ (p[..., 2:] * w)
    refined = torch.linalg.solve(lhs, rhs).squeeze(-1)
    enough = (w.squeeze(-1).sum(1) >= 3).view(b, 1)
    return torch.where(enough, refined, best)


def _from_depth(depth: Tensor, x: Tensor | None, edge: Tensor, distance: float | None,
                seed: int | Tensor) -> Tensor:
    d = check_tensor(depth, "depth")
    if d.dim() != 4 or d.shape[1] not in (1, 3):
        raise ValueError(f"depth must have shape (B, 1, H, W) or (B, 3, H, W), got {tuple(d.shape)}")
    if x is not None and (d.shape[0] != x.shape[0] or d.shape[2:] != x.shape[2:] or d.device != x.device):
        raise ValueError(f"depth {tuple(d.shape)} on {d.device} does not match images {tuple(x.shape)} on {x.device}")
    if not d.is_floating_point():
        raise TypeError(f"depth must be a float tensor, got {d.dtype}")
    b, c, h, w = d.shape
    d = d.to(torch.float64)
    if c == 3:
        pts = d.flatten(2).transpose(1, 2)  # metric x, y, z
        valid = torch.isfinite(pts).all(-1) & (pts[..., 2] != 0)
        default = 0.005
    else:
        yy, xx = torch.meshgrid(torch.arange(h, dtype=d.dtype, device=d.device),
                                torch.arange(w, dtype=d.dtype, device=d.device), indexing="ij")
        z = d.flatten(1)
        pts = torch.stack((yy.flatten().expand(b, -1), xx.flatten().expand(b, -1), z), -1)
        valid = torch.isfinite(z) & (z != 0)
        zr = torch.where(valid, z, torch.nan)
        rng = (zr.nan_to_num(-torch.inf).amax(1) - zr.nan_to_num(torch.inf).amin(1)).nan_to_num(0).clamp_min(0)
        default = 0.02 * rng
    pts = torch.where(valid.unsqueeze(-1), pts, torch.zeros_like(pts))
    thr = default if distance is None else float(distance)
    if isinstance(thr, float) and not thr > 0:
        raise ValueError(f"plane_distance must be > 0, got {distance!r}")
    seeds = _rng.resolve_seeds(seed, b)
    plane = fit_plane(pts, valid & edge.flatten().view(1, -1), seeds, thr)
    resid = ((pts[..., :2] * plane[:, None, :2]).sum(-1) + plane[:, 2:] - pts[..., 2]).abs()
    if c == 3:  # perpendicular distance in metric space
        resid = resid / (1 + (plane[:, :2] ** 2).sum(-1, keepdim=True)).sqrt()
    thr_t = torch.as_tensor(thr, dtype=torch.float64, device=d.device).expand(b).view(b, 1)
    return ((resid > thr_t) & valid).view(b, 1, h, w)


# -------------------------------------------------------------------------------------------- morphology
# The morphology and connectivity below run on a flat layout of a (B, 1, H, W) batch: ``pad`` rows of padding
# above and below each image and ``pad`` columns right of each row, flattened. A pixel's neighbours ``dy`` rows and
# ``dx`` columns away are then at the flat offset ``dy * s + dx`` (``s = W + pad``) for |dy|, |dx| <= pad: no step
# wraps into another row or image, so a max filter is a few maxima of shifted 1-D slices (torch's CPU
# ``max_pool2d`` with stride 1 is ~50x slower), and the positions keep the pixels' order.
def _flat(m: Tensor, pad: int = 1, value: int = 0) -> Tensor:
    b, _, h, w = m.shape
    return F.pad(m.reshape(b, h, w), (0, pad, pad, pad), value=value).flatten()


def _unflat(x: Tensor, b: int, h: int, w: int, pad: int = 1) -> Tensor:
    return x.view(b, h + 2 * pad, w + pad)[:, pad : pad + h, :w].unsqueeze(1)


def _max_filter(x: Tensor, r: int, s: int, out: Tensor, tmp: Tensor) -> Tensor:
    """(2r+1) x (2r+1) max filter of a flat-layout tensor with ``pad >= r`` into ``out``, separable (``tmp``:
    scratch). ``out`` and ``tmp`` are reused across calls (fresh large buffers cost page faults); their first and
    last ``r * s`` positions (padding rows) are never written: zero them once. The rest of the padding of the
    result holds stale values, to be masked by the caller."""
    e, n = r * s, x.numel()
    for src, dst, step in ((x, tmp, 1), (tmp, out, s)):
        shifted = [src[e + d : n - e + d] for d in range(-r * step, r * step + 1, step)]
        torch.maximum(shifted[0], shifted[1], out=dst[e : n - e])
        for v in shifted[2:]:
            torch.maximum(dst[e : n - e], v, out=dst[e : n - e])
    return out


def _open_close(m: Tensor, k: int) -> Tensor:
    """Morphological opening then closing of a ``(B, 1, H, W)`` bool mask by a k x k square (k odd). The erosion
    counts the outside of the image as foreground, so objects touching the border are not eaten from there."""
    b, _, h, w = m.shape
    r, s = k // 2, w + k // 2
    inside = _flat(torch.ones_like(m, dtype=torch.uint8), r)
    x = _flat(m.view(torch.uint8), r)
    y, tmp = torch.zeros_like(x), torch.zeros_like(x)

    def dilate() -> None:  # outside the image counts as background
        torch.bitwise_and(_max_filter(x, r, s, y, tmp), inside, out=x)

    def erode() -> None:  # ~dilate(~x): outside the image counts as foreground
        x.bitwise_xor_(inside)
        dilate()
        x.bitwise_xor_(inside)

    for op in (erode, dilate, dilate, erode):  # opening, then closing
        op()
    return _unflat(x, b, h, w, r).view(torch.bool)


def _grow(seed: Tensor, free: Tensor, steps: int | None = None) -> Tensor:
    """Geodesic dilation of the ``(B, 1, H, W)`` bool ``seed`` inside ``free`` by ``steps`` 3x3 steps (None: until
    stable, i.e. the pixels of ``free`` 8-connected to the seed through ``free``)."""
    b, _, h, w = seed.shape
    x, keep = _flat((seed & free).view(torch.uint8)), _flat(free.view(torch.uint8))
    nxt, tmp = torch.zeros_like(x), torch.zeros_like(x)
    for _ in range(steps) if steps is not None else itertools.count():
        _max_filter(x, 1, w + 1, nxt, tmp).bitwise_and_(keep)
        if steps is None and torch.equal(nxt, x):
            break
        x, nxt = nxt, x
    return _unflat(x, b, h, w).view(torch.bool)


_COARSE = 64  # connectivity is analysed on a grid of at most this many cells per side


def components(mask: Tensor) -> Tensor:
    """8-connected component labels of a ``(B, 1, H, W)`` bool mask: ``(B, H*W)`` int64, -1 off the mask, else
    the largest flat pixel index of the pixel's component.

    Label propagation with hooking and pointer jumping: a label is a pixel's position (in the flat layout above,
    in the pixels' order), and each pass takes the 3x3 maximum of the labels, raises the label of the pixel a
    label points to (hooking), then replaces each label by the label of the pixel it points to (twice). Labels
    only grow and stay in their component; once the 3x3 maximum changes nothing they are constant on each
    component, so equal to its largest position. The number of passes grows like the log of a component's length,
    not like it. Callers still run it on a coarse grid.
    """
    m = mask.to(torch.bool)
    b, _, h, w = m.shape
    dtype = torch.int32 if b * (h + 2) * (w + 1) < 2**31 else torch.int64
    keep = -_flat(m.to(dtype))  # all bits set on the mask, 0 off it (and on the padding)
    lab = torch.arange(keep.numel(), dtype=dtype, device=m.device) & keep  # 0, a padding position, is "no label"
    near, tmp = torch.zeros_like(lab), torch.zeros_like(lab)
    while True:
        _max_filter(lab, 1, w + 1, near, tmp).bitwise_and_(keep)
        if torch.equal(near, lab):
            break
        lab = lab.scatter_reduce(0, lab.long(), near, "amax")
        torch.maximum(lab, near, out=lab)
        lab = lab.index_select(0, lab)
        lab = lab.index_select(0, lab)
    index = _flat(torch.arange(h * w, device=m.device).view(1, 1, h, w).expand(b, -1, -1, -1), value=-1)
    return _unflat(index.index_select(0, lab), b, h, w).reshape(b, h * w)


def _cells(m: Tensor) -> tuple[Tensor, int]:
    """Pixel counts ``(B, 1, ch, cw)`` int32 of a ``(B, 1, H, W)`` bool mask on a grid of at most ``_COARSE`` cells
    per side (the last row / column of cells may be cut by the image edge), and the cell size."""
    b, _, h, w = m.shape
    f = max(1, -(-max(h, w) // _COARSE))
    ch, cw = -(-h // f), -(-w // f)
    x = F.pad(m.view(torch.uint8), (0, cw * f - w, 0, ch * f - h))
    rows = x.reshape(b, ch, f, cw * f).sum(2, dtype=torch.uint8 if f < 256 else torch.int32)  # (no overflow)
    return rows.view(b, 1, ch, cw, f).sum(-1, dtype=torch.int32), f


def _fine(c: Tensor, f: int, size: tuple[int, int]) -> Tensor:
    if f == 1:
        return c
    b, _, ch, cw = c.shape
    cols = c.view(b, ch, cw, 1).expand(b, ch, cw, f).reshape(b, ch, 1, cw * f)
    return cols.expand(b, ch, f, cw * f).reshape(b, 1, ch * f, cw * f)[..., : size[0], : size[1]]


def fill_holes(mask: Tensor) -> Tensor:
    """Fills background regions of a ``(B, 1, H, W)`` bool mask that do not reach the image border.

    Connectivity is found on a coarse grid (cells with no foreground at all are background): the background cells
    connected to the border are outside. Then a 3x3 growth of ``2 * cell`` steps through the background pixels from
    the outside cells reaches the background pixels of the cells that also hold foreground; every background pixel
    it does not reach is a hole and is filled (so holes narrower than a cell are filled too).
    """
    m = mask.to(torch.bool)
    h, w = m.shape[-2:]
    counts, f = _cells(m)
    background = counts == 0
    # The coarse background connected to the border: flooded from the cells with a straight line of background to
    # the border (most of it, so the flood takes a few steps, not one per cell of the longest path).
    occupied, straight = counts.clamp_max(1), torch.zeros_like(background)
    for dim in (-1, -2):
        before = occupied.cumsum(dim)  # occupied cells up to this one on its row / column
        straight |= (before == 0) | (before - occupied == before.narrow(dim, -1, 1))
    outside = _grow(straight, background)
    filled = m.clone()
    some = ~outside.flatten(1).all(1)  # the other samples have no holes
    if bool(some.any()):
        sub = m[some]
        filled[some] = sub | ~_grow(_fine(outside[some], f, (h, w)), ~sub, 2 * f)
    return filled


def largest_component(mask: Tensor) -> Tensor:
    """Keeps the largest 8-connected component of each ``(B, 1, H, W)`` bool mask (empty stays empty).

    Components are found on a coarse grid (pieces closer than a cell merge) and sized by their full-resolution
    pixel count.
    """
    m = mask.to(torch.bool)
    b, _, h, w = m.shape
    counts, f = _cells(m)
    ch, cw = counts.shape[-2:]
    cells = counts > 0
    labels = components(cells) + 1  # 0 = off the mask
    # the mean of each cell over its in-image pixels, as F.avg_pool2d(m, f, ceil_mode=True) computes it
    rows = (torch.arange(ch, device=m.device) * -f + h).clamp_max(f)
    cols = (torch.arange(cw, device=m.device) * -f + w).clamp_max(f)
    count = (counts.float() / (rows.view(-1, 1) * cols).float()).flatten(1)
    sizes = torch.zeros((b, ch * cw + 1), dtype=torch.float32, device=m.device)
    sizes.scatter_add_(1, labels, count)
    sizes[:, 0] = 0
    keep = sizes.argmax(1, keepdim=True)
    cell = ((labels == keep) & (keep > 0)).view(b, 1, ch, cw)
    out = m.clone()
    cut = (cell ^ cells).flatten(1).view(torch.uint8).amax(1) > 0  # the other samples are in one piece (or empty)
    if bool(cut.any()):
        out[cut] = m[cut] & _fine(cell[cut], f, (h, w))
    return out


_largest = largest_component  # estimate()'s argument of the same name shadows the function there
