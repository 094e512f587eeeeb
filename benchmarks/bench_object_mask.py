"""Benchmark of NSA's object mask (``object_mask`` op, ``skip_background``): channel-mean threshold + 7x7 binary
median filter.

The case is NSA's hazelnut setting on MVTec-sized batches: 32 uint8 RGB images of 256x256, a bright object on a
dark noisy background, the pair ``(20, 20)`` and a 7x7 median. A second case gives float32 images in [0, 1] (the
op quantises them to grey levels first) and a third two pairs with a 5x5 median on 1 channel.
"""

from __future__ import annotations

import torch

from anofast.ops.object_mask import object_mask  # (also registers the op's backends for the matrix)

CASES = [
    {"batch": 32, "height": 256, "width": 256, "channels": 3, "dtype": "uint8", "background": (20, 20), "median": 7},
    {"batch": 32, "height": 256, "width": 256, "channels": 3, "dtype": "float32", "background": (20, 20), "median": 7},
    {"batch": 32, "height": 256, "width": 256, "channels": 1, "dtype": "uint8", "background": [(20, 20), (230, 20)],
     "median": 5},
]


def object_images(batch: int, channels: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """``(B, C, H, W)`` uint8: a bright ellipse (grey levels ~120-230) on a dark noisy background (~0-45), like
    MVTec's hazelnut; the object covers roughly 30 % of the image and its border is noisy."""
    g = torch.Generator().manual_seed(seed)
    yy = torch.linspace(-1, 1, height).view(1, 1, height, 1)
    xx = torch.linspace(-1, 1, width).view(1, 1, 1, width)
    cy, cx = (torch.rand(batch, 1, 1, 1, generator=g) * 0.6 - 0.3 for _ in range(2))
    ry, rx = (torch.rand(batch, 1, 1, 1, generator=g) * 0.3 + 0.4 for _ in range(2))
    inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
    noise = torch.rand(batch, channels, height, width, generator=g)
    return torch.where(inside, 120 + 110 * noise, 45 * noise).to(torch.uint8)


def make_fn(case: dict, backend: str, device: torch.device):
    images = object_images(case["batch"], case["channels"], case["height"], case["width"])
    if case["dtype"] == "float32":
        images = images.float() / 255.0
    images = images.to(device)
    background, median = case["background"], case["median"]
    return lambda: object_mask(images, background, median, backend=backend)


if __name__ == "__main__":
    from common import main

    main("object_mask", CASES, make_fn)
