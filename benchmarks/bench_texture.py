"""Benchmark of augment_textures (the texture-augmentation chain of the Perlin generators) and of procedural_texture.

Parameters, textures, masks and boxes are built outside the timed region. Cases: the full image; a typical anomaly
box (~30 % of the image, at a different place per sample); the same box with the source histograms cached (as a
texture bank does); and the generator's call: textures read from a pool of 64 by index (``src_index``), cached pool
histograms, the bounding box of a real Perlin placement mask (``perlin_mask`` of ``sample_perlin_params`` for
``sample_seeds(0, 32)``: ~70 % of the image on average) and the last pass restricted to the mask itself (``where``,
~5 % of the image), for each recipe. The rows are labelled with the op ``texture_stage``, the kernel that the chain
launches once per pass.
"""

from __future__ import annotations

import torch

from anofast import sample_seeds
from anofast.ops.augment import augment_textures, sample_texture_aug_params
from anofast.ops.perlin import perlin_mask, sample_perlin_params
from anofast.ops.procedural import procedural_texture
from anofast.ops.texture import texture_histogram
from anofast.testing import make_batch

CASES = [
    {"batch": 32, "height": 256, "width": 256, "recipe": "draem", "box": "full"},
    {"batch": 32, "height": 256, "width": 256, "recipe": "draem", "box": "30%"},
    {"batch": 32, "height": 256, "width": 256, "recipe": "draem", "box": "30%", "cached_hist": True},
    {"batch": 32, "height": 256, "width": 256, "recipe": "glass", "box": "30%", "cached_hist": True},
    *({"batch": 32, "height": 256, "width": 256, "recipe": r, "box": "perlin", "where": True, "pool": 64}
      for r in ("draem", "anomalib", "glass")),
]  # fmt: skip
PROCEDURAL_CASES = [{"batch": 32, "height": 256, "width": 256}]


def _boxes(batch: int, height: int, width: int, fraction: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    bh, bw = round(height * fraction**0.5), round(width * fraction**0.5)
    y0 = torch.randint(0, height - bh + 1, (batch,), generator=g)
    x0 = torch.randint(0, width - bw + 1, (batch,), generator=g)
    return torch.stack([y0, x0, y0 + bh, x0 + bw], dim=1).to(torch.int32)


def make_fn(case: dict, backend: str, device: torch.device):
    b, h, w = case["batch"], case["height"], case["width"]
    params = sample_texture_aug_params(sample_seeds(0, b), augmentations=case["recipe"]).to(device)
    if case.get("pool"):
        # The generator's call: a pool read by index, its cached histograms, a Perlin mask and its bounding box.
        pool = procedural_texture(sample_seeds(0x5EED, case["pool"]), h, w, backend=backend).to(device)
        hist = texture_histogram(pool, backend=backend)
        index = torch.randint(0, case["pool"], (b,), generator=torch.Generator().manual_seed(1)).to(device)
        mask, box = perlin_mask(sample_perlin_params(sample_seeds(0, b)), (h, w), device=device, backend=backend)
        return lambda: augment_textures(pool, params, box, source_hist=hist, where=mask, src_index=index,
                                        backend=backend)  # fmt: skip
    textures = (make_batch(b, 3, h, w, seed=1) * 255).round().to(torch.uint8).to(device)
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
