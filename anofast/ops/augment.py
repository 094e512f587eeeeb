"""Texture augmentation for anomaly sources: DRAEM's, anomalib's and GLASS's op sets, batched and seeded.

Each sample gets ``count`` distinct ops of a set, in random order (DRAEM: 3 of 10), with its own magnitudes.
:func:`sample_texture_aug_params` draws them from the sample's seed only (``rng_uniform`` on
``Stream.AUG_CHOICE`` for the choice and order, on ``Stream.AUG_PARAMS`` for the magnitudes), so a sample's
augmentation never depends on the batch. :func:`augment_textures` applies them on uint8 textures, rounding to uint8
after every op like the source libraries do on uint8 images.

Ops that map a pixel value to a value (gamma, brightness multiply, solarize, posterize, invert) are 256-entry
tables built on the host when sampling. Ops whose table depends on the image (autocontrast, equalize, contrast)
build it at apply time (``texture_hist_lut``) from the histogram of the *intermediate* image; when every earlier op
of that sample is a table or a flip (which only permutes pixels), the source histogram is pushed through them
instead (exact, no image pass), and a caller can pass cached source histograms.

A sample's chain runs as fused ``texture_stage`` passes: a pass starts at an op that reads neighbours (sharpness,
rotate, flips; unless only tables precede it in the pass, which the kernel then applies to the bytes it reads) or at
a histogram op that needs the intermediate image, and carries the pointwise ops after it along, pixel by pixel, in
the same pass. With a ``box`` (e.g. the bounding box of the anomaly mask), each pass
computes only the region later passes read: the box is grown backwards (affine: the bounding box of the
inverse-mapped box plus the bilinear tap and 1 px; sharpness: a 1 px halo; pointwise ops: the same box), and a
pass before an image-histogram op computes the whole image. With a ``where`` mask (the anomaly placement mask),
the last pass computes only the mask's pixels: with Perlin masks that is ~5 % of the image where the box is ~70 %.
Inside the box (at the mask's pixels) the result equals the full-image chain bit for bit; elsewhere it is
unspecified. ``src_index`` lets the samples read their textures straight from a pool.

Random draws (``u[j]`` = uniform ``8 k + j`` of ``Stream.AUG_PARAMS`` for slot ``k``; choice: the ``count``
smallest of ``len(ops)`` uniforms of ``Stream.AUG_CHOICE``, in increasing order):

==================  =============================================  ==========================================
op                  magnitude (u0, u1, u2 uniforms of its slot)    kernel stage
==================  =============================================  ==========================================
gamma               ``g_c = lo + u_c (hi - lo)`` per channel       LUT ``255 (v/255)^g_c``
brightness_add      ``mul`` from u0, ``add`` from u1               BRIGHTNESS ``v + Y (mul - 1) + add``
brightness          ``f`` from u0                                  LUT ``v f``
contrast            ``f`` from u0                                  LUT ``v f + m (1 - f)``, m = grey mean
sharpness           ``f`` from u0                                  SHARPNESS (PIL ``ImageEnhance.Sharpness``)
hue_saturation      hue (degrees) u0, sat mul u1, sat add u2       HUESAT (HSV round trip)
solarize            applied if ``u0 < p``, threshold from u1       LUT ``255 - v`` where ``v >= t``
posterize           bits ``lo + floor(u0 (hi - lo + 1))``          LUT ``v & ~(2^(8 - bits) - 1)``
invert              applied if ``u0 < p``                          LUT ``255 - v``
autocontrast        cutoff % ``lo + floor(u0 (hi - lo + 1))``      LUT from the histogram (PIL ``autocontrast``)
equalize            none                                           LUT from the histogram (PIL ``equalize``)
rotate              degrees from u0                                AFFINE, bilinear, zero fill
hflip / vflip       none                                           AFFINE (exact mirror)
grayscale           none                                           GRAYSCALE
==================  =============================================  ==========================================

Host-built tables round with ``floor(x + 0.5)`` (float64); the PIL-derived ones (autocontrast, equalize,
posterize, solarize, invert) reproduce PIL's integer arithmetic exactly.

Mapping to the source libraries (what is exact, what is approximated):

* ``"draem"`` (VitjanZ/DRAEM ``data_loader.py``, imgaug 0.4): ``GammaContrast((0.5, 2), per_channel=True)``
  (imgaug truncates the table, we round); ``MultiplyAndAddToBrightness(mul=(0.8, 1.2), add=(-30, 30))`` becomes
  a luma shift ``Y (mul - 1) + add`` added to R, G and B, which is what multiply-then-add does in YCrCb (imgaug
  picks one of six colour spaces and a random order per image); ``pillike.EnhanceSharpness((0, 2))``: the
  smoothed image is PIL's exactly, the final blend is rounded where PIL truncates (outputs differ by at most 1); ``AddToHueAndSaturation((-50, 50), per_channel=True)`` is
  a float HSV round trip with hue +-70 degrees and saturation +-50/255 (imgaug quantises H to OpenCV's 0..180 and
  S to 0..255); ``Solarize(0.5, threshold=(32, 128))``, ``Posterize()`` (1..8 bits), ``Invert()``,
  ``pillike.Autocontrast()`` (cutoff 0..20 %) and ``pillike.Equalize()`` are exact; ``Affine(rotate=(-45, 45))``
  is bilinear with zero fill like imgaug's (sub-pixel centre conventions may differ).
* ``"anomalib"`` (``PerlinAnomalyGenerator``, torchvision v2 on float images): ``ColorJitter(contrast=(0.5, 2))``
  blends with the grey mean, here ``0.299 R + 0.587 G + 0.114 B`` of the per-channel histogram means
  (torchvision weights R by 0.2989; the mean of a linear map is the same map of the means); ``RandomPhotometricDistort(brightness=(0.8, 1.2))`` is a
  multiply table; ``RandomAdjustSharpness(2)`` is the same kernel as PIL's; ``ColorJitter(hue=+-50/360,
  saturation=(0.5, 1.5))`` becomes HSV hue +-50 degrees and an HSV saturation multiply (torchvision blends with
  the grey image for saturation, and applies the two in random order); ``RandomSolarize`` uses one threshold for
  the whole generator, taken here as ``solarize_threshold`` (uint8 units, default 80, the middle of anomalib's
  ``[32, 128]`` draw); ``RandomPosterize(4)``, ``RandomInvert(p=1)``, ``RandomEqualize(p=1)`` are PIL-exact on
  uint8 (anomalib runs them on float images, which torchvision quantises or floors differently);
  ``AutoAugment()`` (ImageNet policy: two random sub-ops with their own probabilities) is approximated by
  ``autocontrast`` with no cutoff: a decision, because equalize already has its own slot and autocontrast is the
  other histogram normalisation of that policy, so the slot stays distinct; ``RandomAffine(+-45)`` bilinear.
  All ops run on uint8 here, so every op rounds to uint8 (anomalib keeps float between ops).
* ``"glass"`` (cqylunlun/GLASS ``datasets/mvtec.py``, torchvision on PIL images): ``ColorJitter(contrast=(0.8,
  1.2))`` (PIL uses the rounded mean of the "L" image; we use the histogram mean), ``ColorJitter(brightness=(0.8,
  1.2))`` exact up to rounding, ``ColorJitter(saturation=(0.8, 1.2), hue=(-0.2, 0.2))`` as HSV hue +-72 degrees
  and saturation multiply (PIL blends with the grey image), ``RandomHorizontalFlip``/``RandomVerticalFlip``
  exact, ``RandomGrayscale`` (PIL's integer "L" vs our rounded float luma), ``RandomAutocontrast`` and
  ``RandomEqualize`` exact, ``RandomAffine(+-45)`` bilinear here (GLASS: nearest).
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
from torch import Tensor

from anofast._dispatch import dispatch
from anofast._rng import Stream
from anofast._validate import check_tensor
from anofast.ops.rng import rng_uniform
from anofast.ops.texture import (
    AFFINE,
    BRIGHTNESS,
    GRAYSCALE,
    HIST_AUTOCONTRAST,
    HIST_CONTRAST,
    HIST_EQUALIZE,
    HIST_NONE,
    HUESAT,
    IDENTITY,
    LUT,
    SHARPNESS,
)

__all__ = [
    "OP_NAMES",
    "RECIPES",
    "TextureAugParams",
    "augment_textures",
    "push_histogram",
    "sample_texture_aug_params",
]

OP_NAMES = (
    "gamma",
    "brightness_add",
    "brightness",
    "contrast",
    "sharpness",
    "hue_saturation",
    "solarize",
    "posterize",
    "invert",
    "autocontrast",
    "equalize",
    "rotate",
    "hflip",
    "vflip",
    "grayscale",
)
_OP_ID = {name: i for i, name in enumerate(OP_NAMES)}
UNIFORMS_PER_SLOT = 8  # counters 8k .. 8k+7 of Stream.AUG_PARAMS belong to slot k

# Kernel mode, histogram kind and default magnitudes of every op.
_OPS: dict[str, tuple[int, int, dict[str, Any]]] = {
    "gamma": (LUT, HIST_NONE, {"gamma": (0.5, 2.0), "per_channel": True}),
    "brightness_add": (BRIGHTNESS, HIST_NONE, {"mul": (0.8, 1.2), "add": (-30.0, 30.0)}),
    "brightness": (LUT, HIST_NONE, {"factor": (0.8, 1.2)}),
    "contrast": (LUT, HIST_CONTRAST, {"factor": (0.5, 2.0)}),
    "sharpness": (SHARPNESS, HIST_NONE, {"factor": (0.0, 2.0)}),
    "hue_saturation": (HUESAT, HIST_NONE, {"hue": (-70.0, 70.0), "sat_mul": (1.0, 1.0), "sat_add": (-50.0, 50.0)}),
    "solarize": (LUT, HIST_NONE, {"threshold": (32.0, 128.0), "p": 0.5}),
    "posterize": (LUT, HIST_NONE, {"bits": (1, 8)}),
    "invert": (LUT, HIST_NONE, {"p": 1.0}),
    "autocontrast": (LUT, HIST_AUTOCONTRAST, {"cutoff": (0, 20)}),
    "equalize": (LUT, HIST_EQUALIZE, {}),
    "rotate": (AFFINE, HIST_NONE, {"degrees": (-45.0, 45.0)}),
    "hflip": (AFFINE, HIST_NONE, {}),
    "vflip": (AFFINE, HIST_NONE, {}),
    "grayscale": (GRAYSCALE, HIST_NONE, {}),
}

Recipe = tuple[tuple[str, dict[str, Any]], ...]


_DRAEM_OPS = (
    "gamma",
    "brightness_add",
    "sharpness",
    "hue_saturation",
    "solarize",
    "posterize",
    "invert",
    "autocontrast",
    "equalize",
    "rotate",
)


def _recipe(solarize_threshold: float) -> dict[str, Recipe]:
    t = (solarize_threshold, solarize_threshold)
    return {
        "draem": tuple((name, {}) for name in _DRAEM_OPS),
        "anomalib": (
            ("contrast", {"factor": (0.5, 2.0)}),
            ("brightness", {"factor": (0.8, 1.2)}),
            ("sharpness", {"factor": (2.0, 2.0)}),
            ("hue_saturation", {"hue": (-50.0, 50.0), "sat_mul": (0.5, 1.5), "sat_add": (0.0, 0.0)}),
            ("solarize", {"threshold": t, "p": 1.0}),
            ("posterize", {"bits": (4, 4)}),
            ("invert", {}),
            ("autocontrast", {"cutoff": (0, 0)}),  # stands in for AutoAugment (module docstring)
            ("equalize", {}),
            ("rotate", {}),
        ),
        "glass": (
            ("contrast", {"factor": (0.8, 1.2)}),
            ("brightness", {"factor": (0.8, 1.2)}),
            ("hue_saturation", {"hue": (-72.0, 72.0), "sat_mul": (0.8, 1.2), "sat_add": (0.0, 0.0)}),
            ("hflip", {}),
            ("vflip", {}),
            ("grayscale", {}),
            ("autocontrast", {"cutoff": (0, 0)}),
            ("equalize", {}),
            ("rotate", {}),
        ),
    }


RECIPES = tuple(_recipe(80.0))


@dataclass(frozen=True)
class TextureAugParams:
    """Per-sample texture augmentation: ``K`` slots applied in order.

    Attributes:
        op_ids: ``(B, K)`` int32 index into :data:`OP_NAMES`.
        modes: ``(B, K)`` int32 ``texture_stage`` mode of each slot.
        hist: ``(B, K)`` int32 histogram-table kind (0 none, 1 autocontrast, 2 equalize, 3 contrast).
        fparams: ``(B, K, 4)`` float32 magnitudes in apply units: the stage's scalars for kernel modes
            (brightness_add: ``mul - 1, add``; hue_saturation: hue shift in sextants in [0, 6), saturation
            multiplier, saturation addend on [0, 1]; sharpness: factor; affine: the 2x2 inverse map), and the
            values the table was built from for table ops (gamma per channel; brightness / contrast factor;
            solarize threshold and applied flag; posterize bits; invert applied flag; autocontrast cutoff %).
        luts: ``(B, K, 3, 256)`` uint8 tables of table ops drawn at sampling time (identity elsewhere;
            histogram ops fill theirs at apply time).
    """

    op_ids: Tensor
    modes: Tensor
    hist: Tensor
    fparams: Tensor
    luts: Tensor

    @property
    def batch_size(self) -> int:
        return self.op_ids.shape[0]

    @property
    def count(self) -> int:
        return self.op_ids.shape[1]

    def to(self, device: torch.device | str) -> TextureAugParams:
        """A copy with every tensor on ``device``."""
        return TextureAugParams(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def index(self, idx: Tensor | slice | Sequence[int]) -> TextureAugParams:
        """The parameters of samples ``idx`` (any index valid on the leading dimension)."""
        if isinstance(idx, Tensor):
            idx = idx.to(self.op_ids.device)
        return TextureAugParams(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    def to_dict(self) -> dict[str, Any]:
        """Provenance record: op names per slot plus every tensor (:meth:`from_dict` rebuilds the params)."""
        names = [[OP_NAMES[i] for i in row] for row in self.op_ids.tolist()]
        return {"op_names": names, **{f.name: getattr(self, f.name) for f in fields(self)}}

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> TextureAugParams:
        """Inverse of :meth:`to_dict` (extra keys are ignored)."""
        return cls(**{f.name: record[f.name] for f in fields(cls)})


# --- host-side tables ------------------------------------------------------------------------------------------

_VALUES = np.arange(256, dtype=np.float64)
# (v / 255) for the gamma tables, computed once (torch, as the tables have always been built: their pow stays torch's).
_GAMMA_BASE = (torch.arange(256, dtype=torch.float64) / 255.0).view(1, 1, 256)


def _round_table(x: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(x + 0.5), 0, 255).astype(np.uint8)


def push_histogram(hist: Tensor, lut: Tensor) -> Tensor:
    """Histogram of ``lut`` applied to an image whose histogram is ``hist`` (both ``(N, 3, 256)``); exact."""
    return torch.zeros_like(hist).scatter_add_(2, lut.long(), hist)


# --- sampling ----------------------------------------------------------------------------------------------------
# The draws are float64 numpy arithmetic (IEEE, so the same bits as the torch expressions they replace, at a
# fraction of the per-call overhead); pow, cos and sin stay torch calls on tensors of the same shapes as always,
# so their (possibly vectorised) implementations see the same elements in the same lanes.


def _span(u: np.ndarray, rng: tuple[float, float]) -> np.ndarray:
    lo, hi = rng
    return lo + u * (hi - lo)


def _discrete(u: np.ndarray, rng: tuple[int, int]) -> np.ndarray:
    lo, hi = int(rng[0]), int(rng[1])
    return np.minimum(lo + np.floor(u * (hi - lo + 1)), hi)


def _draw(name: str, u: np.ndarray, kw: dict[str, Any]) -> tuple[np.ndarray, np.ndarray | None]:
    """``(n, 4)`` float64 magnitudes and an optional ``(n, 3 or 1, 256)`` uint8 table for ``n`` slots of op
    ``name`` (``u``: their ``(n, 8)`` float64 uniforms)."""
    n = u.shape[0]
    fp = np.zeros((n, 4), dtype=np.float64)
    lut = None
    if name == "gamma":
        g = np.ascontiguousarray(_span(u[:, :3] if kw["per_channel"] else np.repeat(u[:, :1], 3, axis=1), kw["gamma"]))
        fp[:, :3] = g
        lut = _round_table((255.0 * _GAMMA_BASE.pow(torch.from_numpy(g).unsqueeze(2))).numpy())
    elif name == "brightness_add":
        fp[:, 0] = _span(u[:, 0], kw["mul"]) - 1.0
        fp[:, 1] = _span(u[:, 1], kw["add"])
    elif name == "brightness":
        f = _span(u[:, 0], kw["factor"])
        fp[:, 0] = f
        lut = _round_table(_VALUES * f[:, None])[:, None]
    elif name in ("contrast", "sharpness"):
        fp[:, 0] = _span(u[:, 0], kw["factor"])
    elif name == "hue_saturation":
        # torch.remainder(x, 6): fmod, then + 6 where the (nonzero) remainder is negative.
        shift = np.fmod(_span(u[:, 0], kw["hue"]) / 60.0, 6.0)
        shift = np.where((shift != 0) & (shift < 0), shift + 6.0, shift)
        fp[:, 0] = np.where(shift.astype(np.float32) >= 6.0, 0.0, shift)  # keep [0, 6) after the float32 cast
        fp[:, 1] = _span(u[:, 1], kw["sat_mul"])
        fp[:, 2] = _span(u[:, 2], kw["sat_add"]) / 255.0
    elif name == "solarize":
        applied = (u[:, 0] < kw["p"]).astype(np.float64)
        t = _span(u[:, 1], kw["threshold"])
        fp[:, 0], fp[:, 1] = t, applied
        flip = (_VALUES >= t[:, None]) & (applied[:, None] > 0)
        lut = np.where(flip, 255.0 - _VALUES, _VALUES).astype(np.uint8)[:, None]
    elif name == "posterize":
        bits = _discrete(u[:, 0], kw["bits"])
        fp[:, 0] = bits
        keep = (256 - 2.0 ** (8 - bits)).astype(np.int64)  # mask with the top `bits` bits set
        lut = (np.arange(256) & keep[:, None]).astype(np.uint8)[:, None]
    elif name == "invert":
        applied = u[:, 0] < kw["p"]
        fp[:, 0] = applied
        lut = np.where(applied[:, None], 255.0 - _VALUES, _VALUES).astype(np.uint8)[:, None]
    elif name == "autocontrast":
        fp[:, 0] = _discrete(u[:, 0], kw["cutoff"])
    elif name == "rotate":
        theta = torch.from_numpy(_span(u[:, 0], kw["degrees"]) * (math.pi / 180.0))
        c, s = torch.cos(theta).numpy(), torch.sin(theta).numpy()
        # Inverse map (output offset -> source offset) of a counter-clockwise rotation on screen (y down).
        fp[:] = np.stack([c, -s, s, c], axis=1)
    elif name == "hflip":
        fp[:] = (-1.0, 0.0, 0.0, 1.0)
    elif name == "vflip":
        fp[:] = (1.0, 0.0, 0.0, -1.0)
    elif name not in ("equalize", "grayscale"):
        raise AssertionError(name)
    return fp, lut


def _resolve_ops(augmentations: str | Sequence[str | tuple[str, dict[str, Any]]], solarize_threshold: float) -> Recipe:
    recipes = _recipe(solarize_threshold)
    if isinstance(augmentations, str):
        if augmentations not in recipes:
            raise ValueError(f"augmentations must be one of {sorted(recipes)} or a sequence of op names, "
                             f"got {augmentations!r}")  # fmt: skip
        entries: Sequence[Any] = recipes[augmentations]
    else:
        entries = list(augmentations)
    ops = []
    for entry in entries:
        name, kw = (entry, {}) if isinstance(entry, str) else entry
        if name not in _OPS:
            raise ValueError(f"unknown texture augmentation {name!r}; known: {', '.join(OP_NAMES)}")
        unknown = set(kw) - set(_OPS[name][2])
        if unknown:
            raise ValueError(f"{name} takes {sorted(_OPS[name][2])}, got unknown settings {sorted(unknown)}")
        ops.append((name, {**_OPS[name][2], **kw}))
    if len({name for name, _ in ops}) != len(ops):
        raise ValueError(f"augmentations must not repeat an op, got {[name for name, _ in ops]}")
    return tuple(ops)


@functools.lru_cache(maxsize=64)
def _recipe_ops(name: str, solarize_threshold: float) -> tuple[Recipe, np.ndarray]:
    """A named recipe's ops and their ``(n_ops, 3)`` int32 (op id, mode, histogram kind) table (cached)."""
    ops = _resolve_ops(name, solarize_threshold)
    return ops, _op_table(ops)


