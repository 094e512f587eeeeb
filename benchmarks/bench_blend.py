"""Benchmark of the fused blend (anomalous image + exact mask + counts in one pass).

Placement masks are DRAEM-like Perlin masks (about 5 % of the pixels, half of the samples without an
anomaly, as with DRAEM's no-anomaly coin); ``bbox`` cases pass perlin_mask's boxes so rows outside are copied.
"""

from __future__ import annotations

import torch

from anofast import sample_seeds
from anofast.ops.blend import blend
from anofast.ops.perlin import perlin_mask, sample_perlin_params
from anofast.testing import make_batch

CASES = [
    {"batch": 32, "channels": 3, "height": 256, "width": 256, "bbox": False},
    {"batch": 32, "channels": 3, "height": 256, "width": 256, "bbox": True},
    {"batch": 32, "channels": 1, "height": 256, "width": 256, "bbox": True},
]


def make_fn(case: dict, backend: str, device: torch.device):
    b, c, h, w = case["batch"], case["channels"], case["height"], case["width"]
    g = torch.Generator().manual_seed(0)
    images = make_batch(b, c, h, w).to(device)
    texture = torch.randint(0, 256, (b, c, h, w), generator=g, dtype=torch.uint8).to(device)
    apply = torch.arange(b) % 2 == 0
    placement, box = perlin_mask(sample_perlin_params(sample_seeds(0, b)), (h, w), apply=apply)
    placement, box = placement.to(device), box.to(device)
    opacity = torch.rand(b, generator=g).to(device)
    bbox = box if case["bbox"] else None
    return lambda: blend(images, texture, placement, opacity, bbox=bbox, backend=backend)


if __name__ == "__main__":
    from common import main

    main("blend", CASES, make_fn)
