"""End-to-end NSA benchmark: ``NaturalSynthetic`` presets on a (32, 3, 256, 256) float32 (or uint8) batch.

Includes drawing the parameters (``gen(images, seed=...)``), as a user calls it; patches come from the other images
of the batch. The backend is forced for every op of the generator (``backend=``). The ``poisson_blend`` rows time
the op alone (one round of 32 patches of NSA's typical sizes, normal clone).
"""

from __future__ import annotations

import torch

import anofast
from anofast.ops.poisson import poisson_blend
from anofast.testing import make_batch

CASES = [
    {"batch": 32, "height": 256, "width": 256, "preset": "nsa"},
    {"batch": 32, "height": 256, "width": 256, "preset": "nsa_mixed"},
    # uint8 input (read as such by the kernels), and NSA's hazelnut settings with its object masks in every call
    {"batch": 32, "height": 256, "width": 256, "preset": "nsa", "dtype": "uint8"},
    {"batch": 32, "height": 256, "width": 256, "preset": "mvtec_hazelnut", "dtype": "uint8"},
]
OP_CASES = [{"batch": 32, "height": 256, "width": 256, "patch": "nsa"}]


def make_fn(case: dict, backend: str, device: torch.device):
    b, h, w = case["batch"], case["height"], case["width"]
    preset = case["preset"]
    if preset.startswith("mvtec_"):
        gen = anofast.NaturalSynthetic.nsa_mvtec(preset[len("mvtec_"):], backend=backend)
    else:
        gen = getattr(anofast.NaturalSynthetic, preset)(backend=backend)
    images = make_batch(b, 3, h, w).to(device)
    if case.get("dtype") == "uint8":
        images = (images * 255).round().to(torch.uint8)
    seed = iter(range(10**9))
    return lambda: gen(images, seed=next(seed))


def make_op_fn(case: dict, backend: str, device: torch.device):
    b, h, w = case["batch"], case["height"], case["width"]
    images = make_batch(b, 3, h, w).to(device)
    p = anofast.NaturalSynthetic.nsa().sample_params(b, 0, size=(h, w))
    args = (images, images, p.source_index.to(device), p.src_box[:, 0].contiguous().to(device),
            p.box[:, 0].contiguous().to(device), p.mode.to(device))
    return lambda: poisson_blend(*args, tol=1 / 255, backend=backend)


if __name__ == "__main__":
    from common import main

    main("nsa", CASES, make_fn)
    main("poisson_blend", OP_CASES, make_op_fn)
