"""Point-cloud anomaly benchmark: ``PointCloudAnomaly`` on a 100k-point cloud (clouds/s = images_per_s).

The cloud is a noisy 100k-point sphere (float32). Each call draws a new seed (``gen(points, seed=k)``), so the
timing averages over region kinds, sizes and positions, as a training loop sees them. The generator runs no
backend op (its cost is open3d's KD-tree queries and numpy), so the reference / cpp rows of the matrix time the
same code; ``--backends cpp --threads 2`` gives one row per case.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from anofast.three_d.pointcloud import PointCloudAnomaly

CASES = [
    {"batch": 1, "points": 100_000, "preset": "default"},
    {"batch": 1, "points": 100_000, "preset": "surface"},
    {"batch": 4, "points": 100_000, "preset": "default"},
]


def noisy_sphere(n: int, seed: int = 0) -> np.ndarray:
    g = np.random.default_rng(seed)
    p = g.normal(size=(n, 3))
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    return (p * (1 + 0.002 * g.normal(size=(n, 1)))).astype(np.float32)


def make_fn(case: dict, backend: str, device: torch.device):
    clouds = [noisy_sphere(case["points"], seed=i) for i in range(case["batch"])]
    gen = PointCloudAnomaly.preset(case["preset"])
    seeds = itertools.count()
    if case["batch"] == 1:
        return lambda: gen(clouds[0], seed=next(seeds))
    return lambda: gen(clouds, seed=next(seeds))


if __name__ == "__main__":
    from common import main

    main("pointcloud_anomaly", CASES, make_fn)
