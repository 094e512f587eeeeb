"""The counter-based RNG, specified in torch (the reference). ``csrc/common/hash.h`` and ``kernels/_rng.py``
implement the same functions bit for bit, and tests check that they agree.

Every random number anofast draws is ``bits(stream_key(sample_key(seed_b), stream), counter)``:
a pure function of the sample's 64-bit seed, a stream id naming the quantity (:class:`Stream`) and an
element counter. Nothing depends on batch size, order, thread count, device or worker.

Torch has no uint32 arithmetic, so values are held in int64 in [0, 2**32); each 32x32-bit product is
split into 16-bit halves so that it never overflows int64. The integer functions use only ``& ^ >> << * +``, so
they take int64 torch tensors, int64 numpy arrays or Python ints alike (host-side seed derivation uses the
latter two: a few µs instead of a few hundred for torch's per-op overhead on tiny tensors).
"""

from __future__ import annotations

import enum

import numpy as np
import torch
from torch import Tensor

MASK32 = 0xFFFFFFFF
GOLDEN = 0x9E3779B9
INV_2_24 = 5.9604644775390625e-08  # 2**-24


class Stream(enum.IntEnum):
    """Stream ids: one per random quantity, so adding a draw never shifts another."""

    SEEDS = 0  # per-sample seeds derived from an int seed
    PERLIN_SCALAR = 1  # resolution exponents, rotation, threshold, combine code
    PERLIN_GRADS = 2  # lattice gradient angles
    ANOMALY_SCALAR = 3  # coin, opacity, texture index, rescale flags ...
    AUG_CHOICE = 4  # which texture augmentations, in which order
    AUG_PARAMS = 5  # their magnitudes
    PROCEDURAL = 6  # procedural texture parameters
    PROCEDURAL_PIXELS = 7  # procedural texture per-pixel grain
    RETRY = 8  # re-draws for empty masks (counter = attempt)
    NORMAL_TEST = 9  # reserved: rng_normal tests and benchmarks
    CUTPASTE = 10  # CutPaste: variant, box, aspect, jitter, rotation, paste location
    NSA = 11  # NSA: patch count, source image, sizes, shifts, intensity label
    FEATURE_SCALAR = 12  # FeatureNoise: per-sample coin, Perlin parameters at feature resolution
    FEATURE_NOISE = 13  # FeatureNoise: per-element Gaussian noise
    COMPOSE = 14  # OneOf / p_normal: which generator, normal or not
    DEPTH = 15  # DepthAnomaly: kind, footprint, height, colour change
    DEPTH_PIXELS = 16  # DepthAnomaly: per-pixel draws (e.g. roughness)
    POINTCLOUD = 17  # PointCloudAnomaly: seeds, radii, heights, debris
    DIFFUSION = 18  # diffusion samplers: per-step noise (counter = step * numel + element)
    DIFFUSION_SCALAR = 19  # diffusion: per-sample scalars (e.g. class, strength jitter)
    EVAL = 20  # eval: data order, detector initialisation draws
    TEST = 31  # reserved for tests


def _mul32(x: Tensor, c: int) -> Tensor:
    lo = x & 0xFFFF
    hi = x >> 16
    return ((((hi * c) & 0xFFFF) << 16) + lo * c) & MASK32


def hash32(x: Tensor) -> Tensor:
    """lowbias32 on int64 tensors holding uint32 values."""
    x = x & MASK32
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    x = x ^ (x >> 16)
    return x


def sample_key(seeds: Tensor) -> Tensor:
    """uint32 key (as int64) of each 64-bit seed (int64 tensor, int64 numpy array or Python int in int64 range)."""
    if isinstance(seeds, Tensor):
        seeds = seeds.to(torch.int64)
    lo = seeds & MASK32
    hi = (seeds >> 32) & MASK32  # arithmetic shift, then masked: the two's-complement high word
    return hash32(hash32(lo) ^ hi)


def stream_salt(stream: int) -> int:
    """The uint32 constant that ``stream_key`` mixes in for ``stream``."""
    return ((int(stream) + 1) * GOLDEN) & MASK32


def stream_key(key: Tensor, stream: int) -> Tensor:
    """Key of one (sample, stream) pair."""
    return hash32(key ^ stream_salt(stream))


def bits(skey: Tensor, counter: Tensor) -> Tensor:
    """32 random bits (int64 in [0, 2**32)) for element ``counter`` of the stream ``skey``."""
    return hash32(hash32((counter & MASK32) ^ skey) + skey)


def uniform_bits(seeds: Tensor, stream: int, n: int) -> Tensor:
    """``(B, n)`` int64 random bits, element ``i`` of row ``b`` = ``bits(stream_key(sample_key(seeds[b])), i)``."""
    skey = stream_key(sample_key(seeds), stream).view(-1, 1)
    counter = torch.arange(n, dtype=torch.int64, device=seeds.device).view(1, -1)
    return bits(skey, counter)


