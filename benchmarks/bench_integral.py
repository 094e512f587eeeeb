"""Benchmark of the summed-area table of a mask (``integral_image`` op), NSA's rejection sampler.

The case is NSA's: 32 foreground masks of 256x256, uint8 {0, 1} (about half the pixels on, as rectangles and
random pixels would give the same work: every backend's cost is independent of the values). The output is
``(32, 257, 257)`` int32 (8.5 MB).
"""

from __future__ import annotations

import torch

from anofast.ops.integral import integral_image  # (also registers the op's backends for the matrix)

CASES = [
    {"batch": 32, "height": 256, "width": 256},
]


def make_fn(case: dict, backend: str, device: torch.device):
    b, h, w = case["batch"], case["height"], case["width"]
    g = torch.Generator().manual_seed(1)
    mask = (torch.rand(b, 1, h, w, generator=g) < 0.5).to(torch.uint8).to(device)
    return lambda: integral_image(mask, backend=backend)


if __name__ == "__main__":
    from common import main

    main("integral_image", CASES, make_fn)
