"""Eval's draws from the counter RNG (``Stream.EVAL``): permutations and choices keyed by (seed, purpose)."""

from __future__ import annotations

import torch
from torch import Tensor

from anofast._rng import Stream, sample_seeds, uniform_bits

# purposes: the ``offset`` of the per-purpose seed, so that adding one never shifts another
KID_SUBSETS, SYNTH_SOURCES, SYNTH_SEEDS, BANK_SUBSAMPLE, HEAD_INIT, HEAD_ORDER = range(6)


def purpose_seed(seed: int, purpose: int) -> Tensor:
    """The ``(1,)`` int64 per-purpose seed under the run's ``seed``."""
    return sample_seeds(seed, 1, purpose)


def permutation(seed: int, purpose: int, n: int, counter: int = 0) -> Tensor:
    """A permutation of ``0 .. n-1``: argsort of ``n`` random 32-bit keys (ties, probability ~n^2/2^33, by index)."""
    bits = uniform_bits(purpose_seed(seed, purpose) + counter, Stream.EVAL, n)[0]
    return torch.argsort(bits, stable=True)
