"""CutPaste anomalies (Li et al., CVPR 2021): normal, scar, union and 3-way, with exact masks.

A sample's anomaly: a crop of the image itself, colour-jittered (torchvision ``ColorJitter`` semantics, the four
ops in a random order), for scars rotated (nearest, PIL ``expand=True`` geometry), pasted at another place of the
same image. Parameters follow the unofficial reference code (Runinho/pytorch-cutpaste, METHODS.md section 3):

- normal: area ``U(0.02, 0.15) * H * W``, aspect log-uniform in ``[0.3, 1/0.3]``, ``w = round(sqrt(area *
  aspect))``, ``h = round(sqrt(area / aspect))``; source and destination uniform, independent;
- scar: ``w = round(U(2, 16))``, ``h = round(U(10, 25))`` pixels, rotation ``U(-45, 45)`` degrees;
- jitter 0.1: brightness, contrast, saturation ``U(0.9, 1.1)``, hue ``U(-0.1, 0.1)`` turns.

The whole paste (crop -> jitter -> rotate -> paste -> exact mask) is the one batched op
:func:`anofast.ops.cutpaste.cutpaste`. Every random quantity comes from the counter RNG on ``Stream.CUTPASTE``,
keyed by the per-sample seed: a sample is the same for any batch size, thread count or backend.

Variants and labels: each sample gets a ``variant`` (its class for the 3-way task): 0 = left normal,
1 = CutPaste-normal, 2 = CutPaste-scar; ``p_anomaly`` decides 0 versus not, ``p_scar`` scar versus normal.
``params["variant"]`` is the classification target of the paper; ``label`` is the detection label (1 iff some
pixel changed), so a paste that happens to reproduce what it covers keeps variant 1 or 2 but gets label 0.

Foreground (``foreground=(B, 1, H, W)``): the paste box is centred on a foreground pixel drawn uniformly, the
crop is drawn uniformly among the positions where it lies wholly inside the foreground (so the patch is object
material; where no such position exists, it is centred on a foreground pixel), and only foreground pixels are
written, so the mask always lies inside the foreground. A sample with an empty foreground stays normal
(variant 0, ``params["applied"]`` False).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from anofast import _rng
from anofast._rng import Stream
from anofast._validate import check_images, check_mask, check_probability, check_range, mask_like
from anofast.ops.cutpaste import cutpaste, pack_params
from anofast.ops.rng import rng_uniform
from anofast.types import AnomalyBatch

# Counters on Stream.CUTPASTE (fixed: adding a draw must never shift another).
_COIN, _SCAR, _AREA, _ASPECT, _SCAR_W, _SCAR_H, _ANGLE = 0, 1, 2, 3, 4, 5, 6
_SRC_Y, _SRC_X, _DST_Y, _DST_X = 7, 8, 9, 10
_BRIGHT, _CONTRAST, _SAT, _HUE = 11, 12, 13, 14
_ORDER = 15  # 15..18: sort keys of the four jitter ops
_N_DRAWS = 19


@dataclass(frozen=True)
class CutPasteParams:
    """Everything :meth:`CutPaste.apply` needs, drawn by :meth:`CutPaste.sample_params` (tensors lead with ``B``).

    Attributes:
        seeds: ``(B,)`` int64 per-sample seeds.
        size: ``(H, W)`` the parameters were drawn for.
        variant: ``(B,)`` int64: 0 normal (nothing pasted), 1 CutPaste-normal, 2 CutPaste-scar.
        src: ``(B, 2)`` int64 ``(y, x)`` top-left of the crop; ``crop``: ``(B, 2)`` int64 ``(h, w)``.
        dst: ``(B, 2)`` int64 ``(y, x)`` top-left of the paste box (the rotated crop's bounding box).
        angle: ``(B,)`` float32 degrees (0 for normal pastes).
        jitter: ``(B, 4)`` float32 brightness, contrast, saturation factors and hue shift (turns).
        order: ``(B, 4)`` int64 jitter op ids in the order applied (0 brightness, 1 contrast, 2 saturation, 3 hue).
    """

    seeds: Tensor
    size: tuple[int, int]
    variant: Tensor
    src: Tensor
    crop: Tensor
    dst: Tensor
    angle: Tensor
    jitter: Tensor
    order: Tensor

    def __len__(self) -> int:
        return int(self.seeds.shape[0])

    def packed(self) -> tuple[Tensor, Tensor]:
        """The op's ``(ints, floats)`` tables (CPU)."""
        j = self.jitter
        return pack_params(self.src, self.crop, self.dst, self.angle, j[:, 0], j[:, 1], j[:, 2], j[:, 3], self.order,
                           apply=self.variant > 0)  # fmt: skip


class CutPaste:
    """Batched CutPaste generator (normal, scar, union, 3-way).

    Args:
        p_anomaly: probability that a sample gets a paste (the others are returned bit-identical, variant 0).
        p_scar: probability that a paste is a scar (else a normal, rectangular paste).
        area_ratio: ``(low, high)`` crop area as a fraction of the image (normal pastes).
        aspect_ratio: ``(low, high)`` crop width/height, drawn log-uniformly (normal pastes).
        scar_width, scar_height: ``(low, high)`` scar size in pixels, drawn uniformly then rounded.
        scar_rotation: ``(low, high)`` scar rotation in degrees.
        jitter: colour jitter strength: a number ``j`` for all four, or ``(brightness, contrast, saturation, hue)``;
            factors are drawn from ``[max(0, 1 - j), 1 + j]``, the hue shift from ``[-j, j]`` (``j <= 0.5``).
        backend: ``"auto"``, ``"reference"``, ``"cpp"`` or ``"triton"`` for every op.
    """

    def __init__(
        self,
        *,
        p_anomaly: float = 0.5,
        p_scar: float = 0.0,
        area_ratio: tuple[float, float] = (0.02, 0.15),
        aspect_ratio: tuple[float, float] = (0.3, 1 / 0.3),
        scar_width: tuple[float, float] = (2.0, 16.0),
        scar_height: tuple[float, float] = (10.0, 25.0),
        scar_rotation: tuple[float, float] = (-45.0, 45.0),
        jitter: float | tuple[float, float, float, float] = 0.1,
        backend: str = "auto",
    ):
        self.p_anomaly = check_probability(p_anomaly, "p_anomaly")
        self.p_scar = check_probability(p_scar, "p_scar")
        self.area_ratio = check_range(area_ratio, "area_ratio", 0.0, 1.0)
        if self.area_ratio[0] <= 0:
            raise ValueError(f"area_ratio must be > 0, got {area_ratio!r}")
        self.aspect_ratio = check_range(aspect_ratio, "aspect_ratio", 1e-3, 1e3)
        self.scar_width = check_range(scar_width, "scar_width", 1.0, None)
        self.scar_height = check_range(scar_height, "scar_height", 1.0, None)
        self.scar_rotation = check_range(scar_rotation, "scar_rotation", -360.0, 360.0)
        j = (jitter,) * 4 if isinstance(jitter, (int, float)) and not isinstance(jitter, bool) else jitter
        try:
            if isinstance(j, str):
                raise TypeError
            j = tuple(float(v) for v in j)  # type: ignore[union-attr]
        except (TypeError, ValueError):
            raise TypeError(f"jitter must be a number or 4 numbers, got {jitter!r}") from None
        if len(j) != 4 or not all(0.0 <= v < math.inf for v in j) or j[3] > 0.5:
            raise ValueError(f"jitter must be >= 0 (hue <= 0.5): one number or (brightness, contrast, saturation, "
                             f"hue), got {jitter!r}")
        self.jitter = j
        self.backend = backend

    # ----------------------------------------------------------------------------------------------- presets
    @classmethod
    def normal(cls, **overrides: Any) -> CutPaste:
        """CutPaste (binary): rectangular pastes on half of the samples (the paper trains normal vs pasted)."""
        return cls(**{"p_anomaly": 0.5, "p_scar": 0.0, **overrides})

    @classmethod
    def scar(cls, **overrides: Any) -> CutPaste:
        """CutPaste-scar (binary): thin rotated pastes on half of the samples."""
        return cls(**{"p_anomaly": 0.5, "p_scar": 1.0, **overrides})

    @classmethod
    def union(cls, **overrides: Any) -> CutPaste:
        """CutPaste (union): half of the pastes normal, half scar; half of the samples pasted."""
        return cls(**{"p_anomaly": 0.5, "p_scar": 0.5, **overrides})

    @classmethod
    def three_way(cls, **overrides: Any) -> CutPaste:
        """CutPaste (3-way): variants 0 (normal image), 1 (CutPaste) and 2 (scar) with probability 1/3 each;
        ``params["variant"]`` is the 3-class target."""
        return cls(**{"p_anomaly": 2.0 / 3.0, "p_scar": 0.5, **overrides})

    def config(self) -> dict[str, Any]:
        """JSON-serialisable options (for manifests)."""
        return {
            "p_anomaly": self.p_anomaly, "p_scar": self.p_scar, "area_ratio": list(self.area_ratio),
            "aspect_ratio": list(self.aspect_ratio), "scar_width": list(self.scar_width),
            "scar_height": list(self.scar_height), "scar_rotation": list(self.scar_rotation),
            "jitter": list(self.jitter),
        }  # fmt: skip

    def __repr__(self) -> str:
        return f"CutPaste({', '.join(f'{k}={v!r}' for k, v in self.config().items())})"

    # ------------------------------------------------------------------------------------------------ params
    def sample_params(self, images: Tensor | tuple[int, ...], seed: int | Tensor | None = None, *,
                      foreground: Tensor | None = None) -> CutPasteParams:
        """Draws every random quantity from the per-sample seeds.

        Args:
            images: the batch (only its shape is used) or its shape ``(B, H, W)`` / ``(B, C, H, W)``.
            seed: an int, a ``(B,)`` int64 tensor of per-sample seeds, or None (torch's global RNG).
            foreground: optional ``(B, 1, H, W)`` mask: crop and paste are centred on foreground pixels.
        """
        if isinstance(images, Tensor):
            shape = tuple(images.shape)
            if images.dim() != 4:
                raise ValueError(f"images must have shape (B, C, H, W), got {shape}")
        else:
            shape = tuple(images)
            if len(shape) not in (3, 4) or not all(isinstance(s, int) for s in shape):
                raise ValueError(f"images must be a tensor or a shape (B, H, W) / (B, C, H, W), got {images!r}")
        batch, height, width = shape[0], shape[-2], shape[-1]
        if batch < 1 or height < 1 or width < 1:
            raise ValueError(f"images must have B, H, W >= 1, got shape {shape}")
        seeds = _rng.resolve_seeds(seed, batch)
        u = rng_uniform(seeds, Stream.CUTPASTE, _N_DRAWS, backend=self.backend).to(torch.float64)
        applied = u[:, _COIN] < self.p_anomaly
        scar = u[:, _SCAR] < self.p_scar

        a0, a1 = self.area_ratio
        area = (a0 + (a1 - a0) * u[:, _AREA]) * (height * width)
        l0, l1 = math.log(self.aspect_ratio[0]), math.log(self.aspect_ratio[1])
        aspect = torch.exp(l0 + (l1 - l0) * u[:, _ASPECT])
        w0, w1 = self.scar_width
        h0, h1 = self.scar_height
        cw = torch.where(scar, torch.round(w0 + (w1 - w0) * u[:, _SCAR_W]), torch.round(torch.sqrt(area * aspect)))
        ch = torch.where(scar, torch.round(h0 + (h1 - h0) * u[:, _SCAR_H]), torch.round(torch.sqrt(area / aspect)))
        crop = torch.stack((ch.clamp(1, height), cw.clamp(1, width)), 1).to(torch.int64)
        r0, r1 = self.scar_rotation
        angle = torch.where(scar, r0 + (r1 - r0) * u[:, _ANGLE], 0.0).to(torch.float32)

        jb, jc, js, jh = self.jitter
        jitter = torch.stack([max(0.0, 1 - j) + (1 + j - max(0.0, 1 - j)) * u[:, k]
                              for j, k in ((jb, _BRIGHT), (jc, _CONTRAST), (js, _SAT))]
                             + [-jh + 2 * jh * u[:, _HUE]], 1).to(torch.float32)  # fmt: skip
        order = torch.argsort(u[:, _ORDER : _ORDER + 4], dim=1, stable=True)

        # the paste box is the rotated crop's bounding box: its size comes from the same host maths as the op's
        box = pack_params(torch.zeros_like(crop), crop, torch.zeros_like(crop), angle, *jitter.unbind(1), order)[0]
        box = box[:, 6:8].to(torch.int64)
        if foreground is None:
            src = _corner(u[:, _SRC_Y : _SRC_X + 1], crop, (height, width))
            dst = _corner(u[:, _DST_Y : _DST_X + 1], box, (height, width))
        else:
            if foreground.dim() == 3:
                foreground = foreground.unsqueeze(1)
            fg = check_mask(foreground, "foreground", mask_like(batch, height, width, foreground.device))
            flat = (fg.flatten(1) > 0.5).cpu()
            empty = ~flat.any(1)
            applied = applied & ~empty
            src = _centred(_pick(flat, u[:, _SRC_Y]), width, crop, (height, width))
            inside, has_inside = _inside_corner(flat.view(batch, height, width), crop, u[:, _SRC_X])
            src = torch.where(has_inside.view(-1, 1), inside, src)
            dst = _centred(_pick(flat, u[:, _DST_Y]), width, box, (height, width))
        variant = torch.where(applied, torch.where(scar, 2, 1), 0).to(torch.int64)
        return CutPasteParams(seeds=seeds, size=(height, width), variant=variant, src=src, crop=crop, dst=dst,
                              angle=angle, jitter=jitter, order=order)

    # ------------------------------------------------------------------------------------------------- apply
    def __call__(self, images: Tensor, seed: int | Tensor | None = None, *,
                 foreground: Tensor | None = None) -> AnomalyBatch:
        """Makes CutPaste anomalies on a batch.

        Args:
            images: ``(B, C, H, W)`` float in [0, 1] or uint8, C in {1, 3}, on the CPU or a CUDA device.
            seed: an int (sample ``i`` is keyed by ``(seed, i)``, see :func:`anofast.sample_seeds`), a ``(B,)``
                int64 tensor of per-sample seeds, or None (drawn from torch's global RNG).
            foreground: optional ``(B, 1, H, W)`` mask: crop and paste centred on it, only its pixels written.

        Returns:
            :class:`~anofast.AnomalyBatch`: ``image`` (B, C, H, W) float32, ``mask`` (B, 1, H, W) float32 {0, 1} =
            exactly the changed pixels, ``label`` (B,) int64 (mask non-empty), per-sample ``params`` (``variant``
            is the 3-way class).
        """
        images = check_images(images, values=False)  # the op checks the values during its pass
        return self._apply(images, self.sample_params(images, seed, foreground=foreground), foreground)

    def apply(self, images: Tensor, params: CutPasteParams, *, foreground: Tensor | None = None) -> AnomalyBatch:
        """Applies drawn parameters: a pure function of ``(images, params, foreground)``."""
        return self._apply(check_images(images, values=False), params, foreground)

    def _apply(self, images: Tensor, params: CutPasteParams, foreground: Tensor | None) -> AnomalyBatch:
        if not isinstance(params, CutPasteParams):
            raise TypeError(f"params must be CutPasteParams from sample_params, got {type(params).__name__}")
        batch, _, height, width = images.shape
        if len(params) != batch or params.size != (height, width):
            raise ValueError(f"params are for {len(params)} samples of {params.size} but images has shape "
                             f"{tuple(images.shape)}")
        if foreground is not None:
            foreground = check_mask(foreground, "foreground", images)
        ints, floats = params.packed()
        out, mask, count = cutpaste(images, ints.to(images.device), floats.to(images.device), foreground=foreground,
                                    backend=self.backend)  # fmt: skip
        record = {
            "seed": params.seeds.cpu(),
            "variant": params.variant,
            "applied": params.variant > 0,
            "src_box": torch.cat((params.src, params.crop), 1),
            "dst_box": torch.cat((params.dst, ints[:, 6:8].to(torch.int64)), 1),
            "rotation_deg": params.angle,
            "jitter": params.jitter,
            "jitter_order": params.order,
        }
        return AnomalyBatch(image=out, mask=mask, label=(count > 0).to(torch.int64), params=record)


def _corner(u: Tensor, size: Tensor, image: tuple[int, int]) -> Tensor:
    """Top-left corners uniform such that a box of ``size`` fits (``0`` where it does not)."""
    room = (torch.tensor(image) - size + 1).clamp(min=1)
    return torch.minimum((u * room).floor().to(torch.int64), room - 1)


def _pick(flat: Tensor, u: Tensor) -> Tensor:
    """Flat index of a foreground pixel drawn uniformly per row of ``flat`` (``(B, H*W)`` bool); 0 if empty."""
    cum = flat.to(torch.int64).cumsum(1)
    n = cum[:, -1]
    k = torch.minimum((u * n).floor().to(torch.int64), (n - 1).clamp(min=0))
    return torch.searchsorted(cum, k.view(-1, 1), right=True).view(-1).clamp(max=flat.shape[1] - 1)


def _inside_corner(fg: Tensor, size: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
    """Top-left corners of boxes of ``size`` lying wholly inside the foreground ``fg`` (``(B, H, W)`` bool), drawn
    uniformly among such positions (a summed-area table gives every position's count), and whether one exists."""
    batch, height, width = fg.shape
    table = torch.zeros(batch, height + 1, width + 1, dtype=torch.int64)
    table[:, 1:, 1:] = fg.to(torch.int64).cumsum(1).cumsum(2)
    table = table.flatten(1)
    ys = torch.arange(height).view(1, -1, 1)
    xs = torch.arange(width).view(1, 1, -1)
    h, w = size[:, 0].view(-1, 1, 1), size[:, 1].view(-1, 1, 1)
    y1, x1 = (ys + h).clamp(max=height), (xs + w).clamp(max=width)

    def at(y: Tensor, x: Tensor) -> Tensor:
        return table.gather(1, (y * (width + 1) + x).expand(batch, height, width).reshape(batch, -1))

    count = at(y1, x1) - at(ys, x1) - at(y1, xs) + at(ys, xs)
    fits = ((ys + h <= height) & (xs + w <= width)).expand(batch, height, width).reshape(batch, -1)
    valid = fits & (count == (h * w).view(-1, 1))
    index = _pick(valid, u)
    return torch.stack((index // width, index % width), 1), valid.any(1)


def _centred(index: Tensor, width: int, size: Tensor, image: tuple[int, int]) -> Tensor:
    """Top-left corner of a box of ``size`` centred on the pixel ``index``, moved inside the image."""
    centre = torch.stack((index // width, index % width), 1)
    top = centre - size // 2
    limit = (torch.tensor(image) - size).clamp(min=0)
    return torch.minimum(top.clamp(min=0), limit)
