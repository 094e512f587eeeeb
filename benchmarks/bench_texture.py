"""Benchmark of augment_textures (the DRAEM texture-augmentation chain) and of procedural_texture.

Parameters, textures and boxes are built outside the timed region. Cases: the full image, a typical anomaly box
(~30 % of the image, e.g. a Perlin mask's bounding box, at a different place per sample), and the same box with
the source histograms cached (as a texture bank does). The rows are labelled with the op ``texture_stage``, the
kernel that the chain launches once per slot.
"""

from __future__ import annotations

import torch

from anofast import sample_seeds
from anofast.ops.augment import augment_textures, sample_texture_aug_params
from anofast.ops.procedural import procedural_texture
from anofast.ops.texture import texture_histogram
from anofast.testing import make_batch

CASES = [
    {"batch": 32, "height": 256, "width": 256, "recipe": "draem", "box": "full"},
    {"batch": 32, "height": 256, "width": 256, "recipe": "draem", "box": "30%"},
    {"batch": 32, "height": 256, "width": 256, "recipe": "draem", "box": "30%", "cached_hist": True},
    {"batch": 32, "height": 256, "width": 256, "recipe": "glass", "box": "30%", "cached_hist": True},
]
PROCEDURAL_CASES = [{"batch": 32, "height": 256, "width": 256}]


def _boxes(batch: int, height: int, width: int, fraction: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    bh, bw = round(height * fraction**0.5), round(width * fraction**0.5)
    y0 = torch.randint(0, height - bh + 1, (batch,), generator=g)
    x0 = torch.randint(0, width - bw + 1, (batch,), generator=g)
    return torch.stack([y0, x0, y0 + bh, x0 + bw], dim=1).to(torch.int32)


def make_fn(case: dict, backend: str, device: torch.device):
    b, h, w = case["batch"], case["height"], case["width"]
    textures = (make_batch(b, 3, h, w, seed=1) * 255).round().to(torch.uint8).to(device)
    params = sample_texture_aug_params(sample_seeds(0, b), augmentations=case["recipe"]).to(device)
    box = None if case["box"] == "full" else _boxes(b, h, w, 0.3).to(device)
    hist = texture_histogram(textures, backend=backend) if case.get("cached_hist") else None
    return lambda: augment_textures(textures, params, box, source_hist=hist, backend=backend)


def make_procedural_fn(case: dict, backend: str, device: torch.device):
    seeds = sample_seeds(0, case["batch"]).to(device)
    return lambda: procedural_texture(seeds, case["height"], case["width"], backend=backend)


if __name__ == "__main__":
    from common import main

    main("texture_stage", CASES, make_fn)
    main("procedural_texture", PROCEDURAL_CASES, make_procedural_fn)