def _op_table(ops: Recipe) -> np.ndarray:
    return np.array([[_OP_ID[name], *_OPS[name][:2]] for name, _ in ops], dtype=np.int32).reshape(len(ops), 3)


def sample_texture_aug_params(
    seeds: Tensor,
    *,
    augmentations: str | Sequence[str | tuple[str, dict[str, Any]]] = "draem",
    count: int = 3,
    solarize_threshold: float = 80.0,
    backend: str = "auto",
) -> TextureAugParams:
    """Draws ``count`` distinct ops per sample (random order) and their magnitudes, from the seeds only.

    Args:
        seeds: ``(B,)`` int64 per-sample seeds; sample ``i``'s params equal those drawn from ``seeds[i:i+1]``.
        augmentations: a recipe name (``"draem"``, ``"anomalib"``, ``"glass"``) or a sequence of op names from
            :data:`OP_NAMES`, each optionally as ``(name, {setting: value})`` to override its default ranges
            (e.g. ``("contrast", {"factor": (0.8, 1.2)})``).
        count: ops per sample, ``0 <= count <= len(ops)``.
        solarize_threshold: anomalib's generator-wide solarize threshold in uint8 units (``"anomalib"`` only).
        backend: backend of the ``rng_uniform`` draws (all agree bit for bit).

    Returns:
        :class:`TextureAugParams` on the CPU (move it with ``.to(device)``).

    Example:
        >>> p = sample_texture_aug_params(torch.tensor([1, 2]), augmentations="draem")
        >>> p.op_ids.shape
        torch.Size([2, 3])
    """
    seeds = check_tensor(seeds, "seeds")
    if seeds.dtype != torch.int64 or seeds.dim() != 1:
        raise TypeError(f"seeds must be a (B,) int64 tensor, got {seeds.dtype} of shape {tuple(seeds.shape)}")
    if not (isinstance(solarize_threshold, (int, float)) and 0.0 <= solarize_threshold <= 256.0):
        raise ValueError(f"solarize_threshold must be in [0, 256], got {solarize_threshold!r}")
    if isinstance(augmentations, str):
        ops, table = _recipe_ops(augmentations, float(solarize_threshold))
    else:
        ops = _resolve_ops(augmentations, float(solarize_threshold))
        table = _op_table(ops)
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= len(ops):
        raise ValueError(f"count must be an int in [0, {len(ops)}], got {count!r}")
    batch = seeds.shape[0]
    choice = rng_uniform(seeds, Stream.AUG_CHOICE, len(ops), backend=backend).cpu().numpy()
    order = np.argsort(choice, axis=1, kind="stable")[:, :count]  # a random permutation's first `count`
    u = rng_uniform(seeds, Stream.AUG_PARAMS, UNIFORMS_PER_SLOT * count, backend=backend).cpu().numpy()
    u = u.reshape(batch * count, UNIFORMS_PER_SLOT).astype(np.float64)
    slots = table[order]  # (B, count, 3)
    fparams = np.zeros((batch * count, 4), dtype=np.float64)
    luts = np.empty((batch * count, 3, 256), dtype=np.uint8)
    luts[:] = np.arange(256, dtype=np.uint8)
    flat_order = order.reshape(-1)
    for j, (name, kw) in enumerate(ops):
        idx = np.flatnonzero(flat_order == j)  # the slots (b * count + k) that drew op j
        if not idx.size:
            continue
        fp, lut = _draw(name, u[idx], kw)
        fparams[idx] = fp
        if lut is not None:
            luts[idx] = lut
    return TextureAugParams(
        op_ids=torch.from_numpy(np.ascontiguousarray(slots[..., 0])),
        modes=torch.from_numpy(np.ascontiguousarray(slots[..., 1])),
        hist=torch.from_numpy(np.ascontiguousarray(slots[..., 2])),
        fparams=torch.from_numpy(fparams.astype(np.float32).reshape(batch, count, 4)),
        luts=torch.from_numpy(luts.reshape(batch, count, 3, 256)),
    )


