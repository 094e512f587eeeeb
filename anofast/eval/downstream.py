"""Downstream protocol: train a small detector on normal images + a generator's anomalies, test on real defects.

The detector (SuperSimpleNet-like, sized for a 2-core CPU):

- frozen EfficientNet-Lite0 features: block 4 (stride 8, 40 channels) and block 10 (stride 16, 112 channels,
  upsampled to stride 8), concatenated and averaged over 3 x 3 neighbourhoods (PatchCore's local aggregation);
  the features of every real image are computed once per run and cached;
- a head of 1 x 1 convolutions (adaptor C -> C, then C -> 128, batch norm, leaky ReLU, 128 -> 1) trained with a
  focal loss against the generator's masks (area-averaged to the feature grid), for a fixed budget of
  ``steps`` batches of ``batch_size`` feature maps, half normal training images and half synthetic anomalies
  from a pool of ``n_synthetic`` images the generator makes once per seed. No model selection: the head after
  the last step is evaluated;
- the anomaly map is the head's logit map upsampled (bilinear) to the image size; the image score is the
  maximum of the map smoothed by a 3 x 3 mean at feature resolution.

The baseline needs no synthetic data: PatchCore-like nearest-neighbour distance of each test feature to a
memory bank of normal training features (a random ``bank_size`` subset, drawn per seed).

Images are resized to ``size`` x ``size`` (default 224, the network's training resolution; any input size and
aspect ratio is mapped to it, grey images are repeated to RGB). Randomness (synthetic sources, generator seeds,
head initialisation, batch order, bank subset) comes from the counter RNG on ``Stream.EVAL`` keyed by the seed,
so a run is reproducible up to float round-off of the CPU kernels.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from anofast import _rng
from anofast._rng import Stream
from anofast.eval import _rand
from anofast.eval.backbone import load_lite0
from anofast.eval.fidelity import mask_fidelity
from anofast.eval.metrics import detection_metrics
from anofast.types import AnomalyBatch

FEATURE_BLOCKS = (4, 10)
FEATURE_STRIDE = 8
HIDDEN = 128


class GeneratorOutputError(ValueError):
    """A generator returned something other than ``(images, masks)`` of the input's shape."""


# ------------------------------------------------------------------------------------------------ generators
@dataclass
class Generator:
    """A generator under test: ``fn(images (B,C,H,W) float in [0,1], seed: int) -> (images, masks)``."""

    name: str
    fn: Callable[[Tensor, int], Any]

    def __call__(self, images: Tensor, seed: int) -> tuple[Tensor, Tensor]:
        """Runs the generator and checks its output: ``(B,C,H,W)`` float32 images and ``(B,1,H,W)`` {0,1} masks."""
        out = self.fn(images, seed)
        if isinstance(out, AnomalyBatch):
            out = (out.image, out.mask)
        if not isinstance(out, (tuple, list)) or len(out) < 2 or not all(isinstance(t, Tensor) for t in out[:2]):
            raise GeneratorOutputError(
                f"generator {self.name!r} must return (images, masks) tensors or an AnomalyBatch, got {type(out).__name__}"
            )
        image, mask = out[0], out[1]
        if tuple(image.shape) != tuple(images.shape):
            raise GeneratorOutputError(
                f"generator {self.name!r} returned images of shape {tuple(image.shape)} for input {tuple(images.shape)}"
            )
        b, _, h, w = images.shape
        if mask.dim() == 3:
            mask = mask.unsqueeze(1)
        if tuple(mask.shape) != (b, 1, h, w):
            raise GeneratorOutputError(
                f"generator {self.name!r} returned masks of shape {tuple(mask.shape)}, expected ({b}, 1, {h}, {w})"
            )
        image = image.to(torch.float32) / 255.0 if image.dtype == torch.uint8 else image.to(torch.float32)
        if not bool(torch.isfinite(image).all()) or float(image.min()) < 0 or float(image.max()) > 1:
            raise GeneratorOutputError(f"generator {self.name!r} returned images outside [0, 1] or with NaN")
        mask = mask.to(torch.float32)
        return image, (mask > (127.5 if float(mask.max()) > 1 else 0.5)).to(torch.float32)


