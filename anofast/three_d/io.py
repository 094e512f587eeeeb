"""3D file I/O: point clouds (.pcd / .ply through open3d, .npz through numpy) and MVTec 3D-AD samples
(``rgb/NNN.png``, ``xyz/NNN.tiff``, ``gt/NNN.png``; METHODS.md 6.1).

Every writer is atomic (a temporary file in the same folder, then a rename). Readers raise
:class:`Read3DError` (a ``ValueError``) naming the file and the problem: a corrupt or empty file, NaN points,
an xyz TIFF that is not ``H x W x 3`` float. Only the point-cloud formats .pcd / .ply need open3d; the
MVTec 3D-AD and .npz paths need only numpy, PIL and tifffile.
"""

from __future__ import annotations

import os
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from anofast.data.folder import ImageReadError, atomic_write_bytes, encode_png, existing_folder, read_image

CLOUD_EXTENSIONS = (".pcd", ".ply", ".npz")


class Read3DError(ValueError):
    """A 3D file exists but cannot be used (corrupt, empty, NaN points, wrong layout)."""


class CloudData(NamedTuple):
    """A point cloud read from a file.

    Attributes:
        points: ``(N, 3)`` float32.
        colors: ``(N, 3)`` uint8 or None.
        normals: ``(N, 3)`` float32 or None.
        labels: ``(N,)`` int64 per-point labels or None.
    """

    points: np.ndarray
    colors: np.ndarray | None = None
    normals: np.ndarray | None = None
    labels: np.ndarray | None = None


class MVTec3DSample(NamedTuple):
    """One MVTec 3D-AD sample: ``rgb`` (3, H, W) uint8, ``xyz`` (3, H, W) float32 metres (0 = invalid), ``gt``
    (1, H, W) float32 {0, 1} or None."""

    rgb: Tensor
    xyz: Tensor
    gt: Tensor | None


def _atomic(path: Path, write: Callable[[Path], Any]) -> None:
    """Calls ``write(tmp)`` on a temporary file beside ``path`` (same suffix), then renames it to ``path``."""
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp{path.suffix}")
    try:
        if write(tmp) is False or not tmp.is_file():
            raise OSError(f"cannot write {path}")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _open3d() -> Any:
    from anofast.three_d.pointcloud import _open3d

    return _open3d()