# --- application -------------------------------------------------------------------------------------------------

_POINTWISE = frozenset((IDENTITY, LUT, BRIGHTNESS, HUESAT, GRAYSCALE))
_SCRATCH = threading.local()
_PUSH, _IMAGE = 1, 2  # where a histogram-table stage gets its histogram
_EMPTY = (0, 0, 0, 0)


def _grow_box(box: tuple[int, ...], mode: int, fp: Sequence[float], height: int, width: int) -> tuple[int, ...]:
    """Source region a stage reads to write ``box``: +1 px for the 3x3 stencil; for the affine map the bounding box
    of the inverse-mapped corners plus the second bilinear tap and 1 px of margin. Clamped; empty stays empty."""
    y0, x0, y1, x1 = box
    if y1 <= y0 or x1 <= x0:
        return _EMPTY
    if mode == SHARPNESS:
        y0, x0, y1, x1 = y0 - 1, x0 - 1, y1 + 1, x1 + 1
    elif mode == AFFINE:
        cx, cy = (width - 1) * 0.5, (height - 1) * 0.5
        sxs, sys_ = [], []
        for x, y in ((x0, y0), (x1 - 1, y0), (x0, y1 - 1), (x1 - 1, y1 - 1)):
            sxs.append(fp[0] * (x - cx) + fp[1] * (y - cy) + cx)
            sys_.append(fp[2] * (x - cx) + fp[3] * (y - cy) + cy)
        y0, x0 = math.floor(min(sys_)) - 1, math.floor(min(sxs)) - 1
        y1, x1 = math.floor(max(sys_)) + 3, math.floor(max(sxs)) + 3
    y0, x0 = min(max(y0, 0), height), min(max(x0, 0), width)
    y1, x1 = min(max(y1, 0), height), min(max(x1, 0), width)
    return (y0, x0, y1, x1) if y1 > y0 and x1 > x0 else _EMPTY


