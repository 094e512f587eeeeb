"""Readers of the usual 2D anomaly-detection layouts: MVTec AD, VisA (its split csv) and a plain folder with
optional masks. (MVTec 3D-AD, with its xyz tiffs, is :class:`anofast.data.mvtec3d.MVTec3D`.)

Every reader is a map-style dataset whose item is a dict, the same as ``MVTec3D``'s:

- ``image``: ``(3, H, W)`` float32 in [0, 1] (grey images are repeated to 3 channels);
- ``mask``: ``(1, H, W)`` float32 in {0, 1}; all zeros for normal images;
- ``label``: 0 (normal) or 1 (anomalous); ``defect``: the defect type (``"good"`` for normal images);
- ``path``: the image file.

Size rule: with ``size=None`` every image keeps its own size (batch them only if they agree); with
``size=(H, W)`` (or an int) images are resized with PIL's bilinear filter (antialiased when shrinking) and
masks with nearest neighbour, so masks stay in {0, 1}. A mask must have the size of its image before
resizing, else the item raises ``ValueError``. Masks are binarised at half their range: ``> 127`` for 8-bit
masks (MVTec's 0/255, anti-aliased masks), ``> 0`` for masks stored as 0/1 (some VisA exports).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from anofast._validate import unit_float
from anofast.data.folder import IMAGE_EXTENSIONS, ImageReadError, check_size, list_images, read_pil

SPLITS = ("train", "test")
_MASK_SUFFIXES = ("_mask", "")


@dataclass(frozen=True)
class Sample:
    """One entry of a reader: an image file, its mask file (None = all-zero mask), label (-1 = decided when read:
    1 iff the mask is non-empty) and defect type."""

    image: Path
    mask: Path | None
    label: int
    defect: str


def read_mask(path: str | os.PathLike, size: tuple[int, int] | int | None = None,
              expect: tuple[int, int] | None = None) -> Tensor:
    """Reads a mask image as ``(1, H, W)`` float32 {0, 1} (see the module docstring for the threshold).

    Args:
        path: the mask file (any PIL-readable image; colour masks count any channel).
        size: optional ``(height, width)`` to resize to (nearest neighbour).
        expect: the ``(height, width)`` the file must have (its image's size); ``ValueError`` otherwise.

    Raises:
        FileNotFoundError: the file does not exist.
        ImageReadError: it cannot be decoded.
        ValueError: its size differs from ``expect``.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"mask not found: {p}")
    try:
        with Image.open(p) as im:
            im.load()
            a = np.asarray(im)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ImageReadError(f"cannot read mask {p}: {e}") from None
    if a.ndim == 3:
        a = a.max(axis=2)
    if expect is not None and tuple(a.shape) != tuple(expect):
        raise ValueError(f"mask {p} is {a.shape[0]}x{a.shape[1]} but its image is {expect[0]}x{expect[1]} "
                         "(height x width); masks must match their images")
    m = a > (127 if a.max() > 1 else 0)
    if size is not None:
        h, w = check_size(size)
        if m.shape != (h, w):
            m = np.asarray(Image.fromarray(m).resize((w, h), Image.Resampling.NEAREST))
    return torch.from_numpy(m.astype(np.float32)).unsqueeze(0)


