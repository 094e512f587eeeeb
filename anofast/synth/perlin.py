"""Perlin texture-blending anomalies (DRAEM, anomalib, GLASS style).

A sample's anomaly: a Perlin-noise mask (thresholded, rotated, optionally two lattices combined and restricted to
a foreground), filled with an augmented anomaly-source texture at a per-sample opacity. The pipeline is four
batched ops, each with a reference, a C++ and a Triton implementation:

1. ``perlin_mask``: noise -> threshold -> placement mask and its bounding box (no work for skipped samples);
2. a gather from the texture pool (decoded once, or a bank of ``procedural_texture`` rendered once);
3. ``augment_textures``: three of the method's augmentations, computed only inside the box the mask needs;
4. ``blend``: one pass writing the anomalous image and the exact mask (pixels that really changed).

Every random quantity is drawn from the counter RNG keyed by the per-sample seed, so a sample's anomaly is the
same for any batch size, order, thread count or backend.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, Literal

import torch
from torch import Tensor

from anofast import _rng
from anofast._rng import Stream
from anofast._validate import check_images, check_mask, check_probability, check_range
from anofast.ops.blend import blend
from anofast.ops.perlin import PerlinParams, perlin_mask, sample_perlin_params
from anofast.ops.rng import rng_uniform
from anofast.ops.augment import TextureAugParams, augment_textures, sample_texture_aug_params
from anofast.ops.procedural import procedural_texture
from anofast.ops.texture import texture_histogram
from anofast.types import AnomalyBatch

DualMask = Literal["none", "anomalib", "glass"]
_COMBINE_PROBS = {"none": (1.0, 0.0, 0.0), "anomalib": (0.5, 0.5, 0.0), "glass": (1 / 3, 1 / 3, 1 / 3)}
# Counters on Stream.ANOMALY_SCALAR (fixed: adding a draw must never shift another).
_COIN, _OPACITY_U1, _OPACITY_U2, _TEXTURE = 0, 1, 2, 3
_N_SCALARS = 4
_PROCEDURAL_BANK_SEED = 0x5EED_7E87


@dataclass(frozen=True)
class PerlinAnomalyParams:
    """Everything :meth:`PerlinAnomaly.apply` needs, drawn by :meth:`PerlinAnomaly.sample_params`.

    Attributes:
        seeds: ``(B,)`` int64 per-sample seeds the rest was drawn from.
        apply: ``(B,)`` bool, False = the sample stays normal (the ``p_anomaly`` coin).
        opacity: ``(B,)`` float32 weight of the anomaly source inside the mask.
        texture_index: ``(B,)`` int64 index into the texture pool (-1 for the ``"self"`` source).
        perlin: the mask parameters (lattices, rotation, threshold, combine code).
        augment: the texture augmentations (ops, order, magnitudes, tables).
    """

    seeds: Tensor
    apply: Tensor
    opacity: Tensor
    texture_index: Tensor
    perlin: PerlinParams
    augment: TextureAugParams

    def __len__(self) -> int:
        return int(self.seeds.shape[0])


class PerlinAnomaly:
    """Batched DRAEM-style anomaly generator.

    ``image' = image + opacity * (texture - image)`` inside a thresholded, rotated Perlin mask; the returned mask
    is exactly the set of pixels whose value changed.

    Args:
        p_anomaly: probability that a sample gets an anomaly (others are returned bit-identical, label 0).
        opacity: ``(low, high)`` range of the anomaly weight, drawn uniformly (or from GLASS's clipped normal when
            ``opacity_dist="glass"``). This is anomalib's ``beta``, and ``1 - beta`` of DRAEM and GLASS.
        opacity_dist: ``"uniform"`` or ``"glass"`` (``clip(N(0.5, 0.1), low, high)``).
        threshold: Perlin threshold (a number, or a ``(low, high)`` range drawn per sample).
        res_exp_range: lattice resolution exponents ``[low, high)``: cells per axis ``2**U{low..high-1}``.
        rotation_range: rotation of the noise in degrees.
        dual_mask: ``"none"``; ``"anomalib"`` (second mask, union with probability 0.5); ``"glass"`` (union,
            intersection or first mask, 1/3 each).
        augmentations: texture augmentation set (``"draem"``, ``"anomalib"``, ``"glass"`` or a list of names).
        n_augmentations: how many distinct augmentations each texture gets, in random order.
        source: anomaly source: ``None`` (a bank of ``procedural_bank`` built-in procedural textures), a folder of texture images (decoded once,
            resized to the image size and cached), a ``(N, 3, h, w)`` uint8 or float tensor of textures, or
            ``"self"`` (the image itself).
        empty_mask: ``"keep"`` (an empty mask gives a normal sample with label 0, as DRAEM) or ``"retry"`` (draw
            new noise, up to ``max_retries`` times, as anomalib and GLASS).
        max_retries: bound on re-draws for ``empty_mask="retry"``.
        texture_size: size at which a texture folder is decoded (or the procedural bank rendered) once; it is then
            resized per image size and cached.
        procedural_bank: number of procedural textures rendered for ``source=None``.
        backend: ``"auto"``, ``"reference"``, ``"cpp"`` or ``"triton"`` for every op.
    """

    def __init__(
        self,
        *,
        p_anomaly: float = 0.5,
        opacity: tuple[float, float] | float = (0.2, 1.0),
        opacity_dist: Literal["uniform", "glass"] = "uniform",
        threshold: float | tuple[float, float] = 0.5,
        res_exp_range: tuple[int, int] = (0, 6),
        rotation_range: tuple[float, float] = (-90.0, 90.0),
        dual_mask: DualMask = "none",
        augmentations: str | Sequence[str] = "draem",
        n_augmentations: int = 3,
        source: str | os.PathLike | Tensor | None = None,
        empty_mask: Literal["keep", "retry"] = "keep",
        max_retries: int = 10,
        texture_size: tuple[int, int] = (256, 256),
        procedural_bank: int = 64,
        backend: str = "auto",
    ):
        self.p_anomaly = check_probability(p_anomaly, "p_anomaly")
        self.opacity = check_range(opacity, "opacity", 0.0, 1.0)
        if opacity_dist not in ("uniform", "glass"):
            raise ValueError(f"opacity_dist must be 'uniform' or 'glass', got {opacity_dist!r}")
        self.opacity_dist = opacity_dist
        self.threshold = check_range(threshold, "threshold", -2.0, 2.0)
        lo, hi = res_exp_range
        if not (isinstance(lo, int) and isinstance(hi, int) and 0 <= lo < hi <= 6):
            raise ValueError(f"res_exp_range must be integers with 0 <= low < high <= 6, got {res_exp_range!r}")
        self.res_exp_range = (lo, hi)
        self.rotation_range = check_range(rotation_range, "rotation_range", -360.0, 360.0)
        if dual_mask not in _COMBINE_PROBS:
            raise ValueError(f"dual_mask must be one of {sorted(_COMBINE_PROBS)}, got {dual_mask!r}")
        self.dual_mask = dual_mask
        self.augmentations = augmentations if isinstance(augmentations, str) else tuple(augmentations)
        if not isinstance(n_augmentations, int) or n_augmentations < 0:
            raise ValueError(f"n_augmentations must be an int >= 0, got {n_augmentations!r}")
        self.n_augmentations = n_augmentations
        if empty_mask not in ("keep", "retry"):
            raise ValueError(f"empty_mask must be 'keep' or 'retry', got {empty_mask!r}")
        self.empty_mask = empty_mask
        if not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be an int >= 0, got {max_retries!r}")
        self.max_retries = max_retries
        self.backend = backend
        if len(texture_size) != 2 or min(texture_size) < 1:
            raise ValueError(f"texture_size must be (height, width) >= 1, got {texture_size!r}")
        self.texture_size = (int(texture_size[0]), int(texture_size[1]))
        if not isinstance(procedural_bank, int) or procedural_bank < 1:
            raise ValueError(f"procedural_bank must be an int >= 1, got {procedural_bank!r}")
        self.procedural_bank = procedural_bank
        self._source_spec = source
        self._pool_src: Tensor | None = None  # decoded textures at their own size (uint8, N x 3 x h x w)
        self._pool: dict[tuple[int, int, str], tuple[Tensor, Tensor]] = {}  # per image size and device
        self._local = threading.local()
        self._init_source(source)

    # ----------------------------------------------------------------------------------------------- presets
    @classmethod
    def draem(cls, source: str | os.PathLike | Tensor | None = None, *, beta: tuple[float, float] = (0.0, 0.8),
              **overrides: Any) -> PerlinAnomaly:
        """DRAEM (VitjanZ/DRAEM ``data_loader.py``): ``beta`` is the weight of the *image* (``U[0, 0.8)``), so the
        anomaly opacity is ``1 - beta`` in ``(0.2, 1]``; P(anomaly) 0.5; empty masks give label 0; 3 of DRAEM's 10
        augmentations. (DRAEM's extra 30 % rotation of the normal image is ordinary augmentation of the input and
        is left to the user's transform pipeline.)"""
        b0, b1 = check_range(beta, "beta", 0.0, 1.0)
        kw: dict[str, Any] = dict(p_anomaly=0.5, opacity=(1.0 - b1, 1.0 - b0), augmentations="draem",
                                  empty_mask="keep", dual_mask="none")
        return cls(source=source, **{**kw, **overrides})

    @classmethod
    def anomalib(cls, source: str | os.PathLike | Tensor | None = None, *, beta: tuple[float, float] = (0.2, 1.0),
                 dual_mask: bool = False, **overrides: Any) -> PerlinAnomaly:
        """anomalib 2.x ``PerlinAnomalyGenerator`` defaults: ``beta`` is the weight of the *anomaly*
        (``U[0.2, 1.0]``; anomalib's Draem model passes ``(0.1, 1.0)``), probability 0.5, empty masks re-drawn up
        to 10 times, anomalib's augmentation list, ``dual_mask`` = second mask with union half of the time."""
        kw: dict[str, Any] = dict(p_anomaly=0.5, opacity=check_range(beta, "beta", 0.0, 1.0), augmentations="anomalib",
                                  empty_mask="retry", max_retries=10, dual_mask="anomalib" if dual_mask else "none")
        return cls(source=source, **{**kw, **overrides})

    @classmethod
    def glass(cls, source: str | os.PathLike | Tensor | None = None, **overrides: Any) -> PerlinAnomaly:
        """GLASS LAS (cqylunlun/GLASS ``datasets/mvtec.py``): every sample anomalous, two Perlin masks combined by
        union / intersection / first mask (1/3 each), image weight ``beta ~ clip(N(0.5, 0.1), 0.2, 0.8)`` (so the
        opacity too), empty masks re-drawn, GLASS's augmentation list. Pass ``foreground=`` when calling, as GLASS's
        ``--fg 1``."""
        kw: dict[str, Any] = dict(p_anomaly=1.0, opacity=(0.2, 0.8), opacity_dist="glass", augmentations="glass",
                                  empty_mask="retry", max_retries=10, dual_mask="glass")
        return cls(source=source, **{**kw, **overrides})

    def config(self) -> dict[str, Any]:
        """JSON-serialisable options (for manifests)."""
        src = self._source_spec
        if isinstance(src, Tensor):
            src = f"tensor{tuple(src.shape)}"
        elif src is not None:
            src = str(src)
        return {
            "p_anomaly": self.p_anomaly, "opacity": list(self.opacity), "opacity_dist": self.opacity_dist,
            "threshold": list(self.threshold), "res_exp_range": list(self.res_exp_range),
            "rotation_range": list(self.rotation_range), "dual_mask": self.dual_mask,
            "augmentations": self.augmentations if isinstance(self.augmentations, str) else list(self.augmentations),
            "n_augmentations": self.n_augmentations, "source": src, "empty_mask": self.empty_mask,
            "max_retries": self.max_retries,
        }

    def __repr__(self) -> str:
        return f"PerlinAnomaly({', '.join(f'{k}={v!r}' for k, v in self.config().items())})"

    # ------------------------------------------------------------------------------------------------ source
    def _init_source(self, source: str | os.PathLike | Tensor | None) -> None:
        """Decodes (or renders) the texture pool once, at ``texture_size``; per image size it is resized once and
        cached together with its histograms."""
        from anofast.data.textures import load_texture_folder, textures_from_tensor

        if isinstance(source, str) and source == "self":
            return
        if source is None:
            # Rendering costs ~2-3 ms per 256² texture, so the built-in source is a bank rendered once per
            # generator (always the same bank: its seeds are fixed), not a texture per sample.
            seeds = _rng.sample_seeds(_PROCEDURAL_BANK_SEED, self.procedural_bank)
            self._pool_src = procedural_texture(seeds, *self.texture_size, backend=self.backend)
        elif isinstance(source, Tensor):
            if source.dim() != 4 or source.shape[0] == 0 or source.shape[1] not in (1, 3):
                raise ValueError(f"source: a texture tensor must have shape (N, 3, h, w) with N >= 1, "
                                 f"got {tuple(source.shape)}")
            self._pool_src = textures_from_tensor(source, tuple(source.shape[-2:]))
        elif isinstance(source, (str, os.PathLike)):
            self._pool_src = load_texture_folder(source, self.texture_size)
        else:
            raise TypeError(f"source must be None, 'self', a folder path or a tensor, got {type(source).__name__}")

    def _texture_pool(self, size: tuple[int, int], device: torch.device) -> tuple[Tensor, Tensor]:
        """The pool resized to ``size`` on ``device``, and its per-texture histograms (both cached)."""
        key = (size[0], size[1], str(device))
        cached = self._pool.get(key)
        if cached is None:
            from anofast.data.textures import textures_from_tensor

            assert self._pool_src is not None
            src = self._pool_src
            pool = src if tuple(src.shape[-2:]) == size else textures_from_tensor(src, size)
            pool = pool.to(device).contiguous()
            cached = (pool, texture_histogram(pool, backend=self.backend))
            self._pool[key] = cached
        return cached

    @property
    def n_textures(self) -> int:
        """Number of textures in the pool (0 for the ``"self"`` source)."""
        return 0 if self._pool_src is None else int(self._pool_src.shape[0])

    # ------------------------------------------------------------------------------------------------ params
    def sample_params(self, batch_size: int, seed: int | Tensor | None = None) -> PerlinAnomalyParams:
        """Draws every random quantity of ``batch_size`` samples from their seeds (see :meth:`__call__`)."""
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        seeds = _rng.resolve_seeds(seed, batch_size)
        u = rng_uniform(seeds, Stream.ANOMALY_SCALAR, _N_SCALARS, backend=self.backend)
        apply = u[:, _COIN] < self.p_anomaly
        lo, hi = self.opacity
        if self.opacity_dist == "glass":
            # Box-Muller on two uniforms; u1 in (0, 1] so the log is finite.
            r = torch.sqrt(-2.0 * torch.log(1.0 - u[:, _OPACITY_U1]))
            z = r * torch.cos(2.0 * math.pi * u[:, _OPACITY_U2])
            opacity = (0.5 + 0.1 * z).clamp(lo, hi)
        else:
            opacity = lo + (hi - lo) * u[:, _OPACITY_U1]
        n = self.n_textures
        texture_index = ((u[:, _TEXTURE] * n).long().clamp(max=n - 1) if n else torch.full_like(seeds, -1))
        perlin = self._sample_perlin(seeds, attempt=0)
        augment = sample_texture_aug_params(seeds, augmentations=self.augmentations, count=self.n_augmentations,
                                            backend=self.backend)
        return PerlinAnomalyParams(seeds=seeds, apply=apply, opacity=opacity.to(torch.float32),
                                   texture_index=texture_index, perlin=perlin, augment=augment)

    def _sample_perlin(self, seeds: Tensor, attempt: int) -> PerlinParams:
        t0, t1 = self.threshold
        return sample_perlin_params(
            seeds, res_exp_range=self.res_exp_range, rotation_range=self.rotation_range,
            threshold=t0 if t0 == t1 else (t0, t1), lattices=1 if self.dual_mask == "none" else 2,
            combine_probs=_COMBINE_PROBS[self.dual_mask], attempt=attempt, backend=self.backend,
        )

    # ------------------------------------------------------------------------------------------------- apply
    def __call__(self, images: Tensor, seed: int | Tensor | None = None, *,
                 foreground: Tensor | None = None) -> AnomalyBatch:
        """Makes anomalies on a batch.

        Args:
            images: ``(B, C, H, W)`` float in [0, 1] or uint8, C in {1, 3}, on the CPU or a CUDA device.
            seed: an int (sample ``i`` is keyed by ``(seed, i)``, see :func:`anofast.sample_seeds`), a ``(B,)``
                int64 tensor of per-sample seeds (a sample then does not depend on the rest of the batch), or
                None (drawn from torch's global RNG).
            foreground: optional ``(B, 1, H, W)`` mask; anomalies are placed only where it is 1.

        Returns:
            :class:`~anofast.AnomalyBatch` with ``image`` (B, C, H, W) float32, ``mask`` (B, 1, H, W) float32
            {0, 1} = exactly the changed pixels, ``label`` (B,) int64 and per-sample ``params``.
        """
        images = check_images(images, values=False)  # the blend kernel checks the values during its pass
        return self._apply(images, self.sample_params(images.shape[0], seed), foreground)

    def apply(self, images: Tensor, params: PerlinAnomalyParams, *, foreground: Tensor | None = None) -> AnomalyBatch:
        """Applies drawn parameters: a pure function of ``(images, params, foreground)``."""
        return self._apply(check_images(images, values=False), params, foreground)

    def _apply(self, images: Tensor, params: PerlinAnomalyParams, foreground: Tensor | None) -> AnomalyBatch:
        batch, channels, height, width = images.shape
        if not isinstance(params, PerlinAnomalyParams):
            raise TypeError(f"params must be PerlinAnomalyParams from sample_params, got {type(params).__name__}")
        if len(params) != batch:
            raise ValueError(f"params are for {len(params)} samples but images has batch size {batch}")
        if foreground is not None:
            foreground = check_mask(foreground, "foreground", images)
        device = images.device
        size = (height, width)
        perlin = params.perlin
        apply = params.apply.to(device)
        mask, bbox = perlin_mask(perlin.to(device), size, foreground=foreground, apply=apply, backend=self.backend)
        attempts = torch.zeros(batch, dtype=torch.int64)
        if self.empty_mask == "retry":
            perlin, mask, bbox, attempts = self._retry_empty(params, perlin, mask, bbox, size, foreground, apply)
        box = bbox.to(device)
        texture = self._augmented_textures(images, params, size, box, mask)
        if channels == 1:
            texture = _luma_u8(texture)
        out, changed, count = blend(images, texture, mask, params.opacity.to(device), bbox=box, backend=self.backend)
        label = (count > 0).to(torch.int64)
        record = self._record(params, replace(params, perlin=perlin), attempts, bbox)
        return AnomalyBatch(image=out, mask=changed, label=label, params=record)

    def _retry_empty(self, params, perlin, mask, bbox, size, foreground, apply):
        """Re-draws the noise of applied samples whose mask came out empty (anomalib's and GLASS's loop, bounded)."""
        attempts = torch.zeros(len(params), dtype=torch.int64)
        device = mask.device
        for attempt in range(1, self.max_retries + 1):
            empty = (apply.cpu() & (bbox[:, 2] <= bbox[:, 0]).cpu()).nonzero().flatten()
            if empty.numel() == 0:
                break
            redraw = self._sample_perlin(params.seeds[empty], attempt)
            fg = None if foreground is None else foreground[empty.to(device)]
            m, b = perlin_mask(redraw.to(device), size, foreground=fg, apply=apply[empty.to(device)],
                               backend=self.backend)
            mask[empty.to(device)] = m
            bbox[empty.to(bbox.device)] = b
            perlin = _scatter_params(perlin, empty, redraw)
            attempts[empty] = attempt
        return perlin, mask, bbox, attempts

    def _augmented_textures(self, images: Tensor, params: PerlinAnomalyParams, size: tuple[int, int], box: Tensor,
                            mask: Tensor) -> Tensor:
        """Per-sample augmented anomaly source, uint8 (B, 3, H, W), computed only where the mask needs it."""
        if self._pool_src is None:  # "self": the image is the source
            u8 = (images * 255.0 + 0.5).floor().clamp(0, 255).to(torch.uint8)
            pool, hist = (u8.expand(-1, 3, -1, -1).contiguous() if u8.shape[1] == 1 else u8), None
            index = torch.arange(len(params), device=images.device)
        else:
            pool, hist = self._texture_pool(size, images.device)
            index = params.texture_index.to(images.device)
        return augment_textures(pool, params.augment.to(images.device), box=box, source_hist=hist, where=mask,
                                src_index=index, out=self._buffer((len(params), 3, *size), images.device),
                                backend=self.backend)

    def _buffer(self, shape: tuple[int, ...], device: torch.device) -> Tensor:
        """A reused uint8 scratch buffer for the augmented textures (fresh memory costs page faults on every call).
        Per thread, so one generator can serve several threads."""
        bufs = self._local.__dict__.setdefault("buffers", {})
        key = (shape, str(device))
        if key not in bufs:
            bufs.clear()
            bufs[key] = torch.empty(shape, dtype=torch.uint8, device=device)
        return bufs[key]

    def __getstate__(self) -> dict[str, Any]:
        # Pickled into DataLoader workers: caches are rebuilt there, only the decoded source travels.
        state = self.__dict__.copy()
        state["_pool"] = {}
        del state["_local"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    def _record(self, drawn: PerlinAnomalyParams, used: PerlinAnomalyParams, attempts: Tensor,
                bbox: Tensor) -> dict[str, Tensor]:
        """Compact per-sample provenance (not the gradient lattices and LUTs, which the seed regenerates)."""
        p = used.perlin
        angle = torch.rad2deg(torch.atan2(p.rot[..., 1], p.rot[..., 0]))
        rec: dict[str, Tensor] = {
            "seed": drawn.seeds.cpu(),
            "applied": drawn.apply.cpu(),
            "opacity": drawn.opacity.cpu(),
            "texture_index": drawn.texture_index.cpu(),
            "perlin_attempt": attempts,
            "perlin_res": p.res.cpu(),
            "perlin_rotation_deg": angle.cpu(),
            "perlin_threshold": p.threshold.cpu(),
            "perlin_combine": p.combine.cpu(),
            "bbox": bbox.cpu(),
        }
        # op ids index anofast.ops.augment.OP_NAMES; the tables (LUTs) are rebuilt from the seed
        rec["aug_ops"] = drawn.augment.op_ids.cpu()
        rec["aug_params"] = drawn.augment.fparams.cpu()
        return rec


def _scatter_params(params: PerlinParams, index: Tensor, new: PerlinParams) -> PerlinParams:
    out = {}
    for f in fields(params):
        t = getattr(params, f.name).clone()
        t[index.to(t.device)] = getattr(new, f.name).to(t.device)
        out[f.name] = t
    return PerlinParams(**out)


def _luma_u8(texture: Tensor) -> Tensor:
    """Integer BT.601 luma of a uint8 RGB batch (for grey images)."""
    t = texture.to(torch.int32)
    y = (299 * t[:, 0] + 587 * t[:, 1] + 114 * t[:, 2] + 500) // 1000
    return y.to(torch.uint8).unsqueeze(1).contiguous()