def _scratch(like: Tensor) -> Tensor:
    """A buffer shaped like ``like`` for the intermediate passes, kept per thread (the latest shape only): a fresh
    (32, 3, 256, 256) buffer costs ~1500 page faults when first written, several ms on every call."""
    key = (tuple(like.shape), like.device)
    cached = getattr(_SCRATCH, "buf", None)
    if cached is None or cached[0] != key:
        cached = _SCRATCH.buf = (key, torch.empty_like(like))
    return cached[1]


def _mirrors(modes: np.ndarray, fparams: np.ndarray) -> np.ndarray:
    """``(B, K)`` bool: affine stages that map pixel centres onto pixel centres one to one (flips, identity). They
    only permute the pixels, so an image's histogram goes through them unchanged."""
    f = fparams
    return (modes == AFFINE) & (f[..., 1] == 0) & (f[..., 2] == 0) & (np.abs(f[..., 0]) == 1) & (np.abs(f[..., 3]) == 1)


@functools.lru_cache(maxsize=4096)
def _split(
    modes: tuple[int, ...], hist: tuple[int, ...], mirror: tuple[bool, ...]
) -> tuple[tuple[tuple[int, int], ...], tuple[int, ...]]:
    """Splits a chain into fused passes ``(k0, k1)`` and gives each stage's histogram source (0, ``_PUSH``,
    ``_IMAGE``).

    A histogram pushes exactly through tables and mirrors; a histogram stage behind any other stage needs the
    intermediate image, so it starts a pass. A pass holds at most one stage that reads neighbours (sharpness,
    affine), behind tables only (the kernel applies them to the bytes it reads): such a stage joins a pass of tables
    and starts a new pass otherwise. Pointwise stages join the running pass.
    """
    source = []
    starts = []
    pushable = True  # every earlier stage is a table or a mirror
    tables = True  # every stage of the running pass is a table
    for k, (m, h) in enumerate(zip(modes, hist)):
        source.append(0 if not h else _PUSH if pushable else _IMAGE)
        if k == 0 or source[k] == _IMAGE or (m not in _POINTWISE and not tables):
            starts.append(k)
            tables = True
        tables = tables and m in (LUT, IDENTITY)
        pushable = pushable and (m == LUT or mirror[k])
    return tuple(zip(starts, [*starts[1:], len(modes)])), tuple(source)


