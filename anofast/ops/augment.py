"""Texture augmentation for anomaly sources: DRAEM's, anomalib's and GLASS's op sets, batched and seeded.

Each sample gets ``count`` distinct ops of a set, in random order (DRAEM: 3 of 10), with its own magnitudes.
:func:`sample_texture_aug_params` draws them from the sample's seed only (``rng_uniform`` on
``Stream.AUG_CHOICE`` for the choice and order, on ``Stream.AUG_PARAMS`` for the magnitudes), so a sample's
augmentation never depends on the batch. :func:`augment_textures` applies them as ``count`` batched
``texture_stage`` launches (one per slot, per-sample mode), on uint8 textures, rounding to uint8 after every op
like the source libraries do on uint8 images.

Ops that map a pixel value to a value (gamma, brightness multiply, solarize, posterize, invert) are 256-entry
tables built on the host when sampling. Ops whose table depends on the image (autocontrast, equalize, contrast)
build it at apply time (``texture_hist_lut``) from the histogram of the *intermediate* image; when every earlier op
of that sample is a table, the source histogram is pushed through those tables instead (exact, no image pass), and
a caller can pass cached source histograms.

With a ``box`` (e.g. the bounding box of the anomaly mask), each stage computes only the region later stages read:
the box is grown backwards through the slots (affine: the bounding box of the inverse-mapped box plus the bilinear
tap and 1 px; sharpness: a 1 px halo; pointwise ops: the same box), and a histogram slot that cannot push its
histogram needs the whole previous image. Inside the box the result equals the full-image chain bit for bit;
outside it is unspecified.

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

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

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
    LUT,
    SHARPNESS,
    texture_histogram,
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


def _round_table(x: Tensor) -> Tensor:
    return torch.floor(x + 0.5).clamp_(0, 255).to(torch.uint8)


def _identity_lut(n: int) -> Tensor:
    return torch.arange(256, dtype=torch.uint8).expand(n, 3, 256).contiguous()


def push_histogram(hist: Tensor, lut: Tensor) -> Tensor:
    """Histogram of ``lut`` applied to an image whose histogram is ``hist`` (both ``(N, 3, 256)``); exact."""
    return torch.zeros_like(hist).scatter_add_(2, lut.long(), hist)


# --- sampling ----------------------------------------------------------------------------------------------------


def _span(u: Tensor, rng: tuple[float, float]) -> Tensor:
    lo, hi = rng
    return lo + u * (hi - lo)


def _discrete(u: Tensor, rng: tuple[int, int]) -> Tensor:
    lo, hi = int(rng[0]), int(rng[1])
    return (lo + torch.floor(u * (hi - lo + 1))).clamp(max=hi)


def _affine_params(m00: Tensor, m01: Tensor, m10: Tensor, m11: Tensor) -> Tensor:
    return torch.stack([m00, m01, m10, m11], dim=1)


def _draw(name: str, u: Tensor, kw: dict[str, Any]) -> tuple[Tensor, Tensor | None]:
    """``(n, 4)`` float64 magnitudes and an optional ``(n, 3, 256)`` uint8 table for ``n`` slots of op ``name``
    (``u``: their ``(n, 8)`` float64 uniforms)."""
    n = u.shape[0]
    zero = torch.zeros(n, dtype=torch.float64)
    values = torch.arange(256, dtype=torch.float64)
    if name == "gamma":
        g = _span(u[:, :3] if kw["per_channel"] else u[:, :1].expand(n, 3), kw["gamma"])
        lut = _round_table(255.0 * (values / 255.0).view(1, 1, 256).pow(g.unsqueeze(2)))
        return torch.cat([g, zero[:, None]], dim=1), lut
    if name == "brightness_add":
        mul, add = _span(u[:, 0], kw["mul"]), _span(u[:, 1], kw["add"])
        return torch.stack([mul - 1.0, add, zero, zero], dim=1), None
    if name == "brightness":
        f = _span(u[:, 0], kw["factor"])
        return torch.stack([f, zero, zero, zero], dim=1), _round_table(values * f.view(n, 1, 1)).expand(n, 3, 256)
    if name in ("contrast", "sharpness"):
        return torch.stack([_span(u[:, 0], kw["factor"]), zero, zero, zero], dim=1), None
    if name == "hue_saturation":
        shift = torch.remainder(_span(u[:, 0], kw["hue"]) / 60.0, 6.0)
        shift = torch.where(shift.to(torch.float32) >= 6.0, 0.0, shift)  # keep [0, 6) after the float32 cast
        sat_add = _span(u[:, 2], kw["sat_add"]) / 255.0
        return torch.stack([shift, _span(u[:, 1], kw["sat_mul"]), sat_add, zero], dim=1), None
    if name == "solarize":
        applied = (u[:, 0] < kw["p"]).to(torch.float64)
        t = _span(u[:, 1], kw["threshold"])
        flip = (values.view(1, 256) >= t.view(n, 1)) & (applied.view(n, 1) > 0)
        lut = torch.where(flip, 255.0 - values, values).to(torch.uint8).unsqueeze(1).expand(n, 3, 256)
        return torch.stack([t, applied, zero, zero], dim=1), lut
    if name == "posterize":
        bits = _discrete(u[:, 0], kw["bits"])
        keep = (256 - (2 ** (8 - bits))).to(torch.int64).view(n, 1)  # mask with the top `bits` bits set
        lut = (torch.arange(256).view(1, 256) & keep).to(torch.uint8).unsqueeze(1).expand(n, 3, 256)
        return torch.stack([bits, zero, zero, zero], dim=1), lut
    if name == "invert":
        applied = (u[:, 0] < kw["p"]).to(torch.float64)
        lut = torch.where(applied.view(n, 1) > 0, 255.0 - values, values).to(torch.uint8)
        return torch.stack([applied, zero, zero, zero], dim=1), lut.unsqueeze(1).expand(n, 3, 256)
    if name == "autocontrast":
        return torch.stack([_discrete(u[:, 0], kw["cutoff"]), zero, zero, zero], dim=1), None
    if name == "equalize" or name == "grayscale":
        return torch.zeros(n, 4, dtype=torch.float64), None
    if name == "rotate":
        theta = _span(u[:, 0], kw["degrees"]) * (math.pi / 180.0)
        c, s = torch.cos(theta), torch.sin(theta)
        # Inverse map (output offset -> source offset) of a counter-clockwise rotation on screen (y down).
        return _affine_params(c, -s, s, c), None
    if name == "hflip":
        one = torch.ones(n, dtype=torch.float64)
        return _affine_params(-one, zero, zero, one), None
    if name == "vflip":
        one = torch.ones(n, dtype=torch.float64)
        return _affine_params(one, zero, zero, -one), None
    raise AssertionError(name)


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
    ops = _resolve_ops(augmentations, float(solarize_threshold))
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= len(ops):
        raise ValueError(f"count must be an int in [0, {len(ops)}], got {count!r}")
    batch = seeds.shape[0]
    choice = rng_uniform(seeds, Stream.AUG_CHOICE, len(ops), backend=backend).cpu()
    order = torch.sort(choice, dim=1, stable=True).indices[:, :count]  # a random permutation's first `count`
    u = rng_uniform(seeds, Stream.AUG_PARAMS, UNIFORMS_PER_SLOT * count, backend=backend).cpu()
    u = u.view(batch * count, UNIFORMS_PER_SLOT).to(torch.float64)
    table = torch.tensor([[_OP_ID[name], *_OPS[name][:2]] for name, _ in ops], dtype=torch.int32)[order]
    op_ids, modes, hist = table[..., 0].contiguous(), table[..., 1].contiguous(), table[..., 2].contiguous()
    fparams = torch.zeros(batch * count, 4, dtype=torch.float64)
    luts = _identity_lut(batch * count)
    flat_order = order.flatten()
    for j, (name, kw) in enumerate(ops):
        idx = (flat_order == j).nonzero().flatten()  # the slots (b * count + k) that drew op j
        if not idx.numel():
            continue
        fp, lut = _draw(name, u[idx], kw)
        fparams[idx] = fp
        if lut is not None:
            luts[idx] = lut
    fparams = fparams.view(batch, count, 4)
    luts = luts.view(batch, count, 3, 256)
    return TextureAugParams(op_ids=op_ids, modes=modes, hist=hist, fparams=fparams.to(torch.float32), luts=luts)


# --- application -------------------------------------------------------------------------------------------------


def _grow_box(box: list[int], mode: int, fp: list[float], height: int, width: int) -> list[int]:
    """Source region a stage reads to write ``box``: +1 px for the 3x3 stencil; for the affine map the bounding box
    of the inverse-mapped corners plus the second bilinear tap and 1 px of margin. Clamped; empty stays empty."""
    y0, x0, y1, x1 = box
    if y1 <= y0 or x1 <= x0:
        return [0, 0, 0, 0]
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
    return [y0, x0, y1, x1] if y1 > y0 and x1 > x0 else [0, 0, 0, 0]


_PUSH, _IMAGE = 1, 2  # where a histogram-table slot gets its histogram


def _plan(
    modes: list[list[int]],
    hist: list[list[int]],
    fparams: list[list[list[float]]],
    boxes: list[list[int]],
    h: int,
    w: int,
) -> tuple[list[list[list[int]]], list[list[int]]]:
    """Last stage first: the box each stage writes (``[k][b]``) and each histogram slot's source (``[k][b]``)."""
    count = len(modes[0])
    out_boxes = [[[0, 0, 0, 0]] * len(modes) for _ in range(count)]
    source = [[0] * len(modes) for _ in range(count)]
    for b, (mb, hb, fb) in enumerate(zip(modes, hist, fparams)):
        cur = boxes[b]
        for k in range(count - 1, -1, -1):
            out_boxes[k][b] = cur
            if hb[k] and cur[2] > cur[0] and cur[3] > cur[1]:
                source[k][b] = _PUSH if all(m == LUT for m in mb[:k]) else _IMAGE
            cur = _grow_box(cur, mb[k], fb[k], h, w)
            if source[k][b] == _IMAGE:
                cur = [0, 0, h, w]  # the histogram reads the whole intermediate image
    return out_boxes, source


