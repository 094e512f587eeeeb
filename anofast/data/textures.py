"""Anomaly-source textures: a folder of images (decoded once, cached) or a tensor, as a uint8 pool."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from anofast.data.folder import check_size, list_images, read_image, to_uint8

_CACHE_ENTRIES = 8  # distinct (folder, size) pools kept in memory, least recently used dropped first
_cache: OrderedDict[tuple, Tensor] = OrderedDict()
_cache_lock = threading.Lock()
_RESIZE_CHUNK = 16  # textures resized per interpolate call: bounds the float32 temporaries


def load_texture_folder(path: str | os.PathLike, size: tuple[int, int] | int) -> Tensor:
    """Decodes every image under a folder (recursively) into a uint8 texture pool, once.

    Files (jpg, jpeg, png, bmp, tif, tiff, webp; hidden files skipped) are sorted by relative path, decoded
    with PIL, converted to RGB and resized to ``size`` with PIL's bilinear filter (antialiased when shrinking).
    The result is cached in memory, keyed by the resolved folder, ``size`` and every file's name, size and
    modification time, so a second call is free and an edited folder is re-read. Decoding runs on a few
    threads (PIL releases the GIL while decoding and resizing).

    Args:
        path: folder of texture images (e.g. the Describable Textures Dataset).
        size: ``(height, width)`` or an int for a square.

    Returns:
        ``(N, 3, H, W)`` uint8 tensor, shared with the cache: treat it as read-only.

    Raises:
        FileNotFoundError: the folder does not exist or holds no image.
        NotADirectoryError: the path is not a folder.
        ImageReadError: an image cannot be decoded (the message names the file).
    """
    size = check_size(size)
    root = Path(path)
    files = list_images(root, recursive=True, what="texture folder")
    stamp = []
    for f in files:
        st = f.stat()
        stamp.append((f.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns))
    key = (str(root.resolve()), size, tuple(stamp))
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    pool = torch.empty((len(files), 3, size[0], size[1]), dtype=torch.uint8)

    def decode(i: int) -> None:
        pool[i] = read_image(files[i], size)

    workers = min(8, os.cpu_count() or 1, len(files))
    if workers > 1:
        with ThreadPoolExecutor(workers) as ex:
            list(ex.map(decode, range(len(files))))  # list() re-raises the first error
    else:
        for i in range(len(files)):
            decode(i)
    with _cache_lock:
        _cache[key] = pool
        while len(_cache) > _CACHE_ENTRIES:
            _cache.popitem(last=False)
    return pool


def textures_from_tensor(textures: Tensor, size: tuple[int, int] | int) -> Tensor:
    """A texture tensor as a uint8 pool of RGB textures of ``size``.

    Args:
        textures: ``(N, 3, h, w)`` or ``(N, 1, h, w)`` (grey, repeated to RGB), uint8 or float in [0, 1].
        size: ``(height, width)`` or an int for a square. Textures of another size are resized with bilinear
            interpolation with antialias (``torch.nn.functional.interpolate``), computed in float32 and
            rounded as ``floor(x + 0.5)``.

    Returns:
        ``(N, 3, H, W)`` uint8 contiguous tensor on the input's device (the input itself when nothing changes).

    Raises:
        TypeError: not a tensor, or a dtype other than uint8 / floating point.
        ValueError: wrong shape, or float values outside [0, 1] or not finite.
    """
    size = check_size(size)
    if not isinstance(textures, Tensor):
        raise TypeError(f"textures must be a torch.Tensor, got {type(textures).__name__}")
    if textures.dim() != 4 or textures.shape[1] not in (1, 3) or textures.shape[2] == 0 or textures.shape[3] == 0:
        raise ValueError(f"textures must have shape (N, 3, h, w) or (N, 1, h, w), got {tuple(textures.shape)}")
    if textures.is_floating_point():
        if textures.numel() and not bool(((textures >= 0) & (textures <= 1)).all()):
            raise ValueError("float textures must be finite and lie in [0, 1]")
    elif textures.dtype != torch.uint8:
        raise TypeError(f"textures must be uint8 or float in [0, 1], got {textures.dtype}")
    if tuple(textures.shape[-2:]) == size:
        out = to_uint8(textures)
    else:
        out = torch.empty((textures.shape[0], textures.shape[1], *size), dtype=torch.uint8, device=textures.device)
        scale = 1.0 if textures.is_floating_point() else 1.0 / 255.0
        for s in range(0, textures.shape[0], _RESIZE_CHUNK):
            chunk = textures[s : s + _RESIZE_CHUNK].to(torch.float32) * scale
            resized = F.interpolate(chunk, size=size, mode="bilinear", antialias=True, align_corners=False)
            out[s : s + _RESIZE_CHUNK] = to_uint8(resized)
    if out.shape[1] == 1:
        out = out.expand(-1, 3, -1, -1)
    return out.contiguous()
