"""Datasets and image I/O: plain image folders, texture pools for anomaly sources, and the
:class:`SyntheticAnomalyDataset` wrapper that adds seeded anomalies to any image dataset."""

from __future__ import annotations

from anofast.data.dataset import SyntheticAnomalyDataset, epoch_seed
from anofast.data.folder import (
    IMAGE_EXTENSIONS,
    ImageFolder,
    ImageReadError,
    list_images,
    read_image,
    write_png,
)
from anofast.data.mvtec import AnomalyImageDataset, FolderDataset, MVTecAD, VisA, read_mask
from anofast.data.textures import load_texture_folder, textures_from_tensor

__all__ = [
    "AnomalyImageDataset",
    "FolderDataset",
    "MVTecAD",
    "VisA",
    "read_mask",
    "IMAGE_EXTENSIONS",
    "ImageFolder",
    "ImageReadError",
    "SyntheticAnomalyDataset",
    "epoch_seed",
    "list_images",
    "load_texture_folder",
    "read_image",
    "textures_from_tensor",
    "write_png",
]