# ------------------------------------------------------------------------------------------------ clouds
def read_point_cloud(path: str | os.PathLike, *, drop_invalid: bool = False) -> CloudData:
    """Reads a .pcd / .ply (open3d) or .npz point cloud.

    An .npz holds ``xyz`` (or ``points``): ``(N, 3)`` or organized ``(H, W, 3)`` (flattened row by row), and
    optionally ``rgb`` / ``colors`` (uint8), ``normals`` and ``labels`` of the same layout. A .pcd / .ply may
    carry colours, normals and an integer ``labels`` attribute (as :func:`write_point_cloud` writes it).

    Args:
        path: the file.
        drop_invalid: drop NaN / infinite points (scanners mark missing measurements with NaN) instead of
            raising.

    Raises:
        FileNotFoundError: the file does not exist.
        Read3DError: unsupported extension, corrupt file, no points, or NaN points without ``drop_invalid``.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"point cloud not found: {p}")
    ext = p.suffix.lower()
    if ext == ".npz":
        data = _read_npz(p)
    elif ext in (".pcd", ".ply"):
        data = _read_open3d(p)
    else:
        raise Read3DError(f"cannot read point cloud {p}: unsupported extension {p.suffix!r} "
                          f"(expected one of {', '.join(CLOUD_EXTENSIONS)})")
    if data.points.shape[0] == 0:
        raise Read3DError(f"point cloud {p} holds no points")
    bad = ~np.isfinite(data.points).all(axis=1)
    if bad.any():
        if not drop_invalid:
            raise Read3DError(f"point cloud {p} has {int(bad.sum())} NaN or infinite points (of "
                              f"{len(bad)}); pass drop_invalid=True to drop them")
        keep = ~bad
        data = CloudData(*(None if a is None else a[keep] for a in data))
        if data.points.shape[0] == 0:
            raise Read3DError(f"point cloud {p} holds no finite points")
    return data


def _read_npz(p: Path) -> CloudData:
    try:
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise Read3DError(f"cannot read point cloud {p}: {e}") from None
    key = "xyz" if "xyz" in arrays else "points" if "points" in arrays else None
    if key is None:
        raise Read3DError(f"point cloud {p} has no 'xyz' or 'points' array (has {sorted(arrays)})")
    pts = arrays[key]
    if pts.ndim not in (2, 3) or pts.shape[-1] != 3 or not np.issubdtype(pts.dtype, np.floating):
        raise Read3DError(f"point cloud {p}: {key!r} must be float (N, 3) or (H, W, 3), got {pts.dtype} "
                          f"{pts.shape}")
    n = int(np.prod(pts.shape[:-1]))

    def field(names: tuple[str, ...], width: int, dtype: Any) -> np.ndarray | None:
        for name in names:
            if name in arrays:
                a = arrays[name].reshape(n, width) if width > 1 else arrays[name].reshape(n)
                return a.astype(dtype)
        return None

    try:
        return CloudData(pts.reshape(n, 3).astype(np.float32), field(("rgb", "colors"), 3, np.uint8),
                         field(("normals",), 3, np.float32), field(("labels",), 1, np.int64))
    except ValueError as e:
        raise Read3DError(f"point cloud {p}: an array does not match the {n} points ({e})") from None


def _read_open3d(p: Path) -> CloudData:
    o3d = _open3d()
    pc = o3d.t.io.read_point_cloud(str(p))
    attrs = set(pc.point)
    if "positions" not in attrs:
        raise Read3DError(f"cannot read point cloud {p}: not a valid {p.suffix[1:].upper()} file, or no points")
    pts = pc.point.positions.numpy().astype(np.float32)
    colors = pc.point.colors.numpy() if "colors" in attrs else None
    if colors is not None and colors.dtype != np.uint8:  # float colours in [0, 1]
        colors = np.clip(np.floor(colors.astype(np.float64) * 255 + 0.5), 0, 255).astype(np.uint8)
    normals = pc.point.normals.numpy().astype(np.float32) if "normals" in attrs else None
    labels = pc.point.labels.numpy().reshape(-1).astype(np.int64) if "labels" in attrs else None
    return CloudData(pts, colors, normals, labels)


def write_point_cloud(path: str | os.PathLike, points: Any, *, colors: Any = None, normals: Any = None,
                      labels: Any = None) -> None:
    """Writes a point cloud as .pcd / .ply (open3d; labels as an int32 ``labels`` attribute) or .npz (``xyz``,
    ``rgb``, ``normals``, ``labels``), atomically.

    Args:
        path: destination; the extension picks the format.
        points: ``(N, 3)`` float array or tensor (stored as float32).
        colors: optional ``(N, 3)`` uint8, or float in [0, 1].
        normals: optional ``(N, 3)``.
        labels: optional ``(N,)`` integers.

    Raises:
        ValueError: unsupported extension, or arrays of mismatched length.
    """
    p = Path(path)
    ext = p.suffix.lower()
    if ext not in CLOUD_EXTENSIONS:
        raise ValueError(f"path: cannot write point cloud {p}: extension must be one of {CLOUD_EXTENSIONS}")
    pts = np.asarray(_np(points), dtype=np.float32)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"points must have shape (N, 3), got {pts.shape}")
    n = pts.shape[0]
    fields: dict[str, np.ndarray] = {"xyz": pts}
    if colors is not None:
        c = _np(colors)
        if np.issubdtype(c.dtype, np.floating):
            c = np.clip(np.floor(c.astype(np.float64) * 255 + 0.5), 0, 255)
        fields["rgb"] = c.astype(np.uint8)
    if normals is not None:
        fields["normals"] = np.asarray(_np(normals), dtype=np.float32)
    if labels is not None:
        fields["labels"] = np.asarray(_np(labels)).astype(np.int64).reshape(-1)
    for name, a in fields.items():
        if a.shape[0] != n or a.shape[1:] not in ((3,), ()):
            raise ValueError(f"{name} must have {n} rows matching points, got shape {a.shape}")
    if ext == ".npz":
        _atomic(p, lambda tmp: np.savez(tmp, **fields))
        return
    o3d = _open3d()
    pc = o3d.t.geometry.PointCloud(o3d.core.Tensor(pts))
    for name, attr in (("rgb", "colors"), ("normals", "normals")):
        if name in fields:
            pc.point[attr] = o3d.core.Tensor(fields[name])
    if "labels" in fields:
        pc.point["labels"] = o3d.core.Tensor(fields["labels"].astype(np.int32).reshape(-1, 1))
    _atomic(p, lambda tmp: o3d.t.io.write_point_cloud(str(tmp), pc))


def list_point_clouds(folder: str | os.PathLike) -> list[Path]:
    """The .pcd / .ply / .npz files in a folder, sorted by name.

    Raises:
        FileNotFoundError: the folder does not exist or holds no point cloud.
        NotADirectoryError: the path is not a folder.
    """
    root = existing_folder(folder, "point-cloud folder")
    files = sorted(f for f in root.iterdir() if f.suffix.lower() in CLOUD_EXTENSIONS and f.is_file()
                   and not f.name.startswith("."))
    if not files:
        raise FileNotFoundError(f"no point clouds ({', '.join(CLOUD_EXTENSIONS)}) found in {root}")
    return files


# ------------------------------------------------------------------------------------------------ MVTec 3D-AD
def read_xyz_tiff(path: str | os.PathLike) -> Tensor:
    """Reads an organized point cloud TIFF (``H x W x 3`` float, metres, 0 = invalid) as ``(3, H, W)`` float32.

    Raises:
        FileNotFoundError: the file does not exist.
        Read3DError: not a TIFF, not ``H x W x 3`` float, or NaN / infinite values.
    """
    import tifffile

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"xyz TIFF not found: {p}")
    try:
        a = tifffile.imread(p)
    except Exception as e:  # tifffile raises several types for corrupt files
        raise Read3DError(f"cannot read xyz TIFF {p}: {e}") from None
    if a.ndim != 3 or a.shape[2] != 3 or not np.issubdtype(a.dtype, np.floating):
        raise Read3DError(f"xyz TIFF {p} must be H x W x 3 float (an organized point cloud), got {a.dtype} "
                          f"{a.shape}")
    if not np.isfinite(a).all():
        raise Read3DError(f"xyz TIFF {p} contains NaN or infinite values (MVTec 3D-AD marks invalid points with 0)")
    return torch.from_numpy(np.ascontiguousarray(a.astype(np.float32).transpose(2, 0, 1)))


def write_xyz_tiff(path: str | os.PathLike, xyz: Any) -> None:
    """Writes a ``(3, H, W)`` organized point cloud as an ``H x W x 3`` float32 TIFF, atomically."""
    import tifffile

    a = np.asarray(_np(xyz), dtype=np.float32)
    if a.ndim != 3 or a.shape[0] != 3:
        raise ValueError(f"xyz must have shape (3, H, W), got {a.shape}")
    hwc = np.ascontiguousarray(a.transpose(1, 2, 0))
    _atomic(Path(path), lambda tmp: tifffile.imwrite(tmp, hwc, photometric="rgb"))


def read_mask_png(path: str | os.PathLike) -> Tensor:
    """A ground-truth PNG as ``(1, H, W)`` float32 {0, 1} (> 127 is anomalous)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"mask not found: {p}")
    try:
        with Image.open(p) as im:
            a = np.asarray(im.convert("L"))
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageReadError(f"cannot read mask {p}: {e}") from None
    return torch.from_numpy((a > 127).astype(np.float32))[None]


