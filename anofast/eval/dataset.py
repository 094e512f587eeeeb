"""The benchmark's view of an MVTec-layout folder: :class:`anofast.data.MVTecAD` plus the few-shot split and
bulk loading into memory.

Layout (MVTec AD; magnetic_tile in ../shared/data is staged in it, so it needs no adapter): ``train/good``,
``test/good`` (optional), ``test/<defect>``, ``ground_truth/<defect>/<stem>_mask.png``. Images of any size and
mode are read as RGB (grey repeated) and resized to one size by the reader's rule (images bilinear, masks nearest
neighbour). An all-zero mask is allowed: the image counts for the image metrics and adds no pixel region.

Few-shot split (METHODS.md 8.4): per defect type, images sorted by name with digit runs compared as numbers;
the first third (``len // 3``) is reserved for few-shot generators and is not evaluated; the rest, with every
good test image, is the evaluation set.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from anofast.data.folder import check_size
from anofast.data.mvtec import AnomalyImageDataset, MVTecAD, Sample


class LayoutError(ValueError):
    """The folder is not in MVTec layout, or its masks do not match its images."""


def natural_key(path: Path) -> list[object]:
    """Sort key: digit runs compare as numbers (``img_2`` before ``img_10``)."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


@dataclass
class MVTecLayout:
    """The files of one MVTec-layout category, sorted naturally within each defect type."""

    root: Path
    train: list[Sample]
    test: list[Sample]
    defects: list[str]

    def few_shot(self) -> list[Sample]:
        """Anomalous test images reserved for few-shot generators: the first third of each defect type."""
        out = []
        for d in self.defects:
            of = [s for s in self.test if s.defect == d]
            out += of[: len(of) // 3]
        return out

    def evaluation(self) -> list[Sample]:
        """Good test images and the last two thirds of each defect type."""
        few = {s.image for s in self.few_shot()}
        return [s for s in self.test if s.image not in few]


def discover(root: str | os.PathLike) -> MVTecLayout:
    """Lists and checks an MVTec-layout folder (file names only; sizes are checked when loading).

    Raises:
        LayoutError: a required folder is missing or empty, there is no defect type, or a defect image has no mask.
    """
    root = Path(root)
    if not root.is_dir():
        raise LayoutError(f"data folder {root} does not exist or is not a folder")
    expected = "expected train/good/, test/<defect>/ and ground_truth/<defect>/<stem>_mask.png (MVTec AD layout)"
    if not (root / "train" / "good").is_dir() or not (root / "test").is_dir():
        raise LayoutError(f"{root} is not in MVTec layout: {expected}")
    try:
        train = MVTecAD(root, split="train").samples
        test = MVTecAD(root, split="test").samples
    except (FileNotFoundError, ValueError) as e:
        raise LayoutError(f"{e}; {expected}") from None
    defects = sorted({s.defect for s in test} - {"good"})
    if not defects:
        raise LayoutError(f"{root / 'test'} has no defect folder besides good/; {expected}")
    order = {d: i for i, d in enumerate(["good", *defects])}
    test = sorted(test, key=lambda s: (order[s.defect], natural_key(s.image)))
    return MVTecLayout(root, sorted(train, key=lambda s: natural_key(s.image)), test, defects)


def load(samples: list[Sample], size: tuple[int, int] | int) -> tuple[Tensor, Tensor]:
    """``(N, 3, H, W)`` uint8 images and ``(N, 1, H, W)`` uint8 {0, 1} masks, decoded in threads.

    Raises:
        LayoutError: a mask's size differs from its image's.
    """
    ds = AnomalyImageDataset(samples, check_size(size))

    def one(i: int) -> tuple[Tensor, Tensor]:
        try:
            item = ds[i]
        except ValueError as e:
            if "mask" not in str(e):
                raise
            raise LayoutError(str(e)) from None
        return (item["image"] * 255.0 + 0.5).floor_().to(torch.uint8), item["mask"].to(torch.uint8)

    with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
        pairs = list(pool.map(one, range(len(samples))))
    return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