def resolve_generator(spec: str | Callable[..., Any], source: str | None = None) -> Generator:
    """A :class:`Generator` from ``"name"`` / ``"name:preset"`` of ``anofast generate --method`` or a callable.

    anofast generators are built asking for an anomaly on every sample where they accept it (``p_anomaly=1``,
    and ``empty_mask="retry"`` for Perlin masks), since the protocol fixes the normal / synthetic ratio itself;
    samples that still come back with an empty mask train as normal. They are called with per-sample seeds.

    Raises:
        ValueError: an unknown name or preset.
    """
    if callable(spec) and not isinstance(spec, str):
        gen = spec
        name = getattr(spec, "__name__", type(spec).__name__)
        if hasattr(gen, "sample_params"):  # an anofast generator object: per-sample seeds
            return Generator(name, lambda x, s: gen(x, seed=_rng.sample_seeds(s, x.shape[0])))
        return Generator(name, gen)
    from anofast.cli import METHODS

    name, _, preset = str(spec).partition(":")
    if name not in METHODS:
        raise ValueError(f"unknown generator {name!r}: expected one of {sorted(METHODS)} (optionally name:preset)")
    method = METHODS[name]
    preset = preset or method.presets[0]
    if preset not in method.presets:
        raise ValueError(f"generator {name!r} has no preset {preset!r} (one of {method.presets})")
    for overrides in ({"p_anomaly": 1.0, "empty_mask": "retry"}, {"p_anomaly": 1.0}, {}):
        try:
            built = method.build(preset, source, overrides)
            break
        except TypeError:  # the generator does not take these options
            continue
    return Generator(f"{name}:{preset}", lambda x, s: built(x, seed=_rng.sample_seeds(s, x.shape[0])))


# ------------------------------------------------------------------------------------------------ features
@torch.inference_mode()
def extract_features(images: Tensor, batch_size: int = 32, progress: Callable[[int], None] | None = None) -> Tensor:
    """``(N, 152, H/8, W/8)`` float16 patch features of ``(N, C, H, W)`` images (uint8 or float in [0, 1])."""
    net = load_lite0(images.device)
    out = []
    for i in range(0, images.shape[0], batch_size):
        x = images[i : i + batch_size]
        x = x.to(torch.float32) / 255.0 if x.dtype == torch.uint8 else x.to(torch.float32)
        blocks = net.blocks(x, max(FEATURE_BLOCKS))
        grid = blocks[FEATURE_BLOCKS[0]].shape[-2:]
        f = torch.cat([F.interpolate(blocks[k], size=grid, mode="bilinear", align_corners=False)
                       if blocks[k].shape[-2:] != grid else blocks[k] for k in FEATURE_BLOCKS], 1)
        out.append(F.avg_pool2d(f, 3, 1, 1, count_include_pad=False).to(torch.float16))
        if progress is not None:
            progress(x.shape[0])
    return torch.cat(out)


def mask_targets(masks: Tensor, grid: tuple[int, int]) -> Tensor:
    """Masks area-averaged to the feature grid: soft targets in [0, 1]."""
    return F.adaptive_avg_pool2d(masks.to(torch.float32), grid)


# ------------------------------------------------------------------------------------------------ detector
class SegHead(nn.Module):
    """The SuperSimpleNet-like head: adaptor, then a 2-layer 1 x 1 conv segmentation head."""

    def __init__(self, channels: int, hidden: int = HIDDEN):
        super().__init__()
        self.adaptor = nn.Conv2d(channels, channels, 1)
        self.seg = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.BatchNorm2d(hidden), nn.LeakyReLU(0.2),
                                 nn.Conv2d(hidden, 1, 1))

    def forward(self, feats: Tensor) -> Tensor:
        return self.seg(self.adaptor(feats))


def _init_from_counter_rng(module: nn.Module, seed: int) -> None:
    """torch's default conv init (uniform in +-1/sqrt(fan_in)), drawn from the counter RNG."""
    key = _rand.purpose_seed(seed, _rand.HEAD_INIT)
    offset = 0
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            bound = 1.0 / math.sqrt(m.weight[0].numel())
            for p in (m.weight, m.bias):
                u = _rng.uniform(key + offset, Stream.EVAL, p.numel())[0]
                offset += 1
                with torch.no_grad():
                    p.copy_(((2 * u - 1) * bound).reshape(p.shape))


def focal_loss(logits: Tensor, target: Tensor, gamma: float = 2.0) -> Tensor:
    p = torch.sigmoid(logits)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    pt = p * target + (1 - p) * (1 - target)
    return ((1 - pt) ** gamma * bce).mean()