def read_mvtec3d_sample(folder: str | os.PathLike, stem: str) -> MVTec3DSample:
    """Reads ``folder/rgb/<stem>.png``, ``folder/xyz/<stem>.tiff`` and, if present, ``folder/gt/<stem>.png``.

    Raises:
        FileNotFoundError: the rgb or xyz file is missing.
        Read3DError / ImageReadError: a file cannot be decoded, or rgb and xyz differ in size.
    """
    root = Path(folder)
    rgb = read_image(root / "rgb" / f"{stem}.png")
    xyz = read_xyz_tiff(_tiff(root / "xyz", stem))
    if tuple(rgb.shape[1:]) != tuple(xyz.shape[1:]):
        raise Read3DError(f"{root}: rgb/{stem}.png is {tuple(rgb.shape[1:])} but its xyz TIFF is "
                          f"{tuple(xyz.shape[1:])}; they must be pixel-aligned")
    gt_path = root / "gt" / f"{stem}.png"
    return MVTec3DSample(rgb, xyz, read_mask_png(gt_path) if gt_path.is_file() else None)


def write_mvtec3d_sample(folder: str | os.PathLike, stem: str, rgb: Tensor, xyz: Any, gt: Tensor | None = None,
                         *, compress_level: int = 6) -> None:
    """Writes ``rgb/<stem>.png``, ``xyz/<stem>.tiff`` and (if given) ``gt/<stem>.png`` under ``folder``.

    ``rgb``: ``(3, H, W)`` uint8 or float in [0, 1]; ``xyz``: ``(3, H, W)``; ``gt``: ``(1, H, W)`` {0, 1}.
    """
    root = Path(folder)
    for sub in ("rgb", "xyz") + (("gt",) if gt is not None else ()):
        (root / sub).mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(root / "rgb" / f"{stem}.png", encode_png(rgb.cpu(), compress_level=compress_level))
    write_xyz_tiff(root / "xyz" / f"{stem}.tiff", xyz)
    if gt is not None:
        atomic_write_bytes(root / "gt" / f"{stem}.png", encode_png(gt.cpu().float(), compress_level=compress_level))


def list_mvtec3d_samples(folder: str | os.PathLike) -> list[str]:
    """Stems of the samples of an MVTec 3D-AD sample folder (one holding ``rgb/`` and ``xyz/``), sorted.

    Raises:
        FileNotFoundError: ``rgb/`` or ``xyz/`` is missing, or no stem has both files.
    """
    root = Path(folder)
    for sub in ("rgb", "xyz"):
        if not (root / sub).is_dir():
            raise FileNotFoundError(f"{root} is not an MVTec 3D-AD sample folder: {sub}/ is missing")
    xyz = {f.stem for f in (root / "xyz").iterdir() if f.suffix.lower() in (".tiff", ".tif")}
    stems = sorted(f.stem for f in (root / "rgb").iterdir() if f.suffix.lower() == ".png" and f.stem in xyz)
    if not stems:
        raise FileNotFoundError(f"no sample in {root} has both rgb/<name>.png and xyz/<name>.tiff")
    return stems


def _tiff(folder: Path, stem: str) -> Path:
    for ext in (".tiff", ".tif"):
        if (folder / f"{stem}{ext}").is_file():
            return folder / f"{stem}{ext}"
    raise FileNotFoundError(f"xyz TIFF not found: {folder / stem}.tiff")


def _np(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)
