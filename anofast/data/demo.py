"""Built-in "normal" surfaces for ``anofast demo``: procedural ones (numpy, fixed seeds) and scikit-image's CC0
photographs of brick, grass and gravel when scikit-image is installed. No file or network access."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import Tensor

_SKIMAGE_NAMES = ("brick", "grass", "gravel")


def _upsample(grid: np.ndarray, h: int, w: int) -> np.ndarray:
    return np.asarray(Image.fromarray(grid.astype(np.float32), "F").resize((w, h), Image.Resampling.BICUBIC))


def _fbm(rng: np.random.Generator, h: int, w: int, cells: tuple[int, int], octaves: int) -> np.ndarray:
    """Fractal value noise in [0, 1]: ``octaves`` bicubic-upsampled random grids, each twice as fine."""
    out = np.zeros((h, w), np.float32)
    total = 0.0
    for o in range(octaves):
        amp = 0.5**o
        out += amp * _upsample(rng.random((cells[0] * 2**o + 1, cells[1] * 2**o + 1)), h, w)
        total += amp
    out /= total
    return (out - out.min()) / max(float(out.max() - out.min()), 1e-6)


def _mix(a: tuple[float, float, float], b: tuple[float, float, float], t: np.ndarray) -> np.ndarray:
    a_, b_ = np.asarray(a, np.float32), np.asarray(b, np.float32)
    return a_ + t[..., None] * (b_ - a_)


def brushed_metal(h: int, w: int) -> np.ndarray:
    """Grey metal with horizontal brushing streaks and a soft sheen."""
    rng = np.random.default_rng(101)
    noise = rng.random((h, w + 64)).astype(np.float32)
    k = max(8, w // 6)  # streak length: a box filter along x
    c = np.cumsum(noise, axis=1)
    streaks = (c[:, k:] - c[:, :-k])[:, :w] / k
    streaks = (streaks - streaks.mean()) / (streaks.std() + 1e-6)
    sheen = np.linspace(-1.0, 1.0, w, dtype=np.float32)[None, :]
    v = 0.62 + 0.05 * streaks + 0.08 * np.exp(-4.0 * sheen**2) + 0.04 * (_fbm(rng, h, w, (2, 2), 2) - 0.5)
    return np.stack([v, v * 1.01, v * 1.04], -1)


def woven_fabric(h: int, w: int) -> np.ndarray:
    """Plain-weave denim: blue warp over white weft in a checker of crossings."""
    rng = np.random.default_rng(102)
    period = max(4.0, min(h, w) / 20.0)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    u, v = x / period, y / period
    warp_on_top = (np.floor(u).astype(int) + np.floor(v).astype(int)) % 2 == 0
    across_warp = np.abs(np.sin(np.pi * u))  # thread profile: bright in the middle of a thread
    across_weft = np.abs(np.sin(np.pi * v))
    warp = _mix((0.08, 0.14, 0.30), (0.25, 0.38, 0.62), across_warp)
    weft = _mix((0.55, 0.56, 0.60), (0.86, 0.86, 0.88), across_weft)
    out = np.where(warp_on_top[..., None], warp, weft)
    return out * (0.92 + 0.16 * _fbm(rng, h, w, (6, 6), 3))[..., None]


def wood_grain(h: int, w: int) -> np.ndarray:
    """Plank of wood: growth rings bent by low-frequency noise, fine pores along the grain."""
    rng = np.random.default_rng(103)
    y = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
    bend = _fbm(rng, h, w, (2, 1), 3)
    rings = 0.5 + 0.5 * np.sin(2 * np.pi * (9.0 * y + 2.5 * bend))
    rings = rings**3  # narrow dark late-wood bands
    pores = _upsample(rng.random((h, max(2, w // 24))), h, w)
    t = np.clip(0.75 * rings + 0.25 * pores, 0.0, 1.0)
    return _mix((0.82, 0.62, 0.40), (0.50, 0.31, 0.16), t)


def painted_concrete(h: int, w: int) -> np.ndarray:
    """Grey-beige paint on concrete: blotchy tone, fine speckle and a few pits."""
    rng = np.random.default_rng(104)
    tone = _fbm(rng, h, w, (3, 3), 4)
    speckle = rng.random((h, w)).astype(np.float32)
    pits = rng.random((h, w)) < 0.0015
    v = 0.60 + 0.10 * tone + 0.06 * (speckle - 0.5)
    v = np.where(pits, v * 0.55, v)
    return np.stack([v * 1.04, v * 1.0, v * 0.92], -1)


def ceramic_tiles(h: int, w: int) -> np.ndarray:
    """Glazed square tiles with grout lines, each tile a slightly different shade."""
    rng = np.random.default_rng(105)
    n = 4
    ty = (np.arange(h) * n // h)[:, None]
    tx = (np.arange(w) * n // w)[None, :]
    shade = rng.uniform(0.85, 1.0, (n, n)).astype(np.float32)[ty, tx]
    fy = (np.arange(h) * n % h)[:, None] / h
    fx = (np.arange(w) * n % w)[None, :] / w
    grout = (np.minimum(fy, 1 - fy) < 0.03) | (np.minimum(fx, 1 - fx) < 0.03)
    glaze = shade * (0.9 + 0.1 * _fbm(rng, h, w, (8, 8), 2))
    tile = _mix((0.30, 0.45, 0.50), (0.55, 0.78, 0.82), glaze)
    return np.where(grout[..., None], np.float32(0.45), tile)


PROCEDURAL = {
    "brushed_metal": brushed_metal,
    "woven_fabric": woven_fabric,
    "wood_grain": wood_grain,
    "painted_concrete": painted_concrete,
    "ceramic_tiles": ceramic_tiles,
}


def _to_tensor(rgb: np.ndarray) -> Tensor:
    u8 = np.floor(np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return torch.from_numpy(u8).permute(2, 0, 1).contiguous()


def builtin_images(size: tuple[int, int]) -> tuple[list[tuple[str, Tensor]], str | None]:
    """The demo's normal images at ``size``, as ``(name, (3, H, W) uint8)`` pairs, always in the same order.

    Returns:
        The images, and a note for the user when scikit-image is missing (its photographs are then left out).
    """
    h, w = size
    images = [(name, _to_tensor(fn(h, w))) for name, fn in PROCEDURAL.items()]
    try:
        import skimage.data
    except ImportError:
        return images, "scikit-image is not installed: using procedural surfaces only (pip install scikit-image)"
    for name in _SKIMAGE_NAMES:
        grey = Image.fromarray(np.asarray(getattr(skimage.data, name)(), dtype=np.uint8), "L").convert("RGB")
        rgb = np.asarray(grey.resize((w, h), Image.Resampling.BILINEAR))
        images.append((f"skimage_{name}", torch.from_numpy(rgb.copy()).permute(2, 0, 1).contiguous()))
    return images, None
