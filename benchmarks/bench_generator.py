"""End-to-end generator benchmark: ``PerlinAnomaly`` presets on a (32, 3, 256, 256) float32 batch.

Includes drawing the parameters (``gen(images, seed=...)``), as a user calls it. Textures: 20 synthetic 256²
textures (the peer comparison, compare_anomalib.py, uses 20 real DTD images), or the built-in procedural bank.
The backend is forced for every op of the generator (``backend=``). ``loader`` cases run the generator through a
DataLoader over ``SyntheticAnomalyDataset`` (per-item calls in 2 worker processes, 1 thread each, as in training).
"""

from __future__ import annotations

import torch

import anofast
from anofast.data import SyntheticAnomalyDataset
from anofast.testing import make_batch

CASES = [
    {"batch": 32, "height": 256, "width": 256, "preset": "draem", "source": "textures"},
    {"batch": 32, "height": 256, "width": 256, "preset": "draem", "source": "procedural"},
    {"batch": 32, "height": 256, "width": 256, "preset": "anomalib", "source": "textures"},
    {"batch": 32, "height": 256, "width": 256, "preset": "glass", "source": "textures"},
    {"batch": 32, "height": 256, "width": 256, "preset": "draem", "source": "textures", "loader": 2},
]


class _Images(torch.utils.data.Dataset):
    """An endless stream over a few images, so one loader iterator serves every timed call."""

    def __init__(self, images: torch.Tensor):
        self.images = images

    def __len__(self) -> int:
        return 10**8

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i % len(self.images)]


def make_fn(case: dict, backend: str, device: torch.device):
    b, h, w = case["batch"], case["height"], case["width"]
    textures = None
    if case["source"] == "textures":
        textures = (make_batch(20, 3, h, w, seed=1) * 255).round().to(torch.uint8)
    gen = getattr(anofast.PerlinAnomaly, case["preset"])(source=textures, p_anomaly=1.0, backend=backend)
    images = make_batch(b, 3, h, w).to(device)
    if case.get("loader"):
        ds = SyntheticAnomalyDataset(_Images(images), gen, seed=0)
        batches = iter(torch.utils.data.DataLoader(ds, batch_size=b, num_workers=case["loader"]))
        return lambda: next(batches)
    seed = iter(range(10**9))
    return lambda: gen(images, seed=next(seed))


if __name__ == "__main__":
    from common import main

    main("perlin_anomaly", CASES, make_fn)
