"""Feature-level anomaly synthesis (SimpleNet, SuperSimpleNet, GLASS's GAS, PBAS) on a detector's feature maps.

- :class:`FeatureNoise`: Gaussian noise on ``(B, C, h, w)`` features, optionally under a Perlin mask made at the
  feature resolution (SuperSimpleNet), in one fused pass (the ``feature_noise`` op) that can work in place.
  Presets: :meth:`FeatureNoise.simplenet`, :meth:`FeatureNoise.supersimplenet`, :meth:`FeatureNoise.glass`.
- :func:`glass_ascent`: GLASS's gradient ascent of noisy features on the user's discriminator, with the radial
  projection every few steps (:func:`project_to_band`).
- :func:`pbas_push` and :func:`update_pbas_centers`: PBAS's radial push away from the nearest normal centre.

The output is a :class:`FeatureBatch` (features, feature-grid mask, label, params), not an
:class:`~anofast.AnomalyBatch`: features are not images in [0, 1].

RNG counters (per input sample ``b``, copy ``k``) on ``Stream.FEATURE_SCALAR``: ``8*k + 0, 1`` noise seed of the
copy, ``8*k + 2`` the empty-mask coin, ``8*k + 3, 4`` the seed of the copy's Perlin parameters. The per-element
noise is ``Stream.FEATURE_NOISE`` under the copy's noise seed (counter = element index in the sample).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from anofast import _rng
from anofast._rng import Stream
from anofast._validate import check_probability, check_range, check_tensor
from anofast.ops.feature_noise import feature_noise
from anofast.ops.perlin import PerlinParams, perlin_mask, sample_perlin_params

_NOISE_HI, _NOISE_LO, _COIN, _PERLIN_HI, _PERLIN_LO = 0, 1, 2, 3, 4
_STRIDE = 8  # FEATURE_SCALAR counters per copy


class FeatureBatch(NamedTuple):
    """Output of :class:`FeatureNoise` (a NamedTuple, so ``default_collate`` batches it field by field).

    Attributes:
        features: ``(N, C, h, w)`` float32 noisy features, ``N = copies * B`` (copy ``k`` of input ``b`` is row
            ``k * B + b``, SuperSimpleNet's ``torch.cat((f, f))`` order).
        mask: ``(N, 1, h, w)`` float32 {0, 1}: the feature pixels whose values changed, united with the real
            anomaly ``mask`` given to the call (if any).
        label: ``(N,)`` int64, 1 where ``mask`` is non-empty.
        params: per-output-sample record (dict of tensors with leading ``N``).
    """

    features: Tensor
    mask: Tensor
    label: Tensor
    params: dict[str, Any]


@dataclass(frozen=True)
class FeatureNoiseParams:
    """Everything :meth:`FeatureNoise.apply` needs, drawn by :meth:`FeatureNoise.sample_params` (leading ``N``).

    Attributes:
        seeds: ``(B,)`` int64 per-input-sample seeds the rest was drawn from.
        noise_seeds: ``(N,)`` int64 seed of each output sample's noise (``Stream.FEATURE_NOISE``).
        std: ``(N,)`` float32 noise standard deviation.
        apply: ``(N,)`` bool: False = the Perlin mask was emptied (SuperSimpleNet's 50 % coin); always True
            without a Perlin mask.
        perlin: ``(N,)`` Perlin mask parameters, or None (noise everywhere).
    """

    seeds: Tensor
    noise_seeds: Tensor
    std: Tensor
    apply: Tensor
    perlin: PerlinParams | None

    def __len__(self) -> int:
        return int(self.noise_seeds.shape[0])


class FeatureNoise:
    """Batched feature-level anomalies: ``f' = f + N(0, std^2) * m`` with ``m`` = 1, or a Perlin mask at the
    feature resolution (thresholded, not rotated), each emptied with probability ``p_empty``.

    Args:
        std: noise standard deviation.
        perlin: whether the noise goes under a Perlin mask (SuperSimpleNet) or everywhere (SimpleNet, GLASS).
        perlin_threshold: Perlin threshold (SuperSimpleNet: 0.2 MVTec, 0.6 VisA and supervised).
        res_exp_range: Perlin lattice exponents ``[low, high)`` (cells per axis ``2**U{low..high-1}``).
        p_empty: probability that a copy's Perlin mask is zeroed (SuperSimpleNet: 0.5); such a copy is normal.
        copies: output samples per input (SuperSimpleNet duplicates its batch: 2), each with its own draws.
        overlap: with a real-anomaly ``mask`` given to the call: also add noise inside it (False: SuperSimpleNet's
            supervised setting and anomalib's port; without real anomalies both are the same).
        backend: ``"auto"``, ``"reference"``, ``"cpp"`` or ``"triton"`` for every op.
    """

    def __init__(
        self,
        *,
        std: float = 0.015,
        perlin: bool = False,
        perlin_threshold: float = 0.2,
        res_exp_range: tuple[int, int] = (0, 6),
        p_empty: float = 0.0,
        copies: int = 1,
        overlap: bool = False,
        backend: str = "auto",
    ):
        self.std = check_range(std, "std", 0.0)[0]
        self.perlin = bool(perlin)
        self.perlin_threshold = check_range(perlin_threshold, "perlin_threshold", -2.0, 2.0)[0]
        lo, hi = res_exp_range
        if not (isinstance(lo, int) and isinstance(hi, int) and 0 <= lo < hi <= 6):
            raise ValueError(f"res_exp_range must be integers with 0 <= low < high <= 6, got {res_exp_range!r}")
        self.res_exp_range = (lo, hi)
        self.p_empty = check_probability(p_empty, "p_empty")
        if isinstance(copies, bool) or not isinstance(copies, int) or copies < 1:
            raise ValueError(f"copies must be an int >= 1, got {copies!r}")
        self.copies = copies
        self.overlap = bool(overlap)
        self.backend = backend

    # ----------------------------------------------------------------------------------------------- presets
    @classmethod
    def simplenet(cls, **overrides: Any) -> FeatureNoise:
        """SimpleNet (DonaldRR/SimpleNet ``run.sh`` for MVTec): i.i.d. ``N(0, 0.015^2)`` on every adapted feature
        (``main.py``'s default is 0.05: pass ``std=0.05``); every sample anomalous, no spatial mask (the returned
        mask is all ones). ``mix_noise`` > 1 (one of K stds per patch) is not a preset option: pass per-pixel
        scales as ``weight`` to :func:`anofast.ops.feature_noise.feature_noise`."""
        return cls(**{**dict(std=0.015, perlin=False, copies=1), **overrides})

    @classmethod
    def supersimplenet(cls, *, perlin_threshold: float = 0.2, **overrides: Any) -> FeatureNoise:
        """SuperSimpleNet (blaz-r/SuperSimpleNet, anomalib 2.x ``AnomalyGenerator(0, 0.015, 0.2)``): the batch is
        duplicated, each copy gets ``N(0, 0.015^2)`` under its own Perlin mask at the feature resolution (scales
        ``2^{0..5}``, no rotation, threshold 0.2 for MVTec / 0.6 for VisA and supervised runs), zeroed with
        probability 0.5; no noise inside real anomalies (``overlap=False``); label = any mask pixel. anomalib's
        extra rescale of an all-below-threshold noise map is not reproduced (the paper has no such step)."""
        kw = dict(std=0.015, perlin=True, perlin_threshold=perlin_threshold, res_exp_range=(0, 6), p_empty=0.5,
                  copies=2, overlap=False)
        return cls(**{**kw, **overrides})

    @classmethod
    def glass(cls, **overrides: Any) -> FeatureNoise:
        """GLASS GAS start point (cqylunlun/GLASS ``--noise 0.015``): ``gaus = true + N(0, 0.015^2)`` everywhere,
        all anomalous; refine it with :func:`glass_ascent` and the discriminator being trained."""
        return cls(**{**dict(std=0.015, perlin=False, copies=1), **overrides})

    def config(self) -> dict[str, Any]:
        """JSON-serialisable options (for manifests)."""
        return {"std": self.std, "perlin": self.perlin, "perlin_threshold": self.perlin_threshold,
                "res_exp_range": list(self.res_exp_range), "p_empty": self.p_empty, "copies": self.copies,
                "overlap": self.overlap}

    def __repr__(self) -> str:
        return f"FeatureNoise({', '.join(f'{k}={v!r}' for k, v in self.config().items())})"

    # ------------------------------------------------------------------------------------------------ params
    def sample_params(self, batch_size: int, seed: int | Tensor | None = None) -> FeatureNoiseParams:
        """Draws every random quantity of ``batch_size`` input samples (``copies * batch_size`` outputs)."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        seeds = _rng.resolve_seeds(seed, batch_size)
        bits = _rng.uniform_bits(seeds, Stream.FEATURE_SCALAR, _STRIDE * self.copies)
        bits = bits.view(batch_size, self.copies, _STRIDE).transpose(0, 1).reshape(-1, _STRIDE)  # row k * B + b

        def seed64(hi: int, lo: int) -> Tensor:
            return ((bits[:, hi] & 0x7FFFFFFF) << 32) | bits[:, lo]

        n_out = batch_size * self.copies
        apply = _rng.to_unit_float(bits[:, _COIN]) >= self.p_empty
        perlin = None
        if self.perlin:
            perlin = sample_perlin_params(seed64(_PERLIN_HI, _PERLIN_LO), res_exp_range=self.res_exp_range,
                                          rotation_range=(0.0, 0.0), threshold=self.perlin_threshold,
                                          backend=self.backend)
        else:
            apply = torch.ones(n_out, dtype=torch.bool)
        std = torch.full((n_out,), self.std, dtype=torch.float32)
        return FeatureNoiseParams(seeds=seeds, noise_seeds=seed64(_NOISE_HI, _NOISE_LO), std=std, apply=apply,
                                  perlin=perlin)

    # ------------------------------------------------------------------------------------------------- apply
    def __call__(self, features: Tensor, seed: int | Tensor | None = None, *, mask: Tensor | None = None,
                 foreground: Tensor | None = None, inplace: bool = False, out: Tensor | None = None) -> FeatureBatch:
        """Makes feature-level anomalies on a batch.

        Args:
            features: ``(B, C, h, w)`` float32 feature maps (e.g. a detector's adapted features), CPU or CUDA.
            seed: an int (sample ``i`` is keyed by ``(seed, i)``, see :func:`anofast.sample_seeds`), a ``(B,)``
                int64 tensor of per-sample seeds, or None (drawn from torch's global RNG).
            mask: optional ``(B, 1, h, w)`` real-anomaly mask at the feature resolution (SuperSimpleNet's
                supervised mode): kept in the output mask, and no noise inside it unless ``overlap``.
            foreground: optional ``(B, 1, h, w)`` mask: noise only where it is 1.
            inplace: write the noise into ``features`` (``copies == 1`` only); pixels without noise are untouched.
            out: optional ``(copies * B, C, h, w)`` float32 buffer for the result, e.g. one reused across training
                steps (a fresh output's first touch can cost more than the noise itself). It may start with the
                features (``features = out[:B]``): the duplicated batch then needs no memory beyond ``out``, and
                copy 0 is written in place. SuperSimpleNet training loop::

                    buf = torch.empty(2 * B, C, h, w)
                    for images in loader:
                        buf[:B] = adaptor(backbone(images))   # or any op that writes into buf[:B]
                        batch = FeatureNoise.supersimplenet()(buf[:B], seed=step, out=buf)

        Returns:
            :class:`FeatureBatch`.
        """
        features = _check_features(features)
        return self._apply(features, self.sample_params(features.shape[0], seed), mask, foreground, inplace, out)

    def apply(self, features: Tensor, params: FeatureNoiseParams, *, mask: Tensor | None = None,
              foreground: Tensor | None = None, inplace: bool = False, out: Tensor | None = None) -> FeatureBatch:
        """Applies drawn parameters: a pure function of ``(features, params, mask, foreground)``."""
        return self._apply(_check_features(features), params, mask, foreground, inplace, out)

    def _apply(self, features: Tensor, params: FeatureNoiseParams, mask: Tensor | None, foreground: Tensor | None,
               inplace: bool, out: Tensor | None = None) -> FeatureBatch:
        batch, _, height, width = features.shape
        if not isinstance(params, FeatureNoiseParams):
            raise TypeError(f"params must be FeatureNoiseParams from sample_params, got {type(params).__name__}")
        copies = len(params) // batch if batch else 0
        if params.seeds.shape[0] != batch or copies * batch != len(params):
            raise ValueError(f"params are for {params.seeds.shape[0]} samples but features has batch size {batch}")
        if inplace and copies != 1:
            raise ValueError(f"inplace=True needs copies == 1, got {copies}")
        dev = features.device
        real = None if mask is None else _check_grid(mask, "mask", features).repeat(copies, 1, 1, 1)
        fg = None if foreground is None else _check_grid(foreground, "foreground", features).repeat(copies, 1, 1, 1)
        allowed = fg
        if real is not None and not self.overlap:
            allowed = 1.0 - real if allowed is None else allowed * (1.0 - real)
        if params.perlin is not None:
            weight, _ = perlin_mask(params.perlin, (height, width), foreground=allowed, apply=params.apply.to(dev),
                                    device=dev, backend=self.backend)
        else:
            weight = None if allowed is None else allowed.contiguous()
        out, changed, count = feature_noise(features, params.noise_seeds.to(dev), params.std.to(dev), weight,
                                            copies=copies, inplace=inplace, out=out, backend=self.backend)
        if real is not None:
            changed = torch.maximum(changed, real)
        label = changed.flatten(1).amax(dim=1).to(torch.int64) if changed.shape[0] else count.clamp(0, 1)
        record = {
            "seed": params.seeds.repeat(copies),
            "copy": torch.arange(copies).repeat_interleave(batch),
            "noise_seed": params.noise_seeds.cpu(),
            "std": params.std.cpu(),
            "applied": params.apply.cpu(),
            "noise_pixels": count.cpu(),
        }
        if params.perlin is not None:
            record["perlin_res"] = params.perlin.res.cpu()
            record["perlin_threshold"] = params.perlin.threshold.cpu()
        return FeatureBatch(features=out, mask=changed, label=label, params=record)


def _check_features(features: object) -> Tensor:
    x = check_tensor(features, "features")
    if x.dim() != 4:
        raise ValueError(f"features must have shape (B, C, h, w), got {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError("features is an empty batch (B=0)")
    if x.dtype != torch.float32:
        raise TypeError(f"features must be float32, got {x.dtype} (convert with .float())")
    return x


def _check_grid(m: object, name: str, like: Tensor) -> Tensor:
    """A ``(B, 1, h, w)`` mask at the feature resolution as contiguous float32 {0, 1} (> 0.5 is 1)."""
    t = check_tensor(m, name)
    b, _, h, w = like.shape
    if tuple(t.shape) != (b, 1, h, w):
        raise ValueError(f"{name} must have shape ({b}, 1, {h}, {w}), got {tuple(t.shape)}")
    if t.device != like.device:
        raise ValueError(f"{name} is on {t.device} but features are on {like.device}")
    if not (t.is_floating_point() or t.dtype in (torch.bool, torch.uint8)):
        raise TypeError(f"{name} must be bool, uint8 or float, got {t.dtype}")
    t = t.to(torch.float32)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return (t > 0.5).to(torch.float32).contiguous()


# ----------------------------------------------------------------------------------------------------- GLASS
def _as_rows(x: Tensor, name: str) -> tuple[Tensor, Callable[[Tensor], Tensor]]:
    """``(M, D)`` rows of a ``(M, D)`` or ``(B, D, h, w)`` tensor, and the inverse reshape."""
    check_tensor(x, name)
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")
    if x.dim() == 2:
        return x, lambda r: r
    if x.dim() == 4:
        b, d, h, w = x.shape
        return x.permute(0, 2, 3, 1).reshape(-1, d), lambda r: r.reshape(b, h, w, d).permute(0, 3, 1, 2)
    raise ValueError(f"{name} must have shape (M, D) or (B, D, h, w), got {tuple(x.shape)}")


def project_to_band(x: Tensor, anchor: Tensor, low: float | Tensor, high: float | Tensor, eps: float = 1e-10) -> Tensor:
    """Moves each row of ``x`` along ``x - anchor`` so that its distance to ``anchor`` lies in ``[low, high]``
    (GLASS's projection: ``anchor + (x - anchor) * clamp(d, low, high) / (d + eps)``)."""
    h = x - anchor
    d = torch.linalg.vector_norm(h, dim=1, keepdim=True)
    low_t = torch.as_tensor(low, dtype=d.dtype, device=d.device)
    high_t = torch.as_tensor(high, dtype=d.dtype, device=d.device)
    return anchor + h * (torch.clamp(d, low_t, high_t) / (d + eps))


def glass_radius(features: Tensor, center: Tensor, quantile: float = 0.75) -> Tensor:
    """GLASS's hypersphere radius ``r_t``: the ``quantile`` of ``||f - c||`` over normal feature rows."""
    rows, _ = _as_rows(features, "features")
    c, _ = _as_rows(center, "center")
    return torch.quantile(torch.linalg.vector_norm(rows - c, dim=1), check_probability(quantile, "quantile"))


def glass_ascent(
    noisy: Tensor,
    true: Tensor,
    discriminator: Callable[[Tensor], Tensor],
    *,
    steps: int = 20,
    step_size: float = 0.001,
    project_every: int = 5,
    mode: Literal["manifold", "hypersphere"] = "manifold",
    band: tuple[float, float] = (0.5, 1.0),
    center: Tensor | None = None,
    radius: float | Tensor | None = None,
    logits: bool = False,
) -> Tensor:
    """GLASS's Global Anomaly Synthesis: gradient *ascent* of noisy features on the discriminator's loss.

    Each step raises ``BCE(discriminator(x), 1)`` along the row-normalised gradient, ``x += step_size * g / ||g||``
    (the fakes move towards what the discriminator calls normal: harder negatives); every ``project_every`` steps
    the rows are projected back onto a distance band (:func:`project_to_band`):

    - ``"manifold"`` (GLASS ``svd=0``): ``||x - true||`` in ``band`` (GLASS: ``[0.5, 1.0]``);
    - ``"hypersphere"`` (``svd=1``): ``||x - center||`` in ``[radius, 2 radius]`` (``radius`` defaults to
      :func:`glass_radius` of ``true``).

    Args:
        noisy: ``(M, D)`` rows or ``(B, D, h, w)`` maps, e.g. ``FeatureNoise.glass()(true, seed).features``.
        true: the clean features, same shape.
        discriminator: callable mapping ``(M, D)`` rows to ``(M,)`` or ``(M, 1)`` anomaly probabilities (sigmoid
            output, as GLASS's), or logits with ``logits=True``. Only its input gets gradients.
        steps, step_size, project_every: GLASS: 20, 0.001, 5.
        center: ``(M, D)`` / ``(B, D, h, w)`` per-position centres (or one ``(1, D)`` row), for ``"hypersphere"``.

    Returns:
        The refined features, detached, in the shape of ``noisy``.
    """
    x, unshape = _as_rows(noisy, "noisy")
    t, _ = _as_rows(true, "true")
    if t.shape != x.shape:
        raise ValueError(f"true must have the shape of noisy, {tuple(noisy.shape)}, got {tuple(true.shape)}")
    if not callable(discriminator):
        raise TypeError(f"discriminator must be callable, got {type(discriminator).__name__}")
    for name, v in (("steps", steps), ("project_every", project_every)):
        if isinstance(v, bool) or not isinstance(v, int) or v < (0 if name == "steps" else 1):
            raise ValueError(f"{name} must be an int >= {0 if name == 'steps' else 1}, got {v!r}")
    if mode == "manifold":
        anchor, (low, high) = t.detach(), check_range(band, "band", 0.0)
    elif mode == "hypersphere":
        if center is None:
            raise ValueError("mode='hypersphere' needs center=")
        anchor, _ = _as_rows(center, "center")
        anchor = anchor.detach().expand_as(x)
        r = glass_radius(t.detach(), anchor) if radius is None else torch.as_tensor(radius, dtype=x.dtype)
        low, high = r, 2 * r
    else:
        raise ValueError(f"mode must be 'manifold' or 'hypersphere', got {mode!r}")
    loss_fn = F.binary_cross_entropy_with_logits if logits else F.binary_cross_entropy
    x = x.detach().clone()
    for step in range(steps):
        x.requires_grad_(True)
        with torch.enable_grad():
            score = discriminator(x).reshape(-1)
            if score.shape[0] != x.shape[0]:
                raise ValueError(f"discriminator must return one score per row ({x.shape[0]}), got {score.shape[0]}")
            loss = loss_fn(score, torch.ones_like(score))
            (grad,) = torch.autograd.grad(loss, [x])
        with torch.no_grad():
            x = x + step_size * grad / (torch.linalg.vector_norm(grad, dim=1, keepdim=True) + 1e-10)
            if (step + 1) % project_every == 0:
                x = project_to_band(x, anchor, low, high)
    return unshape(x.detach())


# ------------------------------------------------------------------------------------------------------ PBAS
def update_pbas_centers(centers: Tensor | None, features: Tensor, momentum: float = 0.9) -> Tensor:
    """One step of PBAS's centre bank (``pbas.py``, before training): the batch mean per patch position is matched
    to the nearest centre by cosine similarity and merged into it (``c = 0.9 c + 0.1 mean``, in row order).

    Args:
        centers: ``(P, D)`` current centres, or None for the first batch (which becomes the bank).
        features: ``(B, P, D)`` patch features of one batch (``P`` positions).

    Returns:
        The updated ``(P, D)`` centres (a new tensor).
    """
    check_tensor(features, "features")
    if features.dim() != 3:
        raise ValueError(f"features must have shape (B, P, D), got {tuple(features.shape)}")
    mean = features.detach().mean(dim=0)
    if centers is None:
        return mean.clone()
    c, _ = _as_rows(centers, "centers")
    if c.shape[1] != mean.shape[1]:
        raise ValueError(f"centers must have {mean.shape[1]} columns, got {tuple(c.shape)}")
    c = c.detach().clone()
    idx = (F.normalize(mean, dim=1) @ F.normalize(c, dim=1).T).argmax(dim=1).tolist()
    for j, i in enumerate(idx):  # sequential, as the original: a centre hit twice is merged twice
        c[i] = c[i] * momentum + mean[j] * (1.0 - momentum)
    return c


def pbas_push(features: Tensor, centers: Tensor, k: float = 0.25, eps: float = 1e-12) -> Tensor:
    """PBAS's fake features: each row pushed away from its nearest centre (cosine similarity),
    ``fake = f + k * mean(||d||) * d / ||d||`` with ``d = f - c`` and the mean over all rows (PBAS ``--k 0.25``).

    Args:
        features: ``(M, D)`` rows or ``(B, D, h, w)`` maps.
        centers: ``(K, D)`` centre bank (e.g. from :func:`update_pbas_centers`).
        k: push length in units of the mean distance to the centres.

    Returns:
        The pushed features (detached, as PBAS's), in the shape of ``features``.
    """
    f, unshape = _as_rows(features, "features")
    c, _ = _as_rows(centers, "centers")
    if c.shape[1] != f.shape[1]:
        raise ValueError(f"centers must have {f.shape[1]} columns, got {tuple(c.shape)}")
    f, c = f.detach(), c.detach()
    nearest = c[(F.normalize(f, dim=1) @ F.normalize(c, dim=1).T).argmax(dim=1)]
    d = f - nearest
    dist = torch.linalg.vector_norm(d, dim=1, keepdim=True)
    return unshape(f + (d / dist.clamp_min(eps)) * (dist.mean() * k))
