"""Benchmark of perlin_mask (noise -> threshold -> combine -> mask + bbox) and perlin_noise.

Parameters are sampled outside the timed region (the apply cost only). Cases: DRAEM (256², one lattice),
GLASS (288², two lattices, 1/3 each of single / union / intersection), a large single-lattice map.
"""

from __future__ import annotations

import torch

from anofast import sample_seeds
from anofast.ops.perlin import perlin_mask, perlin_noise, sample_perlin_params

CASES = [
    {"batch": 32, "height": 256, "width": 256, "lattices": 1},
    {"batch": 32, "height": 288, "width": 288, "lattices": 2},
    {"batch": 8, "height": 512, "width": 512, "lattices": 1},
]


def _params(case: dict, device: torch.device):
    two = case["lattices"] == 2
    p = sample_perlin_params(
        sample_seeds(0, case["batch"]), lattices=case["lattices"], combine_probs=(1 / 3,) * 3 if two else (1, 0, 0)
    )
    return p.to(device), (case["height"], case["width"])


def make_fn(case: dict, backend: str, device: torch.device):
    params, size = _params(case, device)
    return lambda: perlin_mask(params, size, device=device, backend=backend)


def make_noise_fn(case: dict, backend: str, device: torch.device):
    params, size = _params(case, device)
    return lambda: perlin_noise(params, size, backend=backend)


if __name__ == "__main__":
    from common import main

    main("perlin_mask", CASES, make_fn)
    main("perlin_noise", CASES[:1], make_noise_fn)
