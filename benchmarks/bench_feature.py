"""Benchmark of the fused feature-level noise (``feature_noise`` op) through the FeatureNoise presets.

Cases are smaller than SuperSimpleNet's (32, 1536, 64, 64) so that the reference backend stays within memory;
``compare_supersimplenet.py`` times the full size against anomalib. Parameters (Perlin masks, seeds) are drawn
inside the timed region, as a training loop would.
"""

from __future__ import annotations

import torch

import anofast.ops.feature_noise  # noqa: F401  (registers the op's backends for the matrix)
from anofast.synth.feature import FeatureNoise

CASES = [
    {"batch": 8, "channels": 256, "height": 64, "width": 64, "preset": "supersimplenet", "inplace": False},
    {"batch": 8, "channels": 256, "height": 64, "width": 64, "preset": "simplenet", "inplace": False},
    {"batch": 8, "channels": 256, "height": 64, "width": 64, "preset": "simplenet", "inplace": True},
]


def make_fn(case: dict, backend: str, device: torch.device):
    g = torch.Generator().manual_seed(0)
    shape = (case["batch"], case["channels"], case["height"], case["width"])
    features = torch.randn(shape, generator=g).to(device)
    gen = getattr(FeatureNoise, case["preset"])(backend=backend)
    seeds = iter(range(10**9))
    if case["inplace"]:  # noise accumulates in the buffer across calls: the work per call is the same
        return lambda: gen(features, seed=next(seeds), inplace=True)
    return lambda: gen(features, seed=next(seeds))


if __name__ == "__main__":
    from common import main

    main("feature_noise", CASES, make_fn)
