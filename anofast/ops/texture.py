"""Kernel-level texture ops: one augmentation stage (or a fused chain of stages) per sample (``texture_stage``) and
per-channel histograms (``texture_histogram``). :mod:`anofast.ops.augment` chains them into the texture-augmentation
pipeline.

``texture_hist_lut`` turns histograms into the image-dependent tables (autocontrast, equalize, contrast).
The stage modes, the tables and their exact arithmetic are specified in :mod:`anofast.reference.texture`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from anofast._dispatch import dispatch, num_threads, register_impl
from anofast._validate import check_param, check_tensor
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


def texture_stage(
    src: Tensor,
    mode: Tensor,
    fparams: Tensor,
    lut: Tensor,
    box: Tensor,
    out: Tensor,
    *,
    where: Tensor | None = None,
    sparse: Tensor | None = None,
    src_index: Tensor | None = None,
    backend: str = "auto",
) -> Tensor:
    """Applies one augmentation step per sample, or a chain of steps in one pass, writing ``out`` inside each
    sample's box only (and, with ``where``, only at the mask's pixels).

    Args:
        src: ``(B, 3, H, W)`` uint8 images, or with ``src_index`` a ``(N, 3, H, W)`` pool that samples index.
        mode: ``(B,)`` int32 mode ids (``IDENTITY`` 0, ``LUT`` 1, ``BRIGHTNESS`` 2, ``HUESAT`` 3, ``SHARPNESS`` 4,
            ``AFFINE`` 5, ``GRAYSCALE`` 6; see :mod:`anofast.reference.texture`), or ``(B, K)`` for a chain of
            ``K >= 1`` stages per sample applied in one pass, bit-identical to ``K`` single-stage calls. A chain
            holds at most one stage that reads neighbours (``SHARPNESS``, ``AFFINE``), preceded by table stages only
            (``LUT``, ``IDENTITY``: they are applied to the bytes it reads); every other stage is pointwise
            (``IDENTITY``, ``LUT``, ``BRIGHTNESS``, ``HUESAT``, ``GRAYSCALE``). Pad shorter chains with ``IDENTITY``.
        fparams: ``(B, 4)`` float32 per-sample scalars of the mode (``(B, K, 4)`` for a chain).
        lut: ``(B, 3, 256)`` uint8 per-channel tables, read by ``LUT`` only (``(B, K, 3, 256)`` for a chain).
        box: ``(B, 4)`` int32 ``(y0, x0, y1, x1)`` with exclusive ends, inside the image; empty boxes are allowed.
        out: ``(B, 3, H, W)`` uint8, contiguous, not ``src``: written inside the boxes, left alone elsewhere.
        where: optional ``(B, 1, H, W)`` float32 mask (e.g. the anomaly placement mask): a sample with
            ``sparse[b]`` is computed and written only at its pixels with ``where > 0.5`` inside its box.
        sparse: optional ``(B,)`` bool, which samples ``where`` restricts (default: all of them).
        src_index: optional ``(B,)`` int64: sample ``b`` reads ``src[src_index[b]]`` (no gathered copy).
        backend: ``auto``, ``reference``, ``cpp`` or ``triton``.

    Returns:
        ``out``.

    Raises:
        TypeError: a wrong dtype.
        ValueError: a wrong shape or device, an unknown mode, a sharpness / affine stage behind a non-table stage, a
            box outside the image, a ``src_index`` outside the pool, ``out`` aliasing ``src``.
    """
    src = _check_u8_images(src, "src").contiguous()
    dev = src.device
    out = _check_u8_images(out, "out")
    batch, _, height, width = out.shape
    if tuple(src.shape[2:]) != (height, width) or out.device != dev or not out.is_contiguous():
        raise ValueError(f"out must be a contiguous (B, 3, {src.shape[2]}, {src.shape[3]}) uint8 tensor on {dev}, "
                         f"got {tuple(out.shape)} on {out.device}")  # fmt: skip
    mode = check_tensor(mode, "mode")
    chain = mode.dim() == 2
    count = mode.shape[1] if chain else 1
    if chain and count < 1:
        raise ValueError(f"mode must have shape (B,) or (B, K) with K >= 1, got {tuple(mode.shape)}")
    lead = (batch, count) if chain else (batch,)
    mode = check_param(mode, "mode", torch.int32, lead, dev).view(batch, count)
    fparams = check_param(fparams, "fparams", torch.float32, (*lead, 4), dev).view(batch, count, 4)
    lut = check_param(lut, "lut", torch.uint8, (*lead, 3, 256), dev).view(batch, count, 3, 256)
    box = check_param(box, "box", torch.int32, (batch, 4), dev)
    if src_index is None:
        if src.shape[0] != batch:
            raise ValueError(f"src has {src.shape[0]} images but out has {batch} (pass src_index to index a pool)")
        if out.data_ptr() == src.data_ptr() and batch > 0:
            raise ValueError("out must not be the same buffer as src (the stencil modes read neighbours)")
    else:
        src_index = check_param(src_index, "src_index", torch.int64, (batch,), dev)
        if batch and (int(src_index.min()) < 0 or int(src_index.max()) >= src.shape[0]):
            raise ValueError(f"src_index must lie in [0, {src.shape[0]}), got {src_index.tolist()}")
    if where is not None:
        where = check_param(where, "where", torch.float32, (batch, 1, height, width), dev)
    if sparse is not None:
        if where is None:
            raise ValueError("sparse needs where")
        sparse = check_param(sparse, "sparse", torch.bool, (batch,), dev)
    if batch == 0:
        return out
    if bool(((mode < 0) | (mode >= len(MODE_NAMES))).any()):
        raise ValueError(f"mode ids must be in [0, {len(MODE_NAMES)}), got {mode.tolist()}")
    if count > 1:
        # A SHARPNESS / AFFINE stage may follow only table stages (LUT, IDENTITY): those are applied to the bytes it
        # reads. So a chain holds at most one of them.
        other = ((mode != LUT) & (mode != IDENTITY)).to(torch.int32)
        behind = (other.cumsum(dim=1) - other) > 0  # a non-table stage comes earlier
        if bool((((mode == SHARPNESS) | (mode == AFFINE)) & behind).any()):
            raise ValueError(f"a SHARPNESS or AFFINE stage may follow only LUT / IDENTITY stages in a chain, got modes "
                             f"{mode.tolist()}")  # fmt: skip
    b = box.long()
    if bool(((b[:, :2] < 0).any(dim=1) | (b[:, 2] > height) | (b[:, 3] > width)).any()):
        raise ValueError(f"box must lie inside the {height}x{width} image, got {box.tolist()}")
    if not bool(torch.isfinite(fparams).all()):
        raise ValueError("fparams contains NaN or infinite values")
    return dispatch("texture_stage", dev, backend)(src, mode, fparams, lut, box, out, where, sparse, src_index)


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
    kind = check_param(kind, "kind", torch.int32, (n,), hist.device)
    param = check_param(param, "param", torch.float32, (n,), hist.device)
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

    def texture_stage_cpp(src, mode, fparams, lut, box, out, where=None, sparse=None, src_index=None) -> Tensor:
        fn(src.numpy(), mode.numpy(), fparams.numpy(), lut.numpy(), box.numpy(),
           None if where is None else where.numpy(), None if sparse is None else sparse.numpy(),
           None if src_index is None else src_index.numpy(), reciprocal_table().numpy(), out.numpy(),
           num_threads())  # fmt: skip
        return out

    return texture_stage_cpp


@register_impl("texture_stage", "triton")
def _load_stage_triton():
    from anofast._kernels.texture import texture_stage_triton

    def texture_stage_tr(src, mode, fparams, lut, box, out, where=None, sparse=None, src_index=None) -> Tensor:
        return texture_stage_triton(src, mode, fparams, lut, box, reciprocal_table(src.device), out, where, sparse,
                                    src_index)  # fmt: skip

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