def train_head(normal: Tensor, synthetic: Tensor, targets: Tensor, *, seed: int, steps: int, batch_size: int,
               lr: float = 1e-3) -> SegHead:
    """Trains a :class:`SegHead`: each step half normal features (target 0), half synthetic (their masks)."""
    head = SegHead(normal.shape[1])
    _init_from_counter_rng(head, seed)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-5)
    half = max(1, batch_size // 2)
    zero = torch.zeros((half, 1, *normal.shape[-2:]))
    head.train()
    for step in range(steps):
        ni = _rand.permutation(seed, _rand.HEAD_ORDER, normal.shape[0], 2 * step)[:half]
        si = _rand.permutation(seed, _rand.HEAD_ORDER, synthetic.shape[0], 2 * step + 1)[:half]
        x = torch.cat([normal[ni], synthetic[si]]).to(torch.float32)
        y = torch.cat([zero[: ni.numel()], targets[si]])
        loss = focal_loss(head(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return head.eval()


def _maps_and_scores(logits: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    scores = F.avg_pool2d(logits, 3, 1, 1, count_include_pad=False).amax((1, 2, 3))
    maps = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)[:, 0]
    return maps, scores


@torch.inference_mode()
def predict(head: SegHead, feats: Tensor, size: tuple[int, int], batch_size: int = 64) -> tuple[Tensor, Tensor]:
    """``(N, H, W)`` anomaly maps and ``(N,)`` image scores of the head on cached features."""
    logits = torch.cat([head(feats[i : i + batch_size].to(torch.float32)) for i in range(0, feats.shape[0], batch_size)])
    return _maps_and_scores(logits, size)


@torch.inference_mode()
def knn_baseline(train: Tensor, test: Tensor, size: tuple[int, int], *, seed: int, bank_size: int,
                 chunk: int = 4096) -> tuple[Tensor, Tensor]:
    """PatchCore-like maps and scores: L2 distance of each test feature to its nearest normal bank feature."""
    c = train.shape[1]
    bank = train.permute(0, 2, 3, 1).reshape(-1, c)
    bank = bank[_rand.permutation(seed, _rand.BANK_SUBSAMPLE, bank.shape[0])[:bank_size]].to(torch.float32)
    q = test.permute(0, 2, 3, 1).reshape(-1, c)
    dist = torch.cat([torch.cdist(q[i : i + chunk].to(torch.float32), bank).amin(1) for i in range(0, q.shape[0], chunk)])
    logits = dist.reshape(test.shape[0], 1, *test.shape[-2:])
    return _maps_and_scores(logits, size)


# ------------------------------------------------------------------------------------------------ pools
@dataclass
class SyntheticPool:
    """One seed's synthetic training set and what the report needs from it."""

    features: Tensor  # (N, C, h, w) float16
    targets: Tensor  # (N, 1, h, w) float32 soft masks on the feature grid
    sources: Tensor  # (N,) index of the training image each sample was made from
    images: Tensor  # (N, C, H, W) uint8 output images
    masks: Tensor  # (N, 1, H, W) uint8 {0, 1}
    generator_seconds: float  # time spent inside the generator
    fidelity: dict[str, Tensor]  # per-sample mask fidelity on the float outputs (anofast.eval.fidelity)


def make_pool(gen: Generator, train_images: Tensor, *, seed: int, count: int, batch_size: int = 32,
              progress: Callable[[int], None] | None = None) -> SyntheticPool:
    """Runs the generator on ``count`` training images (drawn per seed) and embeds its outputs."""
    n = train_images.shape[0]
    reps = -(-count // n)
    sources = torch.cat([_rand.permutation(seed, _rand.SYNTH_SOURCES, n, r) for r in range(reps)])[:count]
    images, masks, feats, fids = [], [], [], []
    spent = 0.0
    for b, i in enumerate(range(0, count, batch_size)):
        x = train_images[sources[i : i + batch_size]].to(torch.float32) / 255.0
        batch_seed = int(_rng.sample_seeds(seed, 1, (_rand.SYNTH_SEEDS << 32) + b)[0])
        t0 = time.perf_counter()
        y, m = gen(x, batch_seed)
        spent += time.perf_counter() - t0
        images.append((y * 255.0 + 0.5).floor_().clamp_(0, 255).to(torch.uint8))
        masks.append(m.to(torch.uint8))
        fids.append(mask_fidelity(x, y, m))
        feats.append(extract_features(y))
        if progress is not None:
            progress(x.shape[0])
    feats_t = torch.cat(feats)
    masks_t = torch.cat(masks)
    fid = {k: torch.cat([f[k] for f in fids]) for k in fids[0]}
    return SyntheticPool(feats_t, mask_targets(masks_t, tuple(feats_t.shape[-2:])), sources, torch.cat(images),
                         masks_t, spent, fid)


def evaluate(maps: Tensor, scores: Tensor, labels: Tensor, masks: Tensor) -> dict[str, float]:
    """:func:`~anofast.eval.metrics.detection_metrics` of one detector on the evaluation split."""
    return detection_metrics(scores, labels, maps, masks[:, 0])
