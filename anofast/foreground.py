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
``largest_component=True``, only the largest connected component is kept. Connected components and hole filling
are label propagation by max-pooling, iterated to convergence on the whole batch.

Cost: a few ms per 256² image on the CPU (a handful of pooling passes per object diameter), computed once per image
(a data set's foregrounds can be cached), while a generator runs on every sample of every epoch; so it is plain
torch (CPU or CUDA) and has no C++ / Triton kernels (``benchmarks/bench_foreground.py`` measures it).
"""

from __future__ import annotations

import warnings
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from anofast import _rng
from anofast._rng import Stream
from anofast._validate import check_images, check_tensor
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
    edge = _border_band(height, width, band, ref.device)

    if depth is not None:
        fg = _from_depth(depth, x, edge, plane_distance, seed)
    else:
        assert x is not None
        if method in ("border", "auto"):
            fg_border = _border_distance(x, edge, min_contrast)
        if method in ("otsu", "auto"):
            fg_otsu = _otsu_polarity(x, edge)
        if method == "border":
            fg = fg_border
        elif method == "otsu":
            fg = fg_otsu
        else:
            on_edge = lambda m: (m & edge).flatten(1).sum(1)  # noqa: E731
            pick_otsu = (on_edge(fg_otsu) < on_edge(fg_border)).view(-1, 1, 1, 1)
            fg = torch.where(pick_otsu, fg_otsu, fg_border)

    if k > 1:
        fg = _close(_open(fg, k), k)
    if holes:
        fg = fill_holes(fg)
    if largest_component:
        fg = _largest(fg)
    out = fg.to(torch.float32)
    if empty == "full":
        none = out.flatten(1).amax(1) == 0
        if bool(none.any()):
            warnings.warn(f"foreground.estimate: {int(none.sum())} of {batch} samples have an empty foreground; "
                          "using the whole image for them (pass empty='keep' to get them empty)", stacklevel=2)
            out[none] = 1.0
    return out.contiguous()


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
    b = values.shape[0]
    idx = (values.clamp(0, 1) * (bins - 1) + 0.5).long()
    weight = torch.ones_like(values) if valid is None else valid.to(values.dtype)
    hist = torch.zeros((b, bins), dtype=torch.float64, device=values.device)
    hist.scatter_add_(1, idx, weight.to(torch.float64))
    levels = torch.arange(bins, dtype=torch.float64, device=values.device)
    w0 = hist.cumsum(1)
    m0 = (hist * levels).cumsum(1)
    total, mtot = w0[:, -1:], m0[:, -1:]
    w1 = total - w0
    between = (mtot * w0 - m0 * total) ** 2 / (w0 * w1).clamp_min(1e-12)
    between = torch.where((w0 > 0) & (w1 > 0), between, torch.zeros_like(between))
    t = between.argmax(1).to(torch.float32)
    return (t + 0.5) / (bins - 1)


def _border_distance(x: Tensor, edge: Tensor, min_contrast: float) -> Tensor:
    b, c = x.shape[:2]
    band = x.flatten(2)[:, :, edge.flatten()]  # (B, C, N)
    bg = band.median(dim=2).values.view(b, c, 1, 1)
    dist = ((x - bg) ** 2).mean(1).sqrt()  # (B, H, W) RMS over channels, in [0, 1]
    # Foreground differs from the background colour more than the background varies along the border.
    spread = dist.flatten(1)[:, edge.flatten()].quantile(_BORDER_QUANTILE, dim=1)
    t = (_BORDER_MARGIN * spread).clamp_min(min_contrast)
    return (dist > t.view(b, 1, 1)).unsqueeze(1)


def _otsu_polarity(x: Tensor, edge: Tensor) -> Tensor:
    grey = x.mean(1) if x.shape[1] == 1 else 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    t = otsu_threshold(grey.flatten(1))
    upper = (grey > t.view(-1, 1, 1)).unsqueeze(1)
    upper_on_edge = (upper & edge).flatten(1).float().mean(1) / edge.float().mean()
    bright_background = (upper_on_edge > 0.5).view(-1, 1, 1, 1)
    return torch.where(bright_background, ~upper, upper)


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
def _max_filter(x: Tensor, k: int) -> Tensor:
    """k x k max filter of a ``(B, 1, H, W)`` tensor (outside counts as the minimum), separable: torch's CPU
    ``max_pool2d`` with stride 1 is ~50x slower than these shifted maxima."""
    r = k // 2
    for dim in (-1, -2):
        src, out = x, x.clone()
        n = x.shape[dim]
        for d in range(1, min(r, n - 1) + 1):
            head, tail = out.narrow(dim, d, n - d), out.narrow(dim, 0, n - d)
            torch.maximum(head, src.narrow(dim, 0, n - d), out=head)
            torch.maximum(tail, src.narrow(dim, d, n - d), out=tail)
        x = out
    return x


def _dilate(m: Tensor, k: int) -> Tensor:
    return _max_filter(m.to(torch.bool), k)


def _erode(m: Tensor, k: int) -> Tensor:
    # Outside the image counts as foreground, so objects touching the border are not eaten from there.
    return ~_dilate(~m, k)


def _open(m: Tensor, k: int) -> Tensor:
    return _dilate(_erode(m, k), k)


def _close(m: Tensor, k: int) -> Tensor:
    return _erode(_dilate(m, k), k)


_COARSE = 64  # connectivity is analysed on a grid of at most this many cells per side


def components(mask: Tensor) -> Tensor:
    """8-connected component labels of a ``(B, 1, H, W)`` bool mask: ``(B, H*W)`` int64, -1 off the mask, else
    the largest flat pixel index of the pixel's component (label propagation by 3x3 max-pooling until stable).

    The number of passes grows with a component's geodesic length, so callers run it on a coarse grid.
    """
    m = mask.to(torch.bool)
    b, _, h, w = m.shape
    n = h * w
    dtype = torch.float32 if n < 2**24 else torch.float64  # pixel indices are exact in the float type
    inside = m.to(dtype)
    lab = (torch.arange(1, n + 1, dtype=dtype, device=m.device).view(1, 1, h, w) * inside).contiguous()
    while True:
        prev = lab
        for _ in range(8):
            lab = _max_filter(lab, 3) * inside
        if torch.equal(lab, prev):
            return lab.view(b, n).to(torch.int64) - 1


def _coarse(m: Tensor) -> tuple[Tensor, int]:
    """Any-pooled mask on a grid of at most ``_COARSE`` cells per side, and the cell size."""
    f = max(1, -(-max(m.shape[-2:]) // _COARSE))
    if f == 1:
        return m, 1
    return F.max_pool2d(m.to(torch.float32), f, stride=f, ceil_mode=True) > 0, f


def _fine(c: Tensor, f: int, size: tuple[int, int]) -> Tensor:
    if f == 1:
        return c
    return c.repeat_interleave(f, -2).repeat_interleave(f, -1)[..., : size[0], : size[1]]


def fill_holes(mask: Tensor) -> Tensor:
    """Fills background regions of a ``(B, 1, H, W)`` bool mask that do not reach the image border.

    Connectivity is found on a coarse grid (cells with no foreground at all are background), then the rim between
    the coarse outside and the object is grown at full resolution, so holes narrower than a cell are filled too.
    """
    m = mask.to(torch.bool)
    h, w = m.shape[-2:]
    cm, f = _coarse(m)
    b, _, ch, cw = cm.shape
    lab = components(~cm)  # coarse background components; those touching the border are "outside"
    edge = _border_band(ch, cw, 1, m.device).flatten().expand(b, -1)
    on_edge = torch.zeros((b, ch * cw + 1), dtype=torch.bool, device=m.device)
    on_edge.scatter_(1, torch.where(edge & (lab >= 0), lab, ch * cw), True)
    outside = torch.gather(on_edge, 1, torch.where(lab >= 0, lab, ch * cw)).view(b, 1, ch, cw)
    out = (_fine(outside, f, (h, w)) & ~m).to(torch.float32)
    free = (~m).to(torch.float32)
    for _ in range(2 * f):  # reach the background pixels of cells that hold some foreground
        out = _max_filter(out, 3) * free
    return m | (out == 0)


def largest_component(mask: Tensor) -> Tensor:
    """Keeps the largest 8-connected component of each ``(B, 1, H, W)`` bool mask (empty stays empty).

    Components are found on a coarse grid (pieces closer than a cell merge) and sized by their full-resolution
    pixel count.
    """
    m = mask.to(torch.bool)
    h, w = m.shape[-2:]
    cm, f = _coarse(m)
    b, _, ch, cw = cm.shape
    labels = components(cm) + 1  # 0 = off the mask
    count = F.avg_pool2d(m.to(torch.float32), f, stride=f, ceil_mode=True).flatten(1) if f > 1 else m.flatten(1).float()
    sizes = torch.zeros((b, ch * cw + 1), dtype=torch.float32, device=m.device)
    sizes.scatter_add_(1, labels, count)
    sizes[:, 0] = 0
    keep = sizes.argmax(1, keepdim=True)
    cell = ((labels == keep) & (keep > 0)).view(b, 1, ch, cw)
    return m & _fine(cell, f, (h, w))


_largest = largest_component  # estimate()'s argument of the same name shadows the function there