def to_unit_float(b: Tensor) -> Tensor:
    """Top 24 bits -> float32 in [0, 1), exactly."""
    return (b >> 8).to(torch.float32) * INV_2_24


def uniform(seeds: Tensor, stream: int, n: int) -> Tensor:
    """``(B, n)`` float32 uniforms in [0, 1): the reference of the ``rng_uniform`` op."""
    return to_unit_float(uniform_bits(seeds, stream, n))


NORMAL_TABLE_BITS = 14  # the normal sampler's table has 2**14 intervals; the low 18 bits interpolate
NORMAL_FRAC_SCALE = 3.814697265625e-06  # 2**-18
_normal_tables: dict[torch.device, Tensor] = {}


def normal_table(device: torch.device | str | None = None) -> Tensor:
    """The ``(2**14 + 1,)`` float32 knots of the normal sampler's quantile function (cached per device).

    Knot ``k`` is ``Phi^-1((k + 1/2) / (2**14 + 1))`` made exactly antisymmetric, then scaled so that the
    piecewise-linear distribution :func:`to_normal` draws from has variance exactly 1 (in float64). It is a
    standard normal truncated at about +-3.9 sigma (the mass beyond, 6e-5, is folded into the last
    intervals). The table is computed once here and handed to every backend, so they agree by construction.
    """
    device = torch.device("cpu" if device is None else device)
    table = _normal_tables.get(device)
    if table is None:
        n = 1 << NORMAL_TABLE_BITS
        q = torch.special.ndtri((torch.arange(n + 1, dtype=torch.float64) + 0.5) / (n + 1))
        q = 0.5 * (q - q.flip(0))
        lo, hi = q[:-1], q[1:]
        q = q / ((lo * lo + lo * hi + hi * hi) / 3).mean().sqrt()  # each interval is uniform in its fraction
        table = _normal_tables[device] = q.to(torch.float32).to(device)
    return table


def to_normal(b: Tensor, table: Tensor) -> Tensor:
    """32 random bits (int64 in [0, 2**32)) -> float32 standard normal: linear interpolation in ``table``.

    The top 14 bits pick the interval, the low 18 bits the position in it. Only exactly rounded float32
    ``-``, ``*``, ``+`` in this order, so C++ (no FMA) and Triton (no fp fusion) give the same bits.
    """
    i = b >> (32 - NORMAL_TABLE_BITS)
    f = (b & ((1 << (32 - NORMAL_TABLE_BITS)) - 1)).to(torch.float32) * NORMAL_FRAC_SCALE
    lo = table[i]
    return lo + (table[i + 1] - lo) * f


def normal(seeds: Tensor, stream: int, n: int) -> Tensor:
    """``(B, n)`` float32 standard normals: the reference of the ``rng_normal`` op."""
    return to_normal(uniform_bits(seeds, stream, n), normal_table(seeds.device))


def sample_seeds(seed: int, count: int, offset: int = 0) -> Tensor:
    """Per-sample 63-bit seeds of samples ``offset .. offset+count-1`` under the int ``seed``.

    Sample ``i`` of a batch generated with ``seed=s`` is keyed by ``sample_seeds(s, 1, i)``, so passing
    that tensor as the seed of a batch of one reproduces it exactly.
    """
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if count < 0 or offset < 0:
        raise ValueError(f"count and offset must be >= 0, got count={count}, offset={offset}")
    seed = ((seed + 2**63) % 2**64) - 2**63  # any Python int, read as a two's-complement int64
    skey = stream_key(sample_key(seed), Stream.SEEDS)  # Python ints
    idx = np.arange(offset, offset + count, dtype=np.int64)
    hi = bits(skey, idx * 2)
    lo = bits(skey, idx * 2 + 1)
    return torch.from_numpy(((hi & 0x7FFFFFFF) << 32) | lo)


def resolve_seeds(seed: int | Tensor | None, batch: int, *, name: str = "seed") -> Tensor:
    """``(B,)`` int64 per-sample seeds from an int, a ``(B,)`` tensor, or None (torch's global RNG)."""
    if seed is None:
        seed = int(torch.randint(0, 2**62, (1,)).item())
    if isinstance(seed, Tensor):
        if seed.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"{name}: a per-sample seed tensor must be int64, got {seed.dtype}")
        if seed.dim() != 1 or seed.shape[0] != batch:
            raise ValueError(f"{name}: a per-sample seed tensor must have shape ({batch},), got {tuple(seed.shape)}")
        return seed.to(device="cpu", dtype=torch.int64)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"{name} must be an int, a (B,) int64 tensor or None, got {type(seed).__name__}")
    return sample_seeds(seed, batch)
