"""Pictures of 3D anomalies without a GPU or a display: numpy renderings and a contact sheet.

open3d's offscreen renderer needs EGL / Vulkan, which headless machines usually lack ("Failed to load vulkan
library" here), so the pictures are computed directly:

- :func:`render_points`: an orthographic splat of a point cloud with a z-buffer, shaded from the z-buffer's
  own slopes (so bulges and dents show as light and shadow), optionally coloured per point (labels in red, or a
  signed value such as the displacement through a blue-white-red map);
- :func:`shade_xyz`: an organized cloud (``(3, H, W)``, 0 = invalid) as a Lambert-shaded depth image;
- :func:`colormap`: signed values -> blue-white-red; :func:`contact_sheet`: rows of titled pictures as one PNG.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

_BACKGROUND = np.array([32, 32, 32], dtype=np.uint8)
_LIGHT = np.array([-0.4, -0.5, 1.0]) / math.sqrt(0.16 + 0.25 + 1.0)  # from the upper left, towards the viewer


def colormap(values: np.ndarray, limit: float | None = None) -> np.ndarray:
    """Signed values -> ``(..., 3)`` uint8: blue (-limit) -> white (0) -> red (+limit)."""
    v = np.asarray(values, dtype=np.float64)
    lim = float(np.abs(v).max()) if limit is None else float(limit)
    t = np.clip(v / lim, -1.0, 1.0) if lim > 0 else np.zeros_like(v)
    pos, neg = np.clip(t, 0, 1), np.clip(-t, 0, 1)
    rgb = np.stack([1.0 - neg, 1.0 - pos - neg, 1.0 - pos], axis=-1)
    return (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)


def _lambert(normals: np.ndarray) -> np.ndarray:
    return 0.35 + 0.65 * np.clip(normals @ _LIGHT, 0.0, 1.0)


def shade_xyz(xyz: Any) -> np.ndarray:
    """``(3, H, W)`` organized cloud (camera frame, 0 = invalid) -> ``(H, W, 3)`` uint8 shaded grey picture.

    Normals from central differences on the grid (cross product of the two tangents), facing the camera.
    """
    p = np.asarray(xyz.cpu() if hasattr(xyz, "cpu") else xyz, dtype=np.float64).transpose(1, 2, 0)
    valid = np.abs(p).sum(-1) > 0
    du = np.zeros_like(p)
    dv = np.zeros_like(p)
    du[:, 1:-1] = p[:, 2:] - p[:, :-2]
    dv[1:-1] = p[2:] - p[:-2]
    ok = valid.copy()
    ok[:, 1:-1] &= valid[:, 2:] & valid[:, :-2]
    ok[1:-1] &= valid[2:] & valid[:-2]
    ok[:, [0, -1]] = False
    ok[[0, -1]] = False
    n = np.cross(du, dv)
    norm = np.linalg.norm(n, axis=-1, keepdims=True)
    n = np.where(norm > 0, n / np.where(norm > 0, norm, 1), 0)
    n = np.where((np.einsum("hwc,hwc->hw", n, -p) < 0)[..., None], -n, n)  # face the camera
    n = n * np.array([1.0, -1.0, -1.0])  # camera frame (x right, y down, z forward) -> picture frame
    grey = np.where(ok, _lambert(n), np.where(valid, 0.5, 0.0))
    out = (grey[..., None] * np.array([225.0, 225.0, 235.0]) + 0.5).astype(np.uint8)
    out[~valid] = _BACKGROUND
    return out


def view_frame(points: np.ndarray, azimuth: float = 30.0, elevation: float = 25.0) -> dict[str, Any]:
    """A camera framing ``points``: rotation, centre and scale shared by renderings that must line up."""
    a, e = math.radians(azimuth), math.radians(elevation)
    rz = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, math.cos(e), -math.sin(e)], [0, math.sin(e), math.cos(e)]])
    rot = rx @ rz
    p = np.asarray(points, dtype=np.float64)
    centre = (p.min(0) + p.max(0)) / 2
    q = (p - centre) @ rot.T
    half = float(np.abs(q[:, :2]).max()) * 1.08 or 1.0
    return {"rot": rot, "centre": centre, "half": half, "n": len(p)}


def render_points(points: Any, *, frame: dict[str, Any] | None = None, colors: np.ndarray | None = None,
                  labels: np.ndarray | None = None, values: np.ndarray | None = None, limit: float | None = None,
                  size: int = 320, splat: int | None = None) -> np.ndarray:
    """Renders a point cloud as an ``(size, size, 3)`` uint8 picture (orthographic, nearest point wins).

    Args:
        points: ``(N, 3)``.
        frame: from :func:`view_frame` (default: framed on ``points``); pass the input's frame to render the
            anomalous cloud from the same viewpoint.
        colors: ``(N, 3)`` uint8 base colours (default light grey).
        labels: ``(N,)`` 0/1; labelled points are drawn red.
        values: ``(N,)`` signed values drawn through :func:`colormap` (e.g. the displacement), ``limit`` its range.
        splat: half-size in pixels of each point's square (default from the point density).
    """
    p = np.asarray(points.cpu() if hasattr(points, "cpu") else points, dtype=np.float64)
    f = frame or view_frame(p)
    q = (p - f["centre"]) @ f["rot"].T
    s = splat if splat is not None else max(1, min(6, round(0.35 * size / math.sqrt(max(f["n"], 1)))))
    px = np.floor((q[:, 0] / f["half"] * 0.5 + 0.5) * size).astype(np.int64)
    py = np.floor((0.5 - q[:, 1] / f["half"] * 0.5) * size).astype(np.int64)
    depth = -q[:, 2]  # larger = further from the viewer (who looks along -z of the rotated frame)
    if colors is not None:
        base = np.asarray(colors, dtype=np.float64)
    else:
        base = np.full((len(p), 3), 205.0)
    if values is not None:
        base = colormap(values, limit).astype(np.float64)
    if labels is not None:
        lab = np.asarray(labels).astype(bool)
        base[lab] = np.array([230.0, 40.0, 40.0])
    offs = np.arange(-s, s + 1)
    ox, oy = np.meshgrid(offs, offs)
    X = (px[:, None] + ox.ravel()[None]).ravel()
    Y = (py[:, None] + oy.ravel()[None]).ravel()
    src = np.repeat(np.arange(len(p)), ox.size)
    inside = (X >= 0) & (X < size) & (Y >= 0) & (Y < size)
    X, Y, src = X[inside], Y[inside], src[inside]
    pix = Y * size + X
    order = np.lexsort((src, depth[src], pix))  # per pixel: nearest first (ties: lower index)
    pix, src = pix[order], src[order]
    first = np.ones(len(pix), dtype=bool)
    first[1:] = pix[1:] != pix[:-1]
    pix, src = pix[first], src[first]
    zbuf = np.full(size * size, np.nan)
    zbuf[pix] = depth[src]
    z = zbuf.reshape(size, size)
    # slopes of the z-buffer (pixel units: half-width of the frame = size / 2 px) -> normals -> Lambert
    scale = size / (2 * f["half"])
    gy, gx = np.gradient(np.where(np.isnan(z), np.nanmax(z) if np.isfinite(z).any() else 0, z) * scale)
    n = np.stack([gx, gy, np.ones_like(z)], axis=-1)  # picture frame: depth grows away from the viewer
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    shade = np.clip(_lambert(n * np.array([1.0, -1.0, 1.0])), 0.0, 1.0).reshape(-1)
    img = np.tile(_BACKGROUND, (size * size, 1)).astype(np.float64)
    img[pix] = base[src] * shade[pix, None]
    return np.clip(img + 0.5, 0, 255).astype(np.uint8).reshape(size, size, 3)


def contact_sheet(rows: Sequence[Sequence[tuple[str, np.ndarray]]], captions: Sequence[str] | None = None, *,
                  thumb: int = 200) -> Image.Image:
    """Rows of ``(title, (H, W, 3) uint8)`` pictures as one image, each scaled to ``thumb`` px on its longer side,
    with the titles above and one caption per row on the left above it."""
    font = ImageFont.load_default()
    pad, text_h = 6, 14
    ncol = max(len(r) for r in rows)
    row_h = 2 * text_h + thumb + pad
    sheet = Image.new("RGB", (pad + ncol * (thumb + pad), pad + len(rows) * row_h), tuple(int(v) for v in _BACKGROUND))
    draw = ImageDraw.Draw(sheet)
    for i, row in enumerate(rows):
        y0 = pad + i * row_h
        if captions is not None:
            draw.text((pad, y0), captions[i], fill=(235, 235, 235), font=font)
        for j, (title, pic) in enumerate(row):
            im = Image.fromarray(np.asarray(pic, dtype=np.uint8))
            k = thumb / max(im.width, im.height)
            im = im.resize((max(1, round(im.width * k)), max(1, round(im.height * k))), Image.Resampling.BILINEAR)
            x = pad + j * (thumb + pad)
            draw.text((x, y0 + text_h), title, fill=(200, 200, 200), font=font)
            sheet.paste(im, (x, y0 + 2 * text_h))
    return sheet
