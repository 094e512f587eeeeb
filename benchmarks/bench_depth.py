"""Benchmark of depth-aware RGB-D anomalies: the whole ``DepthAnomaly`` generator and its fused pass alone.

Scene: an organized 256x256 cloud of a sphere in front of a plane (metres, a 5 % invalid band), batch 32, every
sample anomalous (mixed kinds). ``depth_inject`` times the fused displacement + normals + shading + mask pass
on that scene with the height fields the generator drew.
"""

from __future__ import annotations

import torch

from anofast.ops.depth_inject import depth_inject
from anofast.ops.normals import normals
from anofast.testing import make_batch
from anofast.three_d.depth import DepthAnomaly

CASES = [{"batch": 32, "height": 256, "width": 256}]


def scene(batch: int, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(rgb, xyz)``: a sphere (radius 0.15 m at 0.6 m) in front of a plane at 0.8 m; f = 300 px."""
    v, u = torch.meshgrid(torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64),
                          indexing="ij")
    ray = torch.stack(((u - width / 2) / 300, (v - height / 2) / 300, torch.ones_like(u)))
    unit = ray / ray.norm(dim=0, keepdim=True)
    c = torch.tensor([0.0, 0.0, 0.6], dtype=torch.float64).view(3, 1, 1)
    b = (unit * c).sum(0)
    disc = b * b - 0.6**2 + 0.15**2
    sphere = unit * (b - disc.clamp(min=0).sqrt())
    xyz = torch.where(disc > 0, sphere, ray * 0.8).float()
    xyz[:, :, : width // 20] = 0.0
    return make_batch(batch, 3, height, width), xyz.unsqueeze(0).repeat(batch, 1, 1, 1).contiguous()


def make_generator_fn(case: dict, backend: str, device: torch.device):
    rgb, xyz = scene(case["batch"], case["height"], case["width"])
    rgb, xyz = rgb.to(device), xyz.to(device)
    gen = DepthAnomaly(backend=backend)
    return lambda: gen(rgb, xyz=xyz, seed=0)


def make_inject_fn(case: dict, backend: str, device: torch.device):
    rgb, xyz = scene(case["batch"], case["height"], case["width"])
    out = DepthAnomaly()(rgb, xyz=xyz, seed=0)
    n = normals(xyz)
    from anofast.reference import depth_inject as di

    table = torch.zeros(case["batch"], di.NPARAMS)
    table[:, di.LZ] = -1.0
    table[:, di.AMBIENT] = 0.4
    table[:, di.EPS_GEO] = 1e-6
    table[:, di.EPS_RGB3] = 3 * 0.5 / 255
    table[:, di.CAVITY] = 0.5
    table[:, di.INV_AMP] = 1e3
    args = [t.to(device) for t in (rgb, xyz, n, out.height, table)]
    return lambda: depth_inject(*args, backend=backend)


if __name__ == "__main__":
    from common import main

    main("depth_anomaly", CASES, make_generator_fn)
    main("depth_inject", CASES, make_inject_fn)