def augment_textures(
    textures: Tensor,
    params: TextureAugParams,
    box: Tensor | None = None,
    *,
    source_hist: Tensor | None = None,
    backend: str = "auto",
) -> Tensor:
    """Applies each sample's augmentation chain to its texture.

    Args:
        textures: ``(B, 3, H, W)`` uint8 anomaly-source textures, already at the image size.
        params: from :func:`sample_texture_aug_params` (moved to the textures' device or not).
        box: optional ``(B, 4)`` int ``(y0, x0, y1, x1)`` (exclusive ends) where the result is needed, e.g. the
            bounding box of the anomaly mask. Each stage computes only what later stages read.
        source_hist: optional ``(B, 3, 256)`` int32 histograms of ``textures`` (``texture_histogram``), e.g. cached
            per texture of a bank; computed when needed otherwise.
        backend: ``auto``, ``reference``, ``cpp`` or ``triton`` for the stage, histogram and table kernels.

    Returns:
        ``(B, 3, H, W)`` uint8. Inside ``box`` it equals running the whole chain on the full image; **outside
        ``box`` its content is unspecified** (stale or uninitialised memory).

    Raises:
        TypeError / ValueError: wrong dtypes, shapes, devices or a box outside the image.
    """
    t = check_tensor(textures, "textures")
    if t.dtype != torch.uint8 or t.dim() != 4 or t.shape[1] != 3:
        raise TypeError(f"textures must be a (B, 3, H, W) uint8 tensor, got {t.dtype} of shape {tuple(t.shape)}")
    if not isinstance(params, TextureAugParams):
        raise TypeError(f"params must be TextureAugParams, got {type(params).__name__}")
    textures = t.contiguous()
    batch, _, height, width = textures.shape
    if params.batch_size != batch:
        raise ValueError(f"params are for {params.batch_size} samples but textures has {batch}")
    if box is None:
        boxes = [[0, 0, height, width]] * batch
    else:
        box = check_tensor(box, "box")
        if box.dtype not in (torch.int32, torch.int64) or tuple(box.shape) != (batch, 4):
            raise ValueError(f"box must be a ({batch}, 4) int32 tensor, got {box.dtype} {tuple(box.shape)}")
        boxes = box.tolist()
        if any(y0 < 0 or x0 < 0 or y1 > height or x1 > width for y0, x0, y1, x1 in boxes):
            raise ValueError(f"box must lie inside the {height}x{width} image, got {boxes}")
    if source_hist is not None:
        source_hist = check_tensor(source_hist, "source_hist")
        if source_hist.dtype != torch.int32 or tuple(source_hist.shape) != (batch, 3, 256):
            raise ValueError(f"source_hist must be a ({batch}, 3, 256) int32 tensor, got {source_hist.dtype} "
                             f"{tuple(source_hist.shape)}")  # fmt: skip
    count = params.count
    if batch == 0 or count == 0:
        return textures.clone()
    if not bool(torch.isfinite(params.fparams).all()):
        raise ValueError("params.fparams contains NaN or infinite values")
    dev = textures.device
    stage_boxes, source = _plan(
        params.modes.tolist(), params.hist.tolist(), params.fparams.tolist(), boxes, height, width
    )
    stage = dispatch("texture_stage", dev, backend)
    hist_lut = dispatch("texture_hist_lut", dev, backend)
    stage_boxes = torch.tensor(stage_boxes, dtype=torch.int32, device=dev)  # (K, B, 4)
    params = params.to(dev)
    # Slot-major copies: every stage reads contiguous (B, ...) rows; histogram tables are written into luts.
    modes = params.modes.t().contiguous()
    fparams = params.fparams.transpose(0, 1).contiguous()
    luts = params.luts.transpose(0, 1).contiguous()
    hist_kind = params.hist.t().contiguous()

    # Histograms pushed through the leading tables, for the samples that have such a slot.
    track = [b for b in range(batch) if any(source[k][b] == _PUSH for k in range(count))]
    track_pos = {b: i for i, b in enumerate(track)}
    pushed = None
    if track:
        track_idx = torch.tensor(track, dtype=torch.int64, device=dev)
        if source_hist is not None:
            pushed = source_hist.to(dev)[track_idx]
        else:
            pushed = texture_histogram(textures, track_idx, backend=backend)
    last_push = max((k for k in range(count) for b in track if source[k][b] == _PUSH), default=-1)

    bufs = [torch.empty_like(textures), torch.empty_like(textures) if count > 1 else None]
    image = textures
    for k in range(count):
        via_push = [b for b in range(batch) if source[k][b] == _PUSH]
        via_image = [b for b in range(batch) if source[k][b] == _IMAGE]
        if via_push or via_image:
            parts = []
            if via_push:
                parts.append(pushed[torch.tensor([track_pos[b] for b in via_push], device=dev)])
            if via_image:
                parts.append(texture_histogram(image, torch.tensor(via_image, device=dev), backend=backend))
            idx = torch.tensor(via_push + via_image, dtype=torch.int64, device=dev)
            h = torch.cat(parts) if len(parts) > 1 else parts[0]
            luts[k, idx] = hist_lut(h.contiguous(), hist_kind[k, idx].contiguous(), fparams[k, idx, 0].contiguous())
        out = bufs[(count - 1 - k) % 2]
        stage(image, modes[k], fparams[k], luts[k], stage_boxes[k], out)
        if pushed is not None and k < last_push:
            pushed = push_histogram(pushed, luts[k, track_idx])  # read only while the prefix is all tables
        image = out
    return image
