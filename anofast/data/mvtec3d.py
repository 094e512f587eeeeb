"""MVTec 3D-AD reader (METHODS.md 6.1): ``<root>/<category>/<split>/<defect>/{rgb,xyz,gt}/NNN.{png,tiff,png}``.

``xyz`` is an organized point cloud in metres with zeros for missing measurements; it is resized with
nearest-neighbour only (bilinear would mix valid points with zeros). Files are never modified.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from anofast.data.folder import check_size
from anofast.three_d.io import list_mvtec3d_samples, read_mvtec3d_sample

SPLITS = ("train", "validation", "test")


class MVTec3D(Dataset):
    """Map-style dataset of one MVTec 3D-AD category and split.

    Item ``i`` is a dict: ``image`` (3, H, W) float32 in [0, 1], ``xyz`` (3, H, W) float32 metres (0 = invalid),
    ``mask`` (1, H, W) float32 {0, 1} (zeros where the sample has no ``gt``), ``label`` (0 for ``good``, else
    1), ``defect`` (the folder name) and ``path`` (the rgb file).

    Args:
        root: the dataset root (holding one folder per category).
        category: e.g. ``"bagel"``.
        split: ``"train"``, ``"validation"`` or ``"test"``.
        size: optional ``(height, width)`` (or an int): rgb bilinear, xyz and mask nearest-neighbour.

    Raises:
        FileNotFoundError: the split folder is missing or holds no sample.
    """

    def __init__(self, root: str | os.PathLike, category: str, split: str = "train",
                 size: tuple[int, int] | int | None = None):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        folder = Path(root) / category / split
        if not folder.is_dir():
            raise FileNotFoundError(f"MVTec 3D-AD split folder not found: {folder}")
        self.size = None if size is None else check_size(size)
        self.samples: list[tuple[Path, str]] = []
        for defect in sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")):
            self.samples += [(defect, stem) for stem in list_mvtec3d_samples(defect)]
        if not self.samples:
            raise FileNotFoundError(f"no MVTec 3D-AD samples in {folder}")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict[str, Any]:
        folder, stem = self.samples[i]
        s = read_mvtec3d_sample(folder, stem)
        image = s.rgb.to(torch.float32) / 255.0
        xyz = s.xyz
        mask = s.gt if s.gt is not None else torch.zeros(1, *xyz.shape[1:])
        if self.size is not None and tuple(xyz.shape[1:]) != self.size:
            image = F.interpolate(image[None], self.size, mode="bilinear", antialias=True, align_corners=False)[0]
            image = image.clamp(0, 1)
            xyz = F.interpolate(xyz[None], self.size, mode="nearest")[0]
            mask = F.interpolate(mask[None], self.size, mode="nearest")[0]
        return {"image": image, "xyz": xyz, "mask": mask, "label": int(folder.name != "good"),
                "defect": folder.name, "path": str(folder / "rgb" / f"{stem}.png")}
