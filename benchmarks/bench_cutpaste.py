"""Benchmark of CutPaste: the fused op alone (parameters drawn outside the timing) and the whole generator.

Batch 32 of 256x256 RGB; every sample pasted (p_anomaly=1), as the peers in compare_cutpaste.py do.
"""

from __future__ import annotations

import torch

import anofast.ops.cutpaste  # noqa: F401  (registers the op's backends)
from anofast.ops.cutpaste import cutpaste
from anofast.synth.cutpaste import CutPaste
from anofast.testing import make_batch

CASES = [
    {"batch": 32, "channels": 3, "height": 256, "width": 256, "variant": "normal"},
    {"batch": 32, "channels": 3, "height": 256, "width": 256, "variant": "scar"},
]


def _gen(case: dict, backend: str) -> CutPaste:
    return getattr(CutPaste, case["variant"])(p_anomaly=1.0, backend=backend)


def make_op_fn(case: dict, backend: str, device: torch.device):
    images = make_batch(case["batch"], case["channels"], case["height"], case["width"]).to(device)
    ints, floats = _gen(case, backend).sample_params(images, 0).packed()
    ints, floats = ints.to(device), floats.to(device)
    return lambda: cutpaste(images, ints, floats, backend=backend)


def make_generator_fn(case: dict, backend: str, device: torch.device):
    images = make_batch(case["batch"], case["channels"], case["height"], case["width"]).to(device)
    gen = _gen(case, backend)
    seeds = iter(range(10**9))
    return lambda: gen(images, seed=next(seeds))


if __name__ == "__main__":
    from common import main

    main("cutpaste", CASES, make_op_fn)
    main("cutpaste_generator", CASES, make_generator_fn)
