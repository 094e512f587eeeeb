"""Benchmark of ``anofast.foreground.estimate`` (plain torch, no kernels of its own) on a (32, 3, 256, 256) batch
of object-on-background images (float, and uint8 as data loaders and ``compare_nsa.py`` pass them), next to one
``PerlinAnomaly.draem()`` call on the same batch for scale.

The estimate runs once per image (cache it with the data set); the generator runs on every sample of every epoch.
The ``backend`` column only matters for the generator case (the estimate is torch on the tensor's device).
"""

from __future__ import annotations

import torch

import anofast
from anofast import foreground
from anofast.testing import make_batch

CASES = [
    {"batch": 32, "height": 256, "width": 256, "what": "estimate-auto"},
    {"batch": 32, "height": 256, "width": 256, "what": "estimate-border"},
    {"batch": 32, "height": 256, "width": 256, "what": "estimate-auto-uint8"},
    {"batch": 32, "height": 256, "width": 256, "what": "perlin-draem"},
]


def objects(b: int, h: int, w: int) -> torch.Tensor:
    """Textured ellipses of varying size and position on a dark, slightly noisy background."""
    g = torch.Generator().manual_seed(0)
    yy = torch.arange(h).view(1, h, 1).float()
    xx = torch.arange(w).view(1, 1, w).float()
    cy, cx = (0.3 + 0.4 * torch.rand(2, b, 1, 1, generator=g)) * torch.tensor([h, w]).view(2, 1, 1, 1)
    ry, rx = (0.15 + 0.2 * torch.rand(2, b, 1, 1, generator=g)) * torch.tensor([h, w]).view(2, 1, 1, 1)
    inside = (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1).unsqueeze(1)
    bg = 0.08 + 0.02 * torch.rand(b, 3, h, w, generator=g)
    return torch.where(inside, make_batch(b, 3, h, w), bg).contiguous()


def make_fn(case: dict, backend: str, device: torch.device):
    images = objects(case["batch"], case["height"], case["width"]).to(device)
    if case["what"] == "perlin-draem":
        gen = anofast.PerlinAnomaly.draem(p_anomaly=1.0, backend=backend)
        return lambda: gen(images, seed=0)
    if case["what"].endswith("uint8"):
        images = (images * 255).round().to(torch.uint8)
    method = case["what"].split("-")[1]
    return lambda: foreground.estimate(images, method)


if __name__ == "__main__":
    from common import main

    main("foreground_estimate", CASES, make_fn)
