"""Reference of the ``rng_uniform`` and ``rng_normal`` ops: the counter RNG of anofast/_rng.py, batched."""

from __future__ import annotations

from torch import Tensor

from anofast import _rng


def rng_uniform_reference(seeds: Tensor, stream: int, n: int) -> Tensor:
    """``(B, n)`` float32: element ``i`` of row ``b`` is ``uniform(stream_key(sample_key(seeds[b]), stream), i)``."""
    return _rng.uniform(seeds, stream, n)


def rng_normal_reference(seeds: Tensor, stream: int, n: int) -> Tensor:
    """``(B, n)`` float32: element ``i`` of row ``b`` is ``to_normal(bits(stream_key(sample_key(seeds[b]), stream), i))``."""
    return _rng.normal(seeds, stream, n)