def _pass_boxes(
    passes: tuple[tuple[int, int], ...],
    source: tuple[int, ...],
    modes: list[int],
    fparams: list[list[float]],
    box: tuple[int, ...],
    height: int,
    width: int,
) -> list[tuple[int, ...]]:
    """The box each pass writes, grown backwards from ``box`` through the passes' stages that read neighbours (the
    others are pointwise); before a pass that starts with an image histogram, the whole image."""
    boxes = [box] * len(passes)
    cur = box
    for i in range(len(passes) - 1, 0, -1):
        k0, k1 = passes[i]
        for k in range(k0, k1):
            if modes[k] not in _POINTWISE:
                cur = _grow_box(cur, modes[k], fparams[k], height, width)
        if source[k0] == _IMAGE and cur != _EMPTY:
            cur = (0, 0, height, width)  # the histogram reads the whole intermediate image
        boxes[i - 1] = cur
    return boxes


def _check_driver_args(textures, params, box, source_hist, where, sparse, src_index):
    t = check_tensor(textures, "textures")
    if t.dtype != torch.uint8 or t.dim() != 4 or t.shape[1] != 3:
        raise TypeError(f"textures must be a (N, 3, H, W) uint8 tensor, got {t.dtype} of shape {tuple(t.shape)}")
    if not isinstance(params, TextureAugParams):
        raise TypeError(f"params must be TextureAugParams, got {type(params).__name__}")
    n, _, height, width = t.shape
    batch, dev = params.batch_size, t.device

    def check(x, name, dtypes, shape):
        x = check_tensor(x, name)
        if x.dtype not in dtypes or tuple(x.shape) != shape:
            names = " or ".join(str(d) for d in dtypes)
            raise ValueError(f"{name} must be a {shape} {names} tensor, got {x.dtype} {tuple(x.shape)}")
        if x.device != dev:
            raise ValueError(f"{name} is on {x.device} but textures are on {dev}")
        return x

    if src_index is None:
        if n != batch:
            raise ValueError(f"params are for {batch} samples but textures has {n} (pass src_index to index a pool)")
        index = list(range(batch))
    else:
        src_index = check(src_index, "src_index", (torch.int64,), (batch,)).contiguous()
        index = src_index.tolist()
        if any(i < 0 or i >= n for i in index):
            raise ValueError(f"src_index must lie in [0, {n}), got {index}")
    if box is None:
        boxes = [(0, 0, height, width)] * batch
    else:
        box = check(box, "box", (torch.int32, torch.int64), (batch, 4))
        boxes = [tuple(b) for b in box.tolist()]
        if any(y0 < 0 or x0 < 0 or y1 > height or x1 > width for y0, x0, y1, x1 in boxes):
            raise ValueError(f"box must lie inside the {height}x{width} image, got {boxes}")
    if source_hist is not None:
        source_hist = check(source_hist, "source_hist", (torch.int32,), (n, 3, 256))
    if where is not None:
        where = check(where, "where", (torch.float32,), (batch, 1, height, width)).contiguous()
    if sparse is not None:
        if where is None:
            raise ValueError("sparse needs where")
        sparse = check(sparse, "sparse", (torch.bool,), (batch,)).contiguous()
    return t.contiguous(), boxes, index, source_hist, where, sparse, src_index


