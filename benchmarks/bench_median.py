"""Benchmark of the masked disk median (``masked_median`` op), NSA's soft label.

The case is NSA's: 32 images of 256x256, radius 5 (81 values per pixel), the median needed at about 5 % of the
pixels, in rectangles (NSA's patches; 1 to 3 per image), and values that are non-zero only inside them (NSA's
``|change| * 255 * mask``). A second case has the same mask density spread as random pixels (every mask pixel
then costs a vector of its own in the C++ kernel) and a third a smaller radius (the run-time network).
"""

from __future__ import annotations

import torch

from anofast.ops.median import masked_median  # (also registers the op's backends for the matrix)

CASES = [
    {"batch": 32, "height": 256, "width": 256, "radius": 5, "mask": "boxes"},
    {"batch": 32, "height": 256, "width": 256, "radius": 5, "mask": "scattered"},
    {"batch": 32, "height": 256, "width": 256, "radius": 3, "mask": "boxes"},
]


def boxes_mask(batch: int, height: int, width: int, fraction: float = 0.05, seed: int = 0) -> torch.Tensor:
    """``(B, 1, H, W)`` float32: 1 to 3 rectangles per image covering about ``fraction`` of it (they may overlap)."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(batch, 1, height, width)
    for b in range(batch):
        count = int(torch.randint(1, 4, (1,), generator=g))
        for _ in range(count):
            area = fraction * height * width / count
            aspect = float(torch.empty(1).uniform_(0.5, 2.0, generator=g))
            h = max(1, min(height, round((area * aspect) ** 0.5)))
            w = max(1, min(width, round(area / h)))
            y = int(torch.randint(0, height - h + 1, (1,), generator=g))
            x = int(torch.randint(0, width - w + 1, (1,), generator=g))
            mask[b, 0, y : y + h, x : x + w] = 1.0
    return mask


def make_fn(case: dict, backend: str, device: torch.device):
    b, h, w = case["batch"], case["height"], case["width"]
    g = torch.Generator().manual_seed(1)
    if case["mask"] == "boxes":
        mask = boxes_mask(b, h, w)
    else:
        mask = (torch.rand(b, 1, h, w, generator=g) < 0.05).float()
    values = (torch.rand(b, 1, h, w, generator=g) * 80.0 * mask).to(device)  # grey-level changes, 0 outside
    mask = mask.to(device)
    radius = case["radius"]
    return lambda: masked_median(values, mask, radius, backend=backend)


if __name__ == "__main__":
    from common import main

    main("masked_median", CASES, make_fn)
