"""NSA: Natural Synthetic Anomalies (Schlüter et al., ECCV 2022; hmsch/natural-synthetic-anomalies ``patch_ex``).

Rectangular patches of *another* normal image (a partner in the batch, or an image of a ``source=`` pool) are
resized and Poisson-blended into each image at a shifted position, up to ``num_patches`` per image (the first always,
each further one with probability 1/2), each on top of the previous ones. The blend is the batched
:func:`~anofast.ops.poisson.poisson_blend` op (multigrid in C++ / Triton, one patch per image per round), not a
per-image OpenCV ``seamlessClone``.

Labels follow NSA's ``binary`` mode and the mask contract at once: a pixel changes only where its mean absolute
change exceeds ``tol`` grey levels after a 5x5 majority vote (NSA's median filter), and every other pixel keeps its
input value, so ``mask`` is exactly the changed pixels. ``label_mode="logistic-intensity"`` (or ``"intensity"``)
adds NSA's soft label as ``params["soft_label"]`` ``(B, 1, H, W)``.

NSA's object masks (``skip_background``: a fixed grey-level threshold, median filtered) are the
:func:`~anofast.ops.object_mask.object_mask` op, computed in every call when the generator has ``skip_background``;
:meth:`NaturalSynthetic.nsa_mvtec` sets them (and the rest of ``train_mvtec.py``'s settings) per MVTec AD class.

Every random quantity is drawn from the counter RNG on ``Stream.NSA``, keyed by the per-sample seed. With a pool
source a sample does not depend on the rest of the batch; with batch sources it depends on its partner image.
Differences from ``patch_ex`` (documented choices): rejection sampling draws NSA's 200 candidate centres at once
and keeps the first feasible one (testing the first few for every patch, the rest only where none of those fits);
the destination test is the foreground fraction inside the destination box
(> ``min_overlap_pct``); the Poisson domain is the destination foreground inside the box; mixed gradients pick per
edge and channel the larger-magnitude gradient (Pérez et al.), where OpenCV compares ``|gx - gy|``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from anofast import _rng
from anofast._rng import Stream
from anofast._validate import check_images, check_mask, check_probability, check_range, check_tensor, mask_like
from anofast.ops.integral import integral_image
from anofast.ops.median import masked_median
from anofast.ops.object_mask import background_pairs, object_mask
from anofast.ops.poisson import MIXED, NORMAL, poisson_blend
from anofast.ops.rng import rng_normal, rng_uniform
from anofast.types import AnomalyBatch

Blend = Literal["normal", "mixed", "mix", "swap"]
LabelMode = Literal["binary", "intensity", "logistic-intensity"]
# Counters on Stream.NSA (fixed, so adding a draw never shifts another). Normals use counters 0..7 (one per patch);
# uniforms start at _U0: the source pick, the blend coin, then a block of _STRIDE counters per patch.
_MAX_PATCHES = 8
_U0 = 8
_SOURCE, _MODE = _U0, _U0 + 1
_PATCH0 = 16
_STRIDE = 1024
_COIN, _GAMMA1, _GAMMA2, _SRC_CAND, _DST_CAND = 0, 1, 5, 16, 512  # offsets inside a patch block (gamma: 4 each)
_CANDIDATES = 200  # NSA's attempts for the source and the destination centre
_PROBE = 16  # candidates tested first (most rows find a feasible one among them); the rest only where none did
_MIN_PIXELS = 50  # NSA skips a patch whose blend mask has fewer pixels (seamlessClone would fail)
_OBJECT_MEDIAN = 7  # NSA's median filter of its object masks (cv2.medianBlur(mask, 7))
# NSA's per-class settings (train_mvtec.py: WIDTH_BOUNDS_PCT, NUM_PATCHES, INTENSITY_LOGISTIC_PARAMS, MIN_OBJECT_PCT,
# MIN_OVERLAP_PCT, BACKGROUND; textures resize in [0.5, 2]). Classes missing from a table keep the defaults.
_MVTEC_TEXTURES = ("carpet", "grid", "leather", "tile", "wood")
_MVTEC_OBJECTS = ("bottle", "cable", "capsule", "hazelnut", "metal_nut", "pill", "screw", "toothbrush", "transistor",
                  "zipper")
MVTEC_CLASSES = _MVTEC_OBJECTS + _MVTEC_TEXTURES  # the categories of NaturalSynthetic.nsa_mvtec
_W4, _W2 = (0.03, 0.4), (0.03, 0.2)
_MVTEC_WIDTH = {"cable": ((0.05, 0.4), (0.05, 0.4)), "capsule": ((0.03, 0.15), _W4), "hazelnut": ((0.03, 0.35),) * 2,
                "pill": (_W2, _W4), "screw": ((0.03, 0.12),) * 2, "toothbrush": (_W4, _W2), "zipper": (_W4, _W2)}
_MVTEC_PATCHES = {"screw": 4, "zipper": 4, **{c: 4 for c in _MVTEC_TEXTURES}}
_MVTEC_LOGISTIC = {"bottle": (1 / 12, 24), "cable": (1 / 12, 24), "capsule": (1 / 2, 4), "hazelnut": (1 / 12, 24),
                   "metal_nut": (1 / 3, 7), "pill": (1 / 3, 7), "screw": (1, 3), "toothbrush": (1 / 6, 15),
                   "transistor": (1 / 6, 15), "zipper": (1 / 6, 15), "wood": (1 / 6, 15),
                   **{c: (1 / 3, 7) for c in ("carpet", "grid", "leather", "tile")}}
_MVTEC_OBJECT_PCT = {"bottle": 0.7, "capsule": 0.7, "hazelnut": 0.7, "metal_nut": 0.5, "pill": 0.7, "screw": 0.5,
                     "toothbrush": 0.25, "zipper": 0.7}
_MVTEC_BACKGROUND = {"bottle": (200, 60), "screw": (200, 60), "capsule": (200, 60), "zipper": (200, 60),
                     "hazelnut": (20, 20), "pill": (20, 20), "toothbrush": (20, 20), "metal_nut": (20, 20)}


@dataclass(frozen=True)
class NSAParams:
    """Everything :meth:`NaturalSynthetic.apply` needs, drawn by :meth:`NaturalSynthetic.sample_params`.

    Attributes:
        seeds: ``(B,)`` int64 per-sample seeds.
        source_index: ``(B,)`` int64 index of the source image (in the batch or the pool).
        mode: ``(B,)`` int32 blend mode (0 normal, 1 mixed).
        src_box: ``(B, K, 4)`` int32 ``(sy, sx, sh, sw)`` source rectangle of patch ``k``.
        box: ``(B, K, 4)`` int32 ``(y0, x0, h, w)`` destination of patch ``k``; ``h = 0``: no patch.
        scale: ``(B, K)`` float32 resize factor drawn for patch ``k``.
        size: ``(H, W)`` the parameters were drawn for.
    """

    seeds: Tensor
    source_index: Tensor
    mode: Tensor
    src_box: Tensor
    box: Tensor
    scale: Tensor
    size: tuple[int, int]

    def __len__(self) -> int:
        return int(self.seeds.shape[0])


class NaturalSynthetic:
    """Batched NSA generator.

    Args:
        blend: ``"normal"`` (Poisson normal clone, NSA "Shift"), ``"mixed"`` (mixed gradients, "Shift-M"),
            ``"mix"`` (a coin per sample between the two) or ``"swap"`` (plain paste, no Poisson solve).
        num_patches: at most this many patches per image (the first always, each further one with p = 0.5).
        width_bounds: ``((min, max), (min, max))`` patch half-width bounds per axis, as fractions of the size.
        gamma_params: ``(shape, scale, lower)``: half-width = ``lower + Gamma(shape, scale)`` of the size
            (``shape`` a positive integer <= 4).
        resize_bounds: the resize factor ``N(1, 0.5)`` is clipped to this range.
        min_object_pct: with a foreground, the source box must hold more foreground than this fraction.
        min_overlap_pct: with a foreground, the destination box must hold more foreground than this fraction.
        tol: a pixel changes where its mean absolute change exceeds ``tol`` grey levels (NSA: 1).
        label_mode: ``"binary"`` (the mask), or NSA's ``"intensity"`` / ``"logistic-intensity"`` soft label, returned
            as ``params["soft_label"]``.
        intensity_logistic_params: ``(k, x0)`` of the logistic label.
        skip_background: NSA's object masks: a ``(brightness, threshold)`` pair (or a list of pairs): a pixel is
            on the object where ``|mean_c(x) - brightness| > threshold`` in grey levels (for every pair), median
            filtered 7x7 (:func:`~anofast.ops.object_mask.object_mask`), computed in every call for the images
            (and the pool). It acts as a ``foreground`` (intersected with one given to the call).
        source: ``None`` (patches from another image of the batch) or an ``(N, C, h, w)`` pool of normal images
            (float in [0, 1] or uint8; resized once to the image size).
        cycles: multigrid V-cycles of the Poisson solve.
        allow_self: a batch of one image without a pool takes its patches from the image itself (NSA's
            ``same=True``) instead of raising.
        backend: ``"auto"``, ``"reference"``, ``"cpp"`` or ``"triton"``.
    """

    def __init__(
        self,
        *,
        blend: Blend = "normal",
        num_patches: int = 3,
        width_bounds: tuple[tuple[float, float], tuple[float, float]] = ((0.03, 0.4), (0.03, 0.4)),
        gamma_params: tuple[float, float, float] = (2, 0.05, 0.03),
        resize_bounds: tuple[float, float] = (0.7, 1.3),
        min_object_pct: float = 0.25,
        min_overlap_pct: float = 0.25,
        tol: float = 1.0,
        label_mode: LabelMode = "binary",
        intensity_logistic_params: tuple[float, float] = (1 / 6, 20),
        skip_background: tuple[float, float] | list[tuple[float, float]] | None = None,
        source: Tensor | None = None,
        cycles: int = 6,
        allow_self: bool = False,
        backend: str = "auto",
    ):
        if blend not in ("normal", "mixed", "mix", "swap"):
            raise ValueError(f"blend must be 'normal', 'mixed', 'mix' or 'swap', got {blend!r}")
        self.blend = blend
        if isinstance(num_patches, bool) or not isinstance(num_patches, int) or not 1 <= num_patches <= _MAX_PATCHES:
            raise ValueError(f"num_patches must be an int in [1, {_MAX_PATCHES}], got {num_patches!r}")
        self.num_patches = num_patches
        try:
            (a, b), (c, d) = width_bounds
        except (TypeError, ValueError):
            raise ValueError(f"width_bounds must be ((min, max), (min, max)), got {width_bounds!r}") from None
        self.width_bounds = (check_range((a, b), "width_bounds", 0.0, 0.5),
                             check_range((c, d), "width_bounds", 0.0, 0.5))
        shape, scale, lower = gamma_params
        if int(shape) != shape or not 1 <= shape <= 4 or not scale > 0 or not lower >= 0:
            raise ValueError(f"gamma_params must be (integer shape 1..4, scale > 0, lower >= 0), got {gamma_params!r}")
        self.gamma_params = (int(shape), float(scale), float(lower))
        self.resize_bounds = check_range(resize_bounds, "resize_bounds", 0.0, None)
        self.min_object_pct = check_probability(min_object_pct, "min_object_pct")
        self.min_overlap_pct = check_probability(min_overlap_pct, "min_overlap_pct")
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol >= 0:
            raise ValueError(f"tol must be a number >= 0 (grey levels), got {tol!r}")
        self.tol = float(tol)
        if label_mode not in ("binary", "intensity", "logistic-intensity"):
            raise ValueError(f"label_mode must be 'binary', 'intensity' or 'logistic-intensity', got {label_mode!r}")
        self.label_mode = label_mode
        self.intensity_logistic_params = (float(intensity_logistic_params[0]), float(intensity_logistic_params[1]))
        self.skip_background = _check_background(skip_background)
        if isinstance(cycles, bool) or not isinstance(cycles, int) or cycles < 0:
            raise ValueError(f"cycles must be an int >= 0, got {cycles!r}")
        self.cycles = cycles
        self.allow_self = bool(allow_self)
        self.backend = backend
        self._pool: Tensor | None = None
        self._pool_cache: dict[tuple[int, int, int, str], Tensor] = {}
        if source is not None:
            if not isinstance(source, Tensor):
                raise TypeError(f"source must be None or an (N, C, h, w) tensor of normal images, got "
                                f"{type(source).__name__}")
            self._pool = check_images(source, "source")

    # ----------------------------------------------------------------------------------------------- presets
    @classmethod
    def nsa(cls, source: Tensor | None = None, **overrides: Any) -> NaturalSynthetic:
        """NSA "Shift" (``train_mvtec.py``): Poisson normal clone, Gamma(2, 0.05) + 0.03 half-widths in
        [0.03, 0.4], 3 patches, resize N(1, 0.5) clipped to [0.7, 1.3], binary label with tol 1."""
        return cls(source=source, **{"blend": "normal", **overrides})

    @classmethod
    def nsa_mixed(cls, source: Tensor | None = None, **overrides: Any) -> NaturalSynthetic:
        """NSA "Shift-M": as :meth:`nsa` with mixed-gradient Poisson blending."""
        return cls(source=source, **{"blend": "mixed", **overrides})

    @classmethod
    def nsa_texture(cls, source: Tensor | None = None, **overrides: Any) -> NaturalSynthetic:
        """NSA's texture classes: 4 patches, resize bounds [0.5, 2], logistic parameters (1/3, 7)."""
        kw: dict[str, Any] = dict(blend="normal", num_patches=4, resize_bounds=(0.5, 2.0),
                                  intensity_logistic_params=(1 / 3, 7))
        return cls(source=source, **{**kw, **overrides})

    @classmethod
    def nsa_mvtec(cls, category: str, source: Tensor | None = None, **overrides: Any) -> NaturalSynthetic:
        """NSA as ``train_mvtec.py`` trains MVTec AD ``category`` ("Shift-Intensity", the paper's NSA): normal
        clone, logistic-intensity label, and the class's half-width bounds, patch count, logistic parameters, object
        / overlap fractions, object masks (``skip_background``) and, for textures, resize bounds [0.5, 2]. Pass
        ``label_mode="binary"`` for "Shift", ``"intensity"`` for "Shift-Raw-Intensity", ``blend="mixed"`` for the
        "-M" settings."""
        if category not in MVTEC_CLASSES:
            raise ValueError(f"category must be an MVTec AD class ({', '.join(MVTEC_CLASSES)}), got {category!r}")
        kw: dict[str, Any] = {
            "blend": "normal", "label_mode": "logistic-intensity",
            "width_bounds": _MVTEC_WIDTH.get(category, (_W4, _W4)),
            "num_patches": _MVTEC_PATCHES.get(category, 3), "intensity_logistic_params": _MVTEC_LOGISTIC[category],
            "min_object_pct": _MVTEC_OBJECT_PCT.get(category, 0.25), "min_overlap_pct": 0.25,
            "skip_background": _MVTEC_BACKGROUND.get(category),
        }
        if category in _MVTEC_TEXTURES:
            kw["resize_bounds"] = (0.5, 2.0)
        return cls(source=source, **{**kw, **overrides})

    @classmethod
    def shift(cls, source: Tensor | None = None, **overrides: Any) -> NaturalSynthetic:
        """No Poisson solve: the resized patch is pasted (``patch_ex`` mode ``swap``, CutPaste-like), keeping the
        patch's 1-pixel border."""
        return cls(source=source, **{"blend": "swap", **overrides})

    def config(self) -> dict[str, Any]:
        """JSON-serialisable options (for manifests)."""
        return {
            "blend": self.blend, "num_patches": self.num_patches, "width_bounds": [list(b) for b in self.width_bounds],
            "gamma_params": list(self.gamma_params), "resize_bounds": list(self.resize_bounds),
            "min_object_pct": self.min_object_pct, "min_overlap_pct": self.min_overlap_pct, "tol": self.tol,
            "label_mode": self.label_mode, "intensity_logistic_params": list(self.intensity_logistic_params),
            "skip_background": None if self.skip_background is None else [list(p) for p in self.skip_background],
            "source": None if self._pool is None else f"tensor{tuple(self._pool.shape)}", "cycles": self.cycles,
            "allow_self": self.allow_self,
        }

    def __repr__(self) -> str:
        return f"NaturalSynthetic({', '.join(f'{k}={v!r}' for k, v in self.config().items())})"

    # ------------------------------------------------------------------------------------------------ params
    def sample_params(self, batch_size: int, seed: int | Tensor | None = None, *, size: tuple[int, int],
                      foreground: Tensor | None = None, source_foreground: Tensor | None = None) -> NSAParams:
        """Draws every random quantity of ``batch_size`` samples of ``size = (H, W)`` from their seeds.

        ``foreground`` (B, 1, H, W) restricts destinations (and, for batch sources, source boxes: a sample's source
        foreground is its partner's); ``source_foreground`` (N, 1, H, W) does the same for a pool.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        height, width = (int(v) for v in size)
        if min(height, width) < 8:
            raise ValueError(f"NSA needs images of at least 8x8 pixels, got {height}x{width}")
        if self._pool is None and batch_size < 2 and not self.allow_self:
            raise ValueError("NSA takes patches from another image of the batch: a batch of 1 needs source= "
                             "(an (N, C, H, W) pool of normal images)")
        seeds = _rng.resolve_seeds(seed, batch_size)
        b, k_max = batch_size, self.num_patches
        # the many small ops below and in _patch run in numpy: the same arithmetic, far less overhead per op
        u = rng_uniform(seeds, Stream.NSA, _PATCH0 + k_max * _STRIDE, backend=self.backend).cpu().numpy()
        z = rng_normal(seeds, Stream.NSA, _MAX_PATCHES, backend=self.backend).cpu().numpy().astype(np.float64)
        pick = u[:, _SOURCE].astype(np.float64)
        if self._pool is None:
            index = (np.arange(b) + 1 + _clamp((pick * (b - 1)).astype(np.int64), 0, max(b - 2, 0))) % b
        else:
            n = self._pool.shape[0]
            index = np.minimum((pick * n).astype(np.int64), n - 1)
        if self.blend == "mix":
            mode = np.where(u[:, _MODE] < 0.5, NORMAL, MIXED).astype(np.int32)
        else:
            mode = np.full(b, MIXED if self.blend == "mixed" else NORMAL, dtype=np.int32)
        if foreground is not None:
            foreground = check_tensor(foreground, "foreground")
            foreground = check_mask(foreground, "foreground", mask_like(b, height, width, foreground.device),
                                    torch.uint8)
        dst_sat = None if foreground is None else integral_image(foreground, backend=self.backend).cpu().numpy()
        if source_foreground is not None:
            source_foreground = check_tensor(source_foreground, "source_foreground")
            source_foreground = check_mask(source_foreground, "source_foreground",
                                           mask_like(source_foreground.shape[0], height, width,
                                                     source_foreground.device), torch.uint8)
            src_sat = integral_image(source_foreground, backend=self.backend).cpu().numpy()
        elif self._pool is None and dst_sat is not None:
            src_sat = dst_sat
        else:
            src_sat = None
        # every patch of every sample at once: row b * k_max + k is patch k of sample b (each row is independent)
        blk = u[:, _PATCH0: _PATCH0 + k_max * _STRIDE].astype(np.float64).reshape(b * k_max, _STRIDE)
        rows = np.arange(b).repeat(k_max)
        src_box, box, scale = self._patch(blk, z[:, :k_max].reshape(-1), (height, width), index[rows], rows, src_sat,
                                          dst_sat)
        present = blk[:, _COIN] < 0.5
        present[::k_max] = True  # the first patch always
        box[~present] = 0
        return NSAParams(seeds=seeds, source_index=torch.from_numpy(index), mode=torch.from_numpy(mode),
                         src_box=torch.from_numpy(src_box.reshape(b, k_max, 4)),
                         box=torch.from_numpy(box.reshape(b, k_max, 4)),
                         scale=torch.from_numpy(scale.reshape(b, k_max).astype(np.float32)), size=(height, width))

    def _patch(self, blk: np.ndarray, z: np.ndarray, size: tuple[int, int], index: np.ndarray, rows: np.ndarray,
               src_sat: np.ndarray | None, dst_sat: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One patch per row (``patch_ex``'s ``_patch_ex`` with rejection done on all candidates at once): row ``i``
        takes its patch from source image ``index[i]`` into sample ``rows[i]``. In numpy (the same arithmetic in the
        same order), but for the exponentials' ``log1p`` and sum, left to torch (numpy's may differ in the last bit)."""
        height, width = size
        b = blk.shape[0]
        (lo1, hi1), (lo2, hi2) = self.width_bounds
        minw1, maxw1 = round(lo1 * height), round(hi1 * height)
        minw2, maxw2 = round(lo2 * width), round(hi2 * width)
        shape, theta, lower = self.gamma_params
        # half-widths: lower + Gamma(shape, theta) of the size, theta times a sum of shape exponentials -log1p(-u)
        e = -np.stack((blk[:, _GAMMA1: _GAMMA1 + shape], blk[:, _GAMMA2: _GAMMA2 + shape]), 1)
        gamma = theta * -torch.log1p(torch.from_numpy(e)).sum(2).numpy()  # -sum(x) == sum(-x): rounding is symmetric
        hw = _clamp((lower + gamma) * (height, width), (minw1, minw2), (maxw1, maxw2)).astype(np.int64)
        hw1, hw2 = hw[:, 0], hw[:, 1]
        # NSA's 200 candidate centres (uniform y, x pairs) for the source and the destination: the boxes of
        # candidates c of rows r ((N, 1) and (1, K) indices, or (N,) and (N,)), computed only where tested
        su = blk[:, _SRC_CAND: _SRC_CAND + 2 * _CANDIDATES].reshape(b, _CANDIDATES, 2)
        du = blk[:, _DST_CAND: _DST_CAND + 2 * _CANDIDATES].reshape(b, _CANDIDATES, 2)

        def source(r: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, ...]:
            cu = su[r, c]
            c1 = minw1 + (cu[..., 0] * max(height - 2 * minw1, 1)).astype(np.int64)
            c2 = minw2 + (cu[..., 1] * max(width - 2 * minw2, 1)).astype(np.int64)
            h1, h2 = hw1[r], hw2[r]
            return (_clamp(c1 - h1, 0, height), _clamp(c2 - h2, 0, width), _clamp(c1 + h1, 0, height),
                    _clamp(c2 + h2, 0, width))

        def source_ok(r: np.ndarray, c: np.ndarray) -> np.ndarray:
            y1, x1, y2, x2 = source(r, c)
            ok = (y2 > y1) & (x2 > x1)
            if src_sat is None:  # all feasible without a foreground
                return ok
            area = np.maximum((y2 - y1) * (x2 - x1), 1)
            return ok & (_box_sum(src_sat, y1, x1, y2, x2, index[r]) / area > self.min_object_pct)

        # source centre: the first candidate with enough foreground
        first, found = _first_where(b, source_ok)
        sy, sx, sy2, sx2 = source(np.arange(b), first)
        sh, sw = sy2 - sy, sx2 - sx
        # resize (NSA's order of clips; its min/max half-widths bound the full size)
        lb, ub = self.resize_bounds
        scale = _clamp(1.0 + 0.5 * z, lb, ub)
        sh_f, sw_f = np.maximum(sh, 1).astype(np.float64), np.maximum(sw, 1).astype(np.float64)
        nh = _clamp(scale * sh_f, minw1, maxw1)
        nw = _clamp((nh / sh_f * sw_f).astype(np.int64), minw2, maxw2)
        nh = _clamp((nw.astype(np.float64) / sw_f * sh_f).astype(np.int64), minw1, maxw1)
        lo_y, hi_y = nh // 2 + 1, height - nh // 2 - 1
        lo_x, hi_x = nw // 2 + 1, width - nw // 2 - 1
        span_y, span_x = np.maximum(hi_y - lo_y, 1), np.maximum(hi_x - lo_x, 1)
        fits = (hi_y > lo_y) & (hi_x > lo_x)
        interior = np.maximum(nh - 2, 0) * np.maximum(nw - 2, 0)

        def dest(r: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            cu = du[r, c]
            d1 = lo_y[r] + (cu[..., 0] * span_y[r]).astype(np.int64)
            d2 = lo_x[r] + (cu[..., 1] * span_x[r]).astype(np.int64)
            return d1 - nh[r] // 2, d2 - nw[r] // 2

        def dest_ok(r: np.ndarray, c: np.ndarray) -> np.ndarray:
            y, x = dest(r, c)
            if dst_sat is None:
                return np.broadcast_to(fits[r] & (interior[r] >= _MIN_PIXELS), y.shape)
            h, w, border = nh[r], nw[r], np.arange(2)[:, None, None]
            # the box, then its interior (without the 1-pixel border), in one look-up
            fg, inner = _box_sum(dst_sat, y + border, x + border, y + h - border, x + w - border, rows[r])
            return fits[r] & (fg / np.maximum(h * w, 1) > self.min_overlap_pct) & (inner >= _MIN_PIXELS)

        # destination centre: the first candidate whose box holds enough foreground
        dfirst, dfound = _first_where(b, dest_ok)
        ty, tx = dest(np.arange(b), dfirst)
        src_box = np.stack((sy, sx, sh, sw), 1).astype(np.int32)
        box = np.stack((ty, tx, nh, nw), 1).astype(np.int32)
        box[~(found & dfound)] = 0
        return src_box, box, scale

    # ------------------------------------------------------------------------------------------------- apply
    def __call__(self, images: Tensor, seed: int | Tensor | None = None, *,
                 foreground: Tensor | None = None) -> AnomalyBatch:
        """Makes NSA anomalies on a batch.

        Args:
            images: ``(B, C, H, W)`` float in [0, 1] or uint8, C in {1, 3}; B >= 2 unless ``source=`` was given.
            seed: an int, a ``(B,)`` int64 tensor of per-sample seeds, or None (torch's global RNG).
            foreground: optional ``(B, 1, H, W)`` object mask: patches land (and are taken from partners) only on
                the foreground, and pixels outside it never change.

        Returns:
            :class:`~anofast.AnomalyBatch`: ``mask`` is exactly the changed pixels.
        """
        images = check_images(images, keep_uint8=True)
        foreground = self._foreground(images, foreground)
        params = self.sample_params(images.shape[0], seed, size=tuple(images.shape[-2:]), foreground=foreground,
                                    source_foreground=self._source_foreground(images))
        return self._apply(images, params, foreground)

    def apply(self, images: Tensor, params: NSAParams, *, foreground: Tensor | None = None) -> AnomalyBatch:
        """Applies drawn parameters: a pure function of ``(images, params, foreground)``."""
        images = check_images(images, keep_uint8=True)
        return self._apply(images, params, self._foreground(images, foreground))

    def _foreground(self, images: Tensor, foreground: Tensor | None) -> Tensor | None:
        """The call's ``(B, 1, H, W)`` uint8 {0, 1} foreground: the given one, NSA's object masks of the images
        (``skip_background``), or both intersected."""
        if foreground is not None:
            foreground = check_mask(foreground, "foreground", images, torch.uint8)
        if self.skip_background is None:
            return foreground
        obj = self._objects(images)
        return obj if foreground is None else obj.mul_(foreground)

    def _objects(self, images: Tensor) -> Tensor:
        """NSA's object masks (``skip_background``) of ``(N, C, H, W)`` images as uint8 {0, 1}."""
        return object_mask(images, self.skip_background, _OBJECT_MEDIAN, dtype=torch.uint8, backend=self.backend)

    def _source_foreground(self, images: Tensor) -> Tensor | None:
        """NSA's object masks of the pool (``skip_background`` with ``source=``), cached per size and device."""
        if self._pool is None or self.skip_background is None:
            return None
        c, size = images.shape[1], tuple(images.shape[-2:])
        key = (c, *size, str(images.device), "object")
        obj = self._pool_cache.get(key)
        if obj is None:
            obj = self._pool_cache[key] = self._objects(self._source(images))
        return obj

    def _source(self, images: Tensor) -> Tensor:
        if self._pool is None:
            return images
        c, size = images.shape[1], tuple(images.shape[-2:])
        key = (c, *size, str(images.device))
        pool = self._pool_cache.get(key)
        if pool is None:
            pool = self._pool
            if pool.shape[1] != c:
                pool = pool.mean(1, keepdim=True) if c == 1 else pool.expand(-1, 3, -1, -1)
            if tuple(pool.shape[-2:]) != size:
                pool = F.interpolate(pool, size=size, mode="bilinear", align_corners=False).clamp(0, 1)
            pool = self._pool_cache[key] = pool.to(images.device).contiguous()
        return pool

    def _apply(self, images: Tensor, params: NSAParams, foreground: Tensor | None) -> AnomalyBatch:
        """``images``: the checked batch, float32 or uint8; the Poisson op reads uint8 as such and writes its float32
        conversion as the output (no separate conversion pass)."""
        if not isinstance(params, NSAParams):
            raise TypeError(f"params must be NSAParams from sample_params, got {type(params).__name__}")
        batch = images.shape[0]
        if len(params) != batch or params.size != tuple(images.shape[-2:]):
            raise ValueError(f"params are for {len(params)} images of {params.size}, got {batch} of "
                             f"{tuple(images.shape[-2:])}")
        dev = images.device
        mask = torch.zeros((batch, 1, *images.shape[-2:]), dtype=torch.float32, device=dev)
        diff = None if self.label_mode == "binary" else torch.zeros_like(mask)
        source = images if self._pool is None else self._source(images)
        cycles = 0 if self.blend == "swap" else self.cycles
        index, mode = params.source_index.to(dev), params.mode.to(dev)
        # every patch round in one call (round k on top of round k - 1) into a new float32 out; the foreground is
        # the region
        out, _ = poisson_blend(images, source, index, params.src_box.to(dev), params.box.to(dev), mode,
                               region=foreground, tol=self.tol / 255.0, cycles=cycles, mask=mask, diff=diff,
                               backend=self.backend)
        label = mask.flatten(1).amax(1).to(torch.int64)
        record: dict[str, Any] = {
            "seed": params.seeds.cpu(), "source_index": params.source_index.cpu(), "mode": params.mode.cpu(),
            "patches": (params.box[:, :, 2] > 0).sum(1), "src_box": params.src_box.cpu(), "box": params.box.cpu(),
            "scale": params.scale.cpu(),
        }
        if diff is not None:
            record["soft_label"] = self._soft_label(diff, mask, out.shape[1])
        return AnomalyBatch(image=out, mask=mask, label=label, params=record)

    def _soft_label(self, diff: Tensor, mask: Tensor, channels: int) -> Tensor:
        """NSA's intensity label from ``diff`` = sum_c |out - input| (the Poisson op's, 0 off the mask): the mean
        |change| in grey levels, ``sum / C * 255``, median over a disk of radius 5 at mask pixels, optionally mapped by
        ``mask / (1 + exp(-k (x - x0)))``."""
        # x -> x / C * 255 never decreases (each float operation rounds monotonically), so the median of the mapped
        # values is the mapped median: the map runs on the median only, with the bits of mapping first (what
        # Tensor.mean(1) * 255 computes on the CPU). Below, mask / (1.0 + torch.exp(-k * (label - x0))) * mask.
        label = masked_median(diff, mask, 5, backend=self.backend).div_(channels).mul_(255.0)
        if self.label_mode == "logistic-intensity":
            k, x0 = self.intensity_logistic_params
            z = label.sub_(x0).mul_(-k).exp_().add_(1.0)
            label = torch.div(mask, z, out=z)
        return label.mul_(mask)


def _check_background(value: Any) -> tuple[tuple[float, float], ...] | None:
    """``skip_background`` as a tuple of ``(brightness, threshold)`` pairs (None: no object masks)."""
    if value is None:
        return None
    try:
        return tuple((float(b), float(t)) for b, t in background_pairs(value))
    except (TypeError, ValueError) as e:
        raise type(e)(f"skip_background: {e}") from None


def _box_sum(sat: np.ndarray, y1: np.ndarray, x1: np.ndarray, y2: np.ndarray, x2: np.ndarray,
             rows: np.ndarray) -> np.ndarray:
    """Sum of the mask over the boxes ``[y1, y2) x [x1, x2)`` (empty or inverted boxes give 0) in the summed-area
    table ``sat`` (:func:`~anofast.ops.integral.integral_image`) of sample ``rows`` (broadcast with the boxes)."""
    _, hp1, wp1 = sat.shape
    y1, x1 = _clamp(y1, 0, hp1 - 1), _clamp(x1, 0, wp1 - 1)
    y2, x2 = _clamp(y2, y1, hp1 - 1), _clamp(x2, x1, wp1 - 1)
    flat = sat.reshape(-1)
    r1, r2 = (rows * hp1 + y1) * wp1, (rows * hp1 + y2) * wp1  # where the table rows y1, y2 start
    # exact in int32 (counts < 2**31, and so are the partial sums)
    return (flat[r2 + x2] - flat[r1 + x2] - flat[r2 + x1] + flat[r1 + x1]).astype(np.float64)


def _first_where(n: int, test: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``_first`` of the ``(n, 200)`` feasibility of NSA's candidates, where ``test(rows, candidates)`` (``(N, 1)``
    and ``(1, K)`` indices; the costly box sums) runs on the first ``_PROBE`` candidates of every row, then on the
    rest only for the rows without a hit: the same result, and most rows hit early."""
    rows, cand = np.arange(n)[:, None], np.arange(_CANDIDATES)[None]
    first, found = _first(test(rows, cand[:, :_PROBE]))
    if not found.all():
        miss = (~found).nonzero()[0]
        tail_first, found[miss] = _first(test(rows[miss], cand[:, _PROBE:]))
        first[miss] = _PROBE + tail_first
    return first, found


def _first(ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the first True per row (the last index when none), and whether there is one."""
    found = ok.any(1)
    return np.where(found, ok.argmax(1), ok.shape[1] - 1), found


def _clamp(a: np.ndarray, lo: Any, hi: Any) -> np.ndarray:
    """``torch.clamp`` (the max, then the min) without ``np.clip``'s overhead."""
    return np.minimum(np.maximum(a, lo), hi)


__all__ = ["NSAParams", "NaturalSynthetic"]