def augment_textures(
    textures: Tensor,
    params: TextureAugParams,
    box: Tensor | None = None,
    *,
    source_hist: Tensor | None = None,
    where: Tensor | None = None,
    sparse: Tensor | None = None,
    src_index: Tensor | None = None,
    out: Tensor | None = None,
    backend: str = "auto",
) -> Tensor:
    """Applies each sample's augmentation chain to its texture.

    Each sample's chain runs as few fused passes as its ops allow (about one pass per stage that reads neighbours or
    needs an intermediate image's histogram, the pointwise stages riding along; see the module docstring); with
    ``where``, the last pass computes only the mask's pixels, and the earlier ones only the boxes that the later ones
    read.

    Args:
        textures: ``(B, 3, H, W)`` uint8 anomaly-source textures, already at the image size; with ``src_index``, a
            ``(N, 3, H, W)`` pool that the samples index.
        params: from :func:`sample_texture_aug_params` (moved to the textures' device or not).
        box: optional ``(B, 4)`` int ``(y0, x0, y1, x1)`` (exclusive ends) where the result is needed, e.g. the
            bounding box of the anomaly mask. Each pass computes only what later passes read.
        source_hist: optional ``(N, 3, 256)`` int32 histograms of ``textures`` (``texture_histogram``; one per
            texture, so per pool entry with ``src_index``), e.g. cached per texture of a bank; computed when needed
            otherwise.
        where: optional ``(B, 1, H, W)`` float32 mask (the anomaly placement mask): for a sample with ``sparse[b]``
            the result is needed only at its pixels with ``where > 0.5`` inside ``box``.
        sparse: optional ``(B,)`` bool, the samples that ``where`` restricts (default: all).
        src_index: optional ``(B,)`` int64: sample ``b`` augments ``textures[src_index[b]]`` (no gathered copy).
        out: optional ``(B, 3, H, W)`` uint8 contiguous buffer for the result, not ``textures`` (reusing one across
            calls saves the page faults of first writes to fresh memory, a few ms per 256² batch of 32 on the CPU).
        backend: ``auto``, ``reference``, ``cpp`` or ``triton`` for the stage, histogram and table kernels.

    Returns:
        ``(B, 3, H, W)`` uint8: ``out``, or a new tensor. Inside ``box`` (for a ``sparse`` sample: at its ``where``
        pixels inside ``box``) it equals running the whole chain on the full image, bit for bit; **elsewhere its
        content is unspecified** (stale or uninitialised memory). With no ops (``count == 0``) it is the texture
        itself there.

    Raises:
        TypeError / ValueError: wrong dtypes, shapes, devices, a box outside the image or an index outside the pool.
    """
    textures, boxes, index, source_hist, where, sparse, src_index = _check_driver_args(
        textures, params, box, source_hist, where, sparse, src_index
    )
    batch, (height, width), dev = params.batch_size, textures.shape[2:], textures.device
    if out is None:
        result = torch.empty((batch, 3, height, width), dtype=torch.uint8, device=dev)
    else:
        result = check_tensor(out, "out")
        if (result.dtype != torch.uint8 or tuple(result.shape) != (batch, 3, height, width) or result.device != dev
                or not result.is_contiguous() or result.data_ptr() == textures.data_ptr()):
            raise ValueError(f"out must be a contiguous ({batch}, 3, {height}, {width}) uint8 tensor on {dev}, "
                             f"not textures")  # fmt: skip
    if batch == 0:
        return result
    if params.count == 0:  # no ops: one IDENTITY pass still delivers the texture
        zeros = torch.zeros(batch, 1, dtype=torch.int32)
        params = TextureAugParams(op_ids=zeros, modes=zeros, hist=zeros, fparams=torch.zeros(batch, 1, 4),
                                  luts=torch.arange(256, dtype=torch.uint8).expand(batch, 1, 3, 256))  # fmt: skip
    fp_np = params.fparams.cpu().numpy()
    if not np.isfinite(fp_np).all():
        raise ValueError("params.fparams contains NaN or infinite values")
    modes = params.modes.tolist()
    kinds = params.hist.cpu().numpy()
    luts = params.luts.cpu().numpy().copy()  # histogram stages get their tables written in
    # The small per-sample tables live on the host; images stay on their device.
    mirror = _mirrors(params.modes.cpu().numpy(), fp_np).tolist()
    kinds_list, fp_list = kinds.tolist(), fp_np.tolist()
    plans = []  # per sample: passes (k0, k1), histogram sources, boxes
    for b in range(batch):
        passes, source = _split(tuple(modes[b]), tuple(kinds_list[b]), tuple(mirror[b]))
        plans.append((passes, source, _pass_boxes(passes, source, modes[b], fp_list[b], boxes[b], height, width)))
    stage = dispatch("texture_stage", dev, backend)
    histogram = dispatch("texture_histogram", dev, backend)
    hist_lut = dispatch("texture_hist_lut", dev, backend)

    def on_dev(a: np.ndarray) -> Tensor:
        return torch.from_numpy(a).to(dev)

    def fill_tables(samples: list[int], stages: list[int], hists: Tensor) -> None:
        s, k = np.array(samples), np.array(stages)
        luts[s, k] = hist_lut(hists.to(dev).contiguous(), on_dev(kinds[s, k]), on_dev(fp_np[s, k, 0])).cpu().numpy()

    # Histogram stages behind tables and mirrors only: push the source histograms through them, in stage order.
    push = [(b, k) for b, (passes, source, bxs) in enumerate(plans) for (k0, k1), bx in zip(passes, bxs)
            if bx != _EMPTY for k in range(k0, k1) if source[k] == _PUSH]  # fmt: skip
    if push:
        track = sorted({b for b, _ in push})
        row = {b: i for i, b in enumerate(track)}
        src_of = torch.tensor([index[b] for b in track], dtype=torch.int64, device=dev)
        pushed = (histogram(textures, src_of) if source_hist is None else source_hist[src_of]).cpu()
        last = max(k for _, k in push)
        for k in range(last + 1):
            now = [b for b, kk in push if kk == k]
            if now:
                fill_tables(now, [k] * len(now), pushed[[row[b] for b in now]])
            if k < last:  # garbage for rows whose stage k is neither: they push no further
                table = luts[track, k]
                table[[mirror[b][k] for b in track]] = np.arange(256, dtype=np.uint8)  # a mirror keeps the histogram
                pushed = push_histogram(pushed, torch.from_numpy(table))

    # Pass j runs pass j - (n_passes - len(passes_b)) of every sample: all samples end together, in `result`.
    n_passes = max(len(passes) for passes, _, _ in plans)
    bufs = [result, _scratch(result) if n_passes > 1 else None]
    image = None
    rows = np.arange(batch)[:, None]
    for j in range(n_passes):
        dst = bufs[(n_passes - 1 - j) % 2]
        last = j == n_passes - 1
        starters, continuers = [], []
        for b, (passes, source, bxs) in enumerate(plans):
            i = j - (n_passes - len(passes))
            if i >= 0 and bxs[i] != _EMPTY:
                (starters if i == 0 else continuers).append((b, passes[i], bxs[i]))
        need = [(b, k0) for b, (k0, _), _ in continuers if plans[b][1][k0] == _IMAGE]
        if need:
            at = torch.tensor([b for b, _ in need], dtype=torch.int64, device=dev)
            fill_tables([b for b, _ in need], [k for _, k in need], histogram(image, at))
        for members, src, idx in ((starters, textures, src_index), (continuers, image, None)):
            if not members:
                continue
            n_stages = max(k1 - k0 for _, (k0, k1), _ in members)
            sel = [[0] * n_stages] * batch
            mode = [[IDENTITY] * n_stages] * batch  # IDENTITY pads shorter chains
            bx = [_EMPTY] * batch  # samples not in this call
            for b, (k0, k1), box_b in members:
                pad = [0] * (n_stages - (k1 - k0))
                sel[b], mode[b], bx[b] = [*range(k0, k1), *pad], [*modes[b][k0:k1], *pad], box_b
            sel = np.array(sel)
            stage(src, on_dev(np.array(mode, dtype=np.int32)), on_dev(fp_np[rows, sel]), on_dev(luts[rows, sel]),
                  on_dev(np.array(bx, dtype=np.int32)), dst, where if last else None, sparse if last else None,
                  idx)  # fmt: skip
        image = dst
    return result