class AnomalyImageDataset(Dataset):
    """Map-style dataset over a list of :class:`Sample` (the base of the readers in this module).

    Args:
        samples: the entries.
        size: optional ``(height, width)`` (or an int): images bilinear, masks nearest neighbour.
    """

    def __init__(self, samples: Sequence[Sample], size: tuple[int, int] | int | None = None):
        self.samples = list(samples)
        self.size = None if size is None else check_size(size)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        s = self.samples[index]
        pil = read_pil(s.image)
        native = (pil.height, pil.width)
        if self.size is not None and native != self.size:
            pil = pil.resize((self.size[1], self.size[0]), Image.Resampling.BILINEAR)
        image = torch.from_numpy(np.asarray(pil, dtype=np.uint8).transpose(2, 0, 1).copy())
        image = unit_float(image)
        if s.mask is None:
            mask = torch.zeros((1, *image.shape[1:]), dtype=torch.float32)
        else:
            mask = read_mask(s.mask, self.size, expect=native)
        label = s.label if s.label >= 0 else int(bool(mask.amax() > 0))
        return {"image": image, "mask": mask, "label": label, "defect": s.defect, "path": str(s.image)}

    @property
    def labels(self) -> list[int]:
        """Label of every item, without reading any file (-1 where the mask decides, see :class:`Sample`)."""
        return [s.label for s in self.samples]

    def __repr__(self) -> str:
        n_anom = sum(v != 0 for v in self.labels)
        return f"{type(self).__name__}({len(self)} images, {n_anom} anomalous, size={self.size})"


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return split


def _find_mask(folder: Path, stem: str) -> Path | None:
    for suffix in _MASK_SUFFIXES:
        for ext in (".png", *sorted(IMAGE_EXTENSIONS - {".png"})):
            p = folder / f"{stem}{suffix}{ext}"
            if p.is_file():
                return p
    return None


class MVTecAD(AnomalyImageDataset):
    """One category of MVTec AD (and data sets in its layout: MTD magnetic tile, BTAD, MPDD, ...).

    Layout: ``<category>/train/good/*.png``, ``<category>/test/<defect>/*.png`` and
    ``<category>/ground_truth/<defect>/<stem>_mask.png`` (``test/good`` has no masks).

    Args:
        root: the category folder, or the data-set root when ``category`` is given.
        category: optional category name under ``root`` (e.g. ``"hazelnut"``).
        split: ``"train"`` or ``"test"``.
        size: optional ``(height, width)`` (or an int); see the module docstring for the rule.
        defects: optional subset of the test defect types to read.

    Raises:
        FileNotFoundError: the folder is not in the MVTec AD layout (the message says what is missing), or a
            defect image has no mask under ``ground_truth``.
    """

    def __init__(self, root: str | os.PathLike, category: str | None = None, split: str = "train",
                 size: tuple[int, int] | int | None = None, defects: Sequence[str] | None = None):
        _check_split(split)
        base = Path(root) if category is None else Path(root) / category
        if not base.is_dir():
            raise FileNotFoundError(f"MVTec AD category folder not found: {base}")
        if not (base / "train" / "good").is_dir() and not (base / "test").is_dir():
            raise FileNotFoundError(f"{base} is not an MVTec AD category folder: expected train/good/ and "
                                    "test/<defect>/ in it (pass the category folder, or the data-set root and category=)")
        self.root = base
        self.split = split
        samples: list[Sample] = []
        if split == "train":
            samples = [Sample(f, None, 0, "good") for f in list_images(base / "train" / "good",
                                                                      what="MVTec AD train/good folder")]
        else:
            test = base / "test"
            if not test.is_dir():
                raise FileNotFoundError(f"MVTec AD test folder not found: {test}")
            types = sorted(d.name for d in test.iterdir() if d.is_dir() and not d.name.startswith("."))
            if defects is not None:
                unknown = sorted(set(defects) - set(types))
                if unknown:
                    raise ValueError(f"defects {unknown} are not in {test} (it has {types})")
                types = [t for t in types if t in set(defects) or t == "good"]
            for defect in types:
                for f in list_images(test / defect, what=f"MVTec AD test/{defect} folder"):
                    if defect == "good":
                        samples.append(Sample(f, None, 0, "good"))
                        continue
                    mask = _find_mask(base / "ground_truth" / defect, f.stem)
                    if mask is None:
                        raise FileNotFoundError(f"no mask for {f}: expected {base}/ground_truth/{defect}/"
                                                f"{f.stem}_mask.png")
                    samples.append(Sample(f, mask, 1, defect))
        super().__init__(samples, size)


