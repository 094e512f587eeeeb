"""Plain image folders: listing, decoding (PIL), atomic PNG writing, and a map-style dataset."""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from anofast._validate import unit_float

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
_HIGH_DEPTH_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})


class ImageReadError(ValueError):
    """An image file exists but cannot be decoded (corrupt, truncated, unsupported)."""


def check_size(size: object, name: str = "size") -> tuple[int, int]:
    """``(height, width)`` from an int (square) or a pair of positive ints."""
    if isinstance(size, int) and not isinstance(size, bool):
        size = (size, size)
    if (
        not isinstance(size, Sequence)
        or len(size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in size)
    ):
        raise ValueError(f"{name} must be a positive int or a (height, width) pair of positive ints, got {size!r}")
    return int(size[0]), int(size[1])


def existing_folder(path: str | os.PathLike, what: str) -> Path:
    """``path`` as a Path; FileNotFoundError / NotADirectoryError naming it as ``what`` when it is not a folder."""
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"{what} not found: {root}")
    if not root.is_dir():
        raise NotADirectoryError(f"{what} is not a folder: {root}")
    return root


def list_images(path: str | os.PathLike, *, recursive: bool = False, what: str = "image folder") -> list[Path]:
    """Image files in a folder, sorted by their relative path (the same order on every file system).

    Hidden files and folders (names starting with ``.``, e.g. macOS ``._x.png`` resource forks) are skipped.

    Args:
        path: the folder.
        recursive: also list sub-folders.
        what: how error messages name the folder.

    Returns:
        The image paths (extensions in :data:`IMAGE_EXTENSIONS`, case-insensitive).

    Raises:
        FileNotFoundError: the folder does not exist, or holds no image.
        NotADirectoryError: the path is not a folder.
    """
    root = existing_folder(path, what)
    candidates = root.rglob("*") if recursive else root.iterdir()
    files = [
        f
        for f in candidates
        if f.suffix.lower() in IMAGE_EXTENSIONS
        and not any(part.startswith(".") for part in f.relative_to(root).parts)
        and f.is_file()
    ]
    if not files:
        exts = ", ".join(sorted(e[1:] for e in IMAGE_EXTENSIONS))
        where = " (searched recursively)" if recursive else ""
        raise FileNotFoundError(f"no images ({exts}) found in {what} {root}{where}")
    return sorted(files, key=lambda f: f.relative_to(root).as_posix())


def _to_rgb(im: Image.Image, path: Path) -> Image.Image:
    if im.mode == "RGB":
        return im
    if im.mode in _HIGH_DEPTH_MODES:
        # PIL's own conversion clips 16-bit values at 255; keep the top 8 bits instead.
        a = np.clip(np.asarray(im, dtype=np.int64), 0, 65535) >> 8
        return Image.fromarray(a.astype(np.uint8), "L").convert("RGB")
    if im.mode == "F":
        raise ImageReadError(f"cannot read image {path}: floating-point images (mode F) are not supported")
    return im.convert("RGB")


