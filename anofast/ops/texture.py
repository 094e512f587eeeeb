"""Kernel-level texture ops: one augmentation stage per sample (``texture_stage``) and per-channel histograms
(``texture_histogram``). :mod:`anofast.ops.augment` chains them into the texture-augmentation pipeline.

``texture_hist_lut`` turns histograms into the image-dependent tables (autocontrast, equalize, contrast).
The stage modes, the tables and their exact arithmetic are specified in :mod:`anofast.reference.texture`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from anofast._dispatch import dispatch, num_threads, register_impl
from anofast._validate import check_tensor
from anofast.reference.texture import (
    AFFINE,
    BRIGHTNESS,
    GRAYSCALE,
    HIST_AUTOCONTRAST,
    HIST_CONTRAST,
    HIST_EQUALIZE,
    HIST_NONE,
    HUESAT,
    IDENTITY,
    LUT,
    MODE_NAMES,
    SHARPNESS,
    autocontrast_lut,
    contrast_lut,
    equalize_lut,
    reciprocal_table,
)

__all__ = [
    "AFFINE",
    "BRIGHTNESS",
    "GRAYSCALE",
    "HIST_AUTOCONTRAST",
    "HIST_CONTRAST",
    "HIST_EQUALIZE",
    "HIST_NONE",
    "HUESAT",
    "IDENTITY",
    "LUT",
    "MODE_NAMES",
    "SHARPNESS",
    "autocontrast_lut",
    "contrast_lut",
    "equalize_lut",
    "texture_hist_lut",
    "texture_histogram",
    "texture_stage",
]


def _check_u8_images(x: object, name: str) -> Tensor:
    t = check_tensor(x, name)
    if t.dtype != torch.uint8:
        raise TypeError(f"{name} must be uint8, got {t.dtype}")
    if t.dim() != 4 or t.shape[1] != 3:
        raise ValueError(f"{name} must have shape (B, 3, H, W), got {tuple(t.shape)}")
    return t


def _check_param(x: object, name: str, dtype: torch.dtype, shape: tuple[int, ...], device: torch.device) -> Tensor:
    t = check_tensor(x, name)
    if t.dtype != dtype:
        raise TypeError(f"{name} must be {dtype}, got {t.dtype}")
    if tuple(t.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(t.shape)}")
    if t.device != device:
        raise ValueError(f"{name} is on {t.device} but the images are on {device}")
    return t.contiguous()


def texture_stage(
    src: Tensor, mode: Tensor, fparams: Tensor, lut: Tensor, box: Tensor, out: Tensor, *, backend: str = "auto"
) -> Tensor:
    """Applies one augmentation step per sample, writing ``out`` inside each sample's box only.

    Args:
        src: ``(B, 3, H, W)`` uint8 images.
        mode: ``(B,)`` int32 mode ids (``IDENTITY`` 0, ``LUT`` 1, ``BRIGHTNESS`` 2, ``HUESAT`` 3, ``SHARPNESS`` 4,
            ``AFFINE`` 5, ``GRAYSCALE`` 6; see :mod:`anofast.reference.texture`).
        fparams: ``(B, 4)`` float32 per-sample scalars of the mode.
        lut: ``(B, 3, 256)`` uint8 per-channel tables (read by ``LUT`` only).
        box: ``(B, 4)`` int32 ``(y0, x0, y1, x1)`` with exclusive ends, inside the image; empty boxes are allowed.
        out: ``(B, 3, H, W)`` uint8, contiguous, not ``src``: written inside the boxes, left alone elsewhere.
        backend: ``auto``, ``reference``, ``cpp`` or ``triton``.

    Returns:
        ``out``.

    Raises:
        TypeError: a wrong dtype.
        ValueError: a wrong shape or device, an unknown mode, a box outside the image, ``out`` aliasing ``src``.
    """
    src = _check_u8_images(src, "src").contiguous()
    batch, _, height, width = src.shape
    dev = src.device
    mode = _check_param(mode, "mode", torch.int32, (batch,), dev)
    fparams = _check_param(fparams, "fparams", torch.float32, (batch, 4), dev)
    lut = _check_param(lut, "lut", torch.uint8, (batch, 3, 256), dev)
    box = _check_param(box, "box", torch.int32, (batch, 4), dev)
    out = _check_u8_images(out, "out")
    if out.shape != src.shape or out.device != dev or not out.is_contiguous():
        raise ValueError(f"out must be a contiguous {tuple(src.shape)} uint8 tensor on {dev}")
    if out.data_ptr() == src.data_ptr() and batch > 0:
        raise ValueError("out must not be the same buffer as src (the stencil modes read neighbours)")
    if batch == 0:
        return out
    if bool(((mode < 0) | (mode >= len(MODE_NAMES))).any()):
        raise ValueError(f"mode ids must be in [0, {len(MODE_NAMES)}), got {mode.tolist()}")
    b = box.long()
    if bool(((b[:, :2] < 0).any(dim=1) | (b[:, 2] > height) | (b[:, 3] > width)).any()):
        raise ValueError(f"box must lie inside the {height}x{width} image, got {box.tolist()}")
    if not bool(torch.isfinite(fparams).all()):
        raise ValueError("fparams contains NaN or infinite values")
    return dispatch("texture_stage", dev, backend)(src, mode, fparams, lut, box, out)


def texture_histogram(images: Tensor, index: Tensor | None = None, *, backend: str = "auto") -> Tensor:
    """Per-channel 256-bin histograms of whole images.

    Args:
        images: ``(B, 3, H, W)`` uint8.
        index: optional ``(N,)`` int64 sample indices: histogram only ``images[index]`` (default: all samples).
        backend: ``auto``, ``reference``, ``cpp`` or ``triton``.

    Returns:
        ``(N, 3, 256)`` int32 counts.

    Example:
        >>> texture_histogram(torch.zeros(2, 3, 4, 4, dtype=torch.uint8))[0, 0, 0].item()
        16
    """
    images = _check_u8_images(images, "images").contiguous()
    if index is None:
        index = torch.arange(images.shape[0], device=images.device)
    index = check_tensor(index, "index")
    if index.dtype != torch.int64 or index.dim() != 1:
        raise TypeError(f"index must be a (N,) int64 tensor, got {index.dtype} of shape {tuple(index.shape)}")
    index = index.to(images.device).contiguous()
    if index.numel() and (int(index.min()) < 0 or int(index.max()) >= images.shape[0]):
        raise ValueError(f"index must lie in [0, {images.shape[0]}), got {index.tolist()}")
    return dispatch("texture_histogram", images.device, backend)(images, index)


def texture_hist_lut(hist: Tensor, kind: Tensor, param: Tensor, *, backend: str = "auto") -> Tensor:
    """Image-dependent 256-entry tables from per-channel histograms (PIL-exact autocontrast and equalize).

    Args:
        hist: ``(N, 3, 256)`` int32 histograms (``texture_histogram``, or pushed through earlier tables).
        kind: ``(N,)`` int32: ``HIST_NONE`` 0 (identity), ``HIST_AUTOCONTRAST`` 1, ``HIST_EQUALIZE`` 2,
            ``HIST_CONTRAST`` 3.
        param: ``(N,)`` float32: the autocontrast cutoff in percent (rounded half up) or the contrast factor.
        backend: ``auto``, ``reference``, ``cpp`` or ``triton`` (torch on the device: the tables are tiny).

    Returns:
        ``(N, 3, 256)`` uint8 tables.
    """
    hist = check_tensor(hist, "hist")
    if hist.dtype != torch.int32 or hist.dim() != 3 or tuple(hist.shape[1:]) != (3, 256):
        raise TypeError(f"hist must be a (N, 3, 256) int32 tensor, got {hist.dtype} of shape {tuple(hist.shape)}")
    n = hist.shape[0]
    kind = _check_param(kind, "kind", torch.int32, (n,), hist.device)
    param = _check_param(param, "param", torch.float32, (n,), hist.device)
    if n and bool(((kind < 0) | (kind > HIST_CONTRAST)).any()):
        raise ValueError(f"kind must be in [0, {HIST_CONTRAST}], got {kind.tolist()}")
    if n and bool((hist < 0).any()):
        raise ValueError("hist must not contain negative counts")
    return dispatch("texture_hist_lut", hist.device, backend)(hist.contiguous(), kind, param)


@register_impl("texture_stage", "reference")
def _load_stage_reference():
    from anofast.reference.texture import texture_stage_reference

    return texture_stage_reference


@register_impl("texture_stage", "cpp")
def _load_stage_cpp():
    from anofast._backend import cpp_module

    fn = cpp_module().texture_stage_cpu

    def texture_stage_cpp(src: Tensor, mode: Tensor, fparams: Tensor, lut: Tensor, box: Tensor, out: Tensor) -> Tensor:
        fn(src.numpy(), mode.numpy(), fparams.numpy(), lut.numpy(), box.numpy(), reciprocal_table().numpy(),
           out.numpy(), num_threads())  # fmt: skip
        return out

    return texture_stage_cpp


@register_impl("texture_stage", "triton")
def _load_stage_triton():
    from anofast._kernels.texture import texture_stage_triton

    def texture_stage_tr(src: Tensor, mode: Tensor, fparams: Tensor, lut: Tensor, box: Tensor, out: Tensor) -> Tensor:
        return texture_stage_triton(src, mode, fparams, lut, box, reciprocal_table(src.device), out)

    return texture_stage_tr


@register_impl("texture_histogram", "reference")
def _load_histogram_reference():
    from anofast.reference.texture import texture_histogram_reference

    return texture_histogram_reference


@register_impl("texture_histogram", "cpp")
def _load_histogram_cpp():
    from anofast._backend import cpp_module

    fn = cpp_module().texture_histogram_cpu

    def texture_histogram_cpp(images: Tensor, index: Tensor) -> Tensor:
        out = torch.empty((index.shape[0], 3, 256), dtype=torch.int32)
        fn(images.numpy(), index.numpy(), out.numpy(), num_threads())
        return out

    return texture_histogram_cpp


@register_impl("texture_histogram", "triton")
def _load_histogram_triton():
    from anofast._kernels.texture import texture_histogram_triton

    return texture_histogram_triton


@register_impl("texture_hist_lut", "reference")
def _load_hist_lut_reference():
    from anofast.reference.texture import texture_hist_lut_reference

    return texture_hist_lut_reference


@register_impl("texture_hist_lut", "cpp")
def _load_hist_lut_cpp():
    from anofast._backend import cpp_module

    fn = cpp_module().texture_hist_lut_cpu

    def texture_hist_lut_cpp(hist: Tensor, kind: Tensor, param: Tensor) -> Tensor:
        out = torch.empty((hist.shape[0], 3, 256), dtype=torch.uint8)
        fn(hist.numpy(), kind.numpy(), param.numpy(), out.numpy())
        return out

    return texture_hist_lut_cpp


@register_impl("texture_hist_lut", "triton")
def _load_hist_lut_triton():
    # The tables are (N, 3, 256): the torch reference, run on the GPU tensors, is the GPU path (integer and
    # elementwise float64 ops only, so it matches the CPU bit for bit).
    from anofast.reference.texture import texture_hist_lut_reference

    return texture_hist_lut_reference