class VisA(AnomalyImageDataset):
    """VisA through its split csv (``split_csv/1cls.csv``: columns ``object,split,label,image,mask``, paths
    relative to the data-set root, ``label`` ``normal`` / ``anomaly``).

    Args:
        root: the VisA root (holding ``split_csv/`` and one folder per object).
        category: the object (e.g. ``"candle"``); None = every object in the csv.
        split: ``"train"`` or ``"test"``.
        size: optional ``(height, width)`` (or an int).
        csv_file: the split csv, relative to ``root`` or absolute.

    Raises:
        FileNotFoundError: the csv, an image or a mask it names is missing.
        ValueError: the csv lacks a column, has an unknown label, or names no row for ``category``.
    """

    COLUMNS = ("object", "split", "label", "image", "mask")

    def __init__(self, root: str | os.PathLike, category: str | None = None, split: str = "train",
                 size: tuple[int, int] | int | None = None, csv_file: str | os.PathLike = "split_csv/1cls.csv"):
        _check_split(split)
        base = Path(root)
        table = Path(csv_file) if Path(csv_file).is_absolute() else base / csv_file
        if not table.is_file():
            raise FileNotFoundError(f"VisA split csv not found: {table} (expected the data-set root holding "
                                    f"split_csv/1cls.csv)")
        with open(table, newline="") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in self.COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise ValueError(f"{table} lacks the columns {missing} (expected {', '.join(self.COLUMNS)})")
            rows = list(reader)
        objects = sorted({r["object"] for r in rows})
        if category is not None and category not in objects:
            raise ValueError(f"category {category!r} is not in {table} (objects: {objects})")
        samples = []
        for line, r in enumerate(rows, start=2):
            if r["split"].strip() != split or (category is not None and r["object"] != category):
                continue
            label = r["label"].strip().lower()
            if label not in ("normal", "anomaly"):
                raise ValueError(f"{table} line {line}: label must be 'normal' or 'anomaly', got {r['label']!r}")
            image = base / r["image"].strip()
            if not image.is_file():
                raise FileNotFoundError(f"{table} line {line}: image not found: {image}")
            mask = None
            if label == "anomaly":
                if not r["mask"].strip():
                    raise ValueError(f"{table} line {line}: an anomalous image needs a mask")
                mask = base / r["mask"].strip()
                if not mask.is_file():
                    raise FileNotFoundError(f"{table} line {line}: mask not found: {mask}")
            defect = "good" if label == "normal" else "anomaly"
            samples.append(Sample(image, mask, int(label == "anomaly"), defect))
        if not samples:
            raise ValueError(f"{table} has no {split} rows" + (f" for {category!r}" if category else ""))
        self.root = base
        self.split = split
        super().__init__(samples, size)


class FolderDataset(AnomalyImageDataset):
    """A plain folder of images, with an optional folder of masks (same relative path and stem; ``_mask``
    suffix allowed, any image extension). Images without a mask file, or with an empty one, are normal (label 0).

    Args:
        images: the image folder.
        masks: optional mask folder.
        size: optional ``(height, width)`` (or an int).
        recursive: also read sub-folders.

    Raises:
        FileNotFoundError, NotADirectoryError: a folder is missing or holds no image.
    """

    def __init__(self, images: str | os.PathLike, masks: str | os.PathLike | None = None,
                 size: tuple[int, int] | int | None = None, *, recursive: bool = False):
        root = Path(images)
        files = list_images(root, recursive=recursive)
        mroot = None
        if masks is not None:
            mroot = Path(masks)
            if not mroot.is_dir():
                raise FileNotFoundError(f"mask folder not found: {mroot}")
        samples = []
        for f in files:
            mask = None if mroot is None else _find_mask(mroot / f.parent.relative_to(root), f.stem)
            samples.append(Sample(f, mask, 0 if mask is None else -1, "good" if mask is None else "anomaly"))
        self.root = root
        super().__init__(samples, size)