def read_pil(path: str | os.PathLike, size: tuple[int, int] | None = None) -> Image.Image:
    """Decodes an image file to an RGB PIL image, optionally resized to ``(height, width)``.

    The resize is PIL's bilinear filter, which antialiases when shrinking (``reducing_gap=None``: exact).

    Raises:
        FileNotFoundError: the file does not exist.
        ImageReadError: the file cannot be decoded.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"image not found: {p}")
    try:
        with Image.open(p) as im:
            im.load()  # decode now, so a truncated file fails here and not later
            rgb = _to_rgb(im, p)
    except ImageReadError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ImageReadError(f"cannot read image {p}: {e}") from None
    if size is not None and (rgb.height, rgb.width) != tuple(size):
        rgb = rgb.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    return rgb


def read_image(path: str | os.PathLike, size: tuple[int, int] | int | None = None) -> Tensor:
    """Reads an image file as a ``(3, H, W)`` uint8 tensor (grey, palette and RGBA images become RGB).

    Args:
        path: the image file.
        size: optional ``(height, width)`` (or an int for a square) to resize to, PIL bilinear with antialias.

    Raises:
        FileNotFoundError: the file does not exist.
        ImageReadError: the file cannot be decoded.
    """
    rgb = read_pil(path, None if size is None else check_size(size))
    # numpy does the HWC -> CHW copy: a torch copy could start an OpenMP team inside a loader thread
    return torch.from_numpy(np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1).copy())


def to_uint8(image: Tensor) -> Tensor:
    """uint8 copy of an image tensor: uint8 as is, float in [0, 1] rounded as ``floor(x * 255 + 0.5)``."""
    if image.dtype == torch.uint8:
        return image
    if not image.is_floating_point():
        raise TypeError(f"image must be uint8 or float in [0, 1], got {image.dtype}")
    return (image.to(torch.float32) * 255.0 + 0.5).floor_().clamp_(0, 255).to(torch.uint8)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, fsync: bool = False) -> None:
    """Writes ``data`` to ``path`` atomically: a temporary file in the same folder, then ``os.replace``.

    A reader (or a run resumed after a crash) sees either the old file or the complete new one, never a
    partial file. ``fsync=True`` also flushes the data to disk before the rename (survives a power cut).
    The temporary file is created with mode 0o666 minus the umask, like an ordinary file.
    """
    p = Path(path)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def encode_png(image: Tensor, *, compress_level: int = 6) -> bytes:
    """PNG bytes of a ``(3, H, W)`` / ``(1, H, W)`` / ``(H, W)`` uint8 or float [0, 1] CPU tensor.

    A uint8 ``(C, H, W)`` view of channels-last memory (``hwc.permute(2, 0, 1)``) is encoded without any torch
    computation, which is what writer threads should pass.
    """
    if image.dim() == 3 and image.shape[0] in (1, 3):
        arr = to_uint8(image).permute(1, 2, 0).contiguous().numpy()
        arr = arr[..., 0] if arr.shape[2] == 1 else arr
    elif image.dim() == 2:
        arr = to_uint8(image).contiguous().numpy()
    else:
        raise ValueError(f"image must have shape (3, H, W), (1, H, W) or (H, W), got {tuple(image.shape)}")
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB" if arr.ndim == 3 else "L").save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def write_png(path: str | os.PathLike, image: Tensor, *, compress_level: int = 6, fsync: bool = False) -> None:
    """Writes an image tensor as a PNG file, atomically (see :func:`atomic_write_bytes`).

    Args:
        path: destination file.
        image: ``(3, H, W)`` (RGB), ``(1, H, W)`` or ``(H, W)`` (grey) uint8, or float in [0, 1] (rounded as
            ``floor(x * 255 + 0.5)``; a ``{0, 1}`` mask becomes 0 / 255).
        compress_level: zlib level 0-9 (1 is several times faster than the default 6, files ~20 % larger).
        fsync: flush to disk before the rename.
    """
    atomic_write_bytes(path, encode_png(image, compress_level=compress_level), fsync=fsync)


class ImageFolder(Dataset):
    """Map-style dataset of the images in a folder, sorted by relative path.

    Item ``i`` is a ``(3, H, W)`` float32 tensor in [0, 1] (grey images are repeated to 3 channels).

    Args:
        path: the folder.
        size: optional ``(height, width)`` (or an int) every image is resized to (PIL bilinear, antialiased);
            without it images keep their own size.
        recursive: also read sub-folders.

    Raises:
        FileNotFoundError: the folder does not exist or holds no image.
        NotADirectoryError: the path is not a folder.
        ImageReadError: (when an item is read) the file cannot be decoded; the message names it.
    """

    def __init__(self, path: str | os.PathLike, size: tuple[int, int] | int | None = None, *, recursive: bool = False):
        self.root = Path(path)
        self.size = None if size is None else check_size(size)
        self.files = list_images(self.root, recursive=recursive)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Tensor:
        return unit_float(read_image(self.files[index], self.size))

    def __repr__(self) -> str:
        return f"ImageFolder({str(self.root)!r}, size={self.size}, {len(self)} images)"
