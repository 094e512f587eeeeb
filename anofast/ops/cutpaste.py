"""Fused CutPaste: crop -> colour jitter -> rotate -> paste, writing the image and its exact mask in one op.

``cutpaste(images, ints, floats)`` takes per-sample parameter tables (see :func:`pack_params` and the column
constants of :mod:`anofast.reference.cutpaste`, which specifies the op); :class:`anofast.CutPaste` draws them.
``mask == (out != images).any(channel)``: pasted pixels equal to what they cover are not marked.
"""

from __future__ import annotations

import torch
from torch import Tensor

import anofast.reference.cutpaste as ref
from anofast._dispatch import dispatch, num_threads, register_impl
from anofast._validate import check_float_images, check_mask, check_param

_FIXED = 2.0**-24


def pack_params(
    src: Tensor,
    crop: Tensor,
    dst: Tensor,
    angle_deg: Tensor,
    brightness: Tensor,
    contrast: Tensor,
    saturation: Tensor,
    hue: Tensor,
    order: Tensor,
    apply: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Builds the op's ``(ints (B, 12) int32, floats (B, 15) float32)`` tables on the CPU.

    Args:
        src: ``(B, 2)`` int ``(y, x)`` top-left of the source crop.
        crop: ``(B, 2)`` int ``(h, w)`` crop size, ``>= 1``.
        dst: ``(B, 2)`` int ``(y, x)`` top-left of the paste box (the rotated crop's bounding box).
        angle_deg: ``(B,)`` rotation in degrees, counter-clockwise as PIL's ``Image.rotate`` (0: plain copy).
        brightness, contrast, saturation: ``(B,)`` torchvision ``ColorJitter`` factors (1: unchanged).
        hue: ``(B,)`` hue shift in turns, in ``[-0.5, 0.5]`` (0: unchanged).
        order: ``(B, 4)`` int permutation of the jitter op ids (0 brightness, 1 contrast, 2 saturation, 3 hue).
        apply: optional ``(B,)`` bool: samples where it is False paste nothing.

    The paste box is PIL's ``expand=True`` size: ``ceil(c + a) - floor(c - a)`` per axis around the crop
    centre ``c`` with half extent ``a`` of the rotated rectangle (float64 on the host; the crop size at 0°).
    """
    crop64 = crop.to(torch.float64)
    h, w = crop64[:, 0], crop64[:, 1]
    phi = -torch.deg2rad(angle_deg.to(torch.float64))
    cos, sin = torch.cos(phi), torch.sin(phi)
    ax = (w * cos.abs() + h * sin.abs()) * 0.5
    ay = (w * sin.abs() + h * cos.abs()) * 0.5
    box_w = torch.ceil(w * 0.5 + ax) - torch.floor(w * 0.5 - ax)
    box_h = torch.ceil(h * 0.5 + ay) - torch.floor(h * 0.5 - ay)
    box = torch.stack((box_h, box_w), 1).to(torch.int32)
    if apply is not None:
        box = torch.where(apply.view(-1, 1).cpu(), box, 0)
    ints = torch.cat(
        (src.to(torch.int32), crop.to(torch.int32), dst.to(torch.int32), box, order.to(torch.int32)), 1
    ).contiguous()
    c = contrast.to(torch.float32)
    s = saturation.to(torch.float32)
    floats = torch.stack(
        (
            cos, sin, -sin, cos,
            0.5 - box_w * 0.5, 0.5 - box_h * 0.5, w * 0.5, h * 0.5,
            brightness.to(torch.float64), c.to(torch.float64), (1.0 - c).to(torch.float64),
            s.to(torch.float64), (1.0 - s).to(torch.float64),
            hue.to(torch.float64) * 6.0, _FIXED / (h * w),
        ),
        1,
    ).to(torch.float32).contiguous()  # fmt: skip
    return ints, floats


def cutpaste(
    images: Tensor,
    ints: Tensor,
    floats: Tensor,
    *,
    foreground: Tensor | None = None,
    backend: str = "auto",
) -> tuple[Tensor, Tensor, Tensor]:
    """Pastes a jittered (and for scars rotated) crop of each image into the same image, with the exact mask.

    Args:
        images: ``(B, C, H, W)`` float32 in [0, 1], ``C`` in {1, 3}.
        ints: ``(B, 12)`` int32 ``(src_y, src_x, crop_h, crop_w, dst_y, dst_x, box_h, box_w, order[4])``: the
            crop must lie inside the image (``box_h`` or ``box_w`` 0: nothing pasted); the box may stick out.
        floats: ``(B, 15)`` float32 rotation, offsets and jitter factors (:func:`pack_params`).
        foreground: optional ``(B, 1, H, W)`` mask: pixels outside it are never written.
        backend: ``auto``, ``reference``, ``cpp`` (CPU) or ``triton`` (CUDA).

    Returns:
        ``out`` ``(B, C, H, W)`` float32 (bitwise ``images`` outside ``mask``), ``mask`` ``(B, 1, H, W)`` float32
        in {0, 1} (``== (out != images).any(1)``), ``count`` ``(B,)`` int64 pixels in ``mask``.

    Raises:
        TypeError, ValueError: bad shapes, dtypes or devices, a crop outside the image, an invalid jitter order,
            or image values outside [0, 1] / NaN (found by the kernels during their pass).

    Example:
        >>> images = torch.rand(2, 3, 32, 32)
        >>> n = torch.tensor([[4, 4], [0, 0]])
        >>> ints, floats = pack_params(n, torch.tensor([[8, 8], [5, 3]]), n + 10, torch.zeros(2), torch.ones(2),
        ...                            torch.ones(2), torch.ones(2), torch.zeros(2), torch.arange(4).repeat(2, 1))
        >>> out, mask, count = cutpaste(images, ints, floats)
        >>> bool(torch.equal(out[0, :, 14:22, 14:22], images[0, :, 4:12, 4:12]))
        True
    """
    images = check_float_images(images)
    batch, _, height, width = images.shape
    dev = images.device
    ints = check_param(ints, "ints", torch.int32, (batch, ref.N_INTS), dev)
    floats = check_param(floats, "floats", torch.float32, (batch, ref.N_FLOATS), dev)
    if batch:
        i = ints.cpu()
        sy, sx, ch, cw, bh, bw = (i[:, k] for k in (ref.SRC_Y, ref.SRC_X, ref.CROP_H, ref.CROP_W, ref.BOX_H,
                                                    ref.BOX_W))
        used = (bh > 0) & (bw > 0)
        ok = (sy >= 0) & (sx >= 0) & (ch >= 1) & (cw >= 1) & (sy + ch <= height) & (sx + cw <= width)
        if not bool((ok | ~used).all()):
            raise ValueError(f"ints: each used crop (src_y, src_x, crop_h, crop_w) must lie inside the "
                             f"{height}x{width} image")
        order = i[:, ref.ORDER : ref.ORDER + 4]
        if not bool((order.sort(1).values == torch.arange(4)).all()):
            raise ValueError("ints: the jitter order columns must be a permutation of 0, 1, 2, 3")
        if not bool(torch.isfinite(floats).all()):
            raise ValueError("floats must be finite")
    if foreground is not None:
        foreground = check_mask(foreground, "foreground", images)
    out, mask, rows = dispatch("cutpaste", dev, backend)(images, ints, floats, foreground)
    if bool((rows < 0).any()):
        raise ValueError("images must hold values in [0, 1] and no NaN; undo any mean/std normalisation first")
    return out, mask, rows.sum(dim=1, dtype=torch.int64)


@register_impl("cutpaste", "cpp")
def _load_cpp():
    from anofast._backend import cpp_module

    fn = cpp_module().cutpaste_cpu

    def cutpaste_cpp(images, ints, floats, foreground):
        out = torch.empty_like(images)
        mask = torch.empty((images.shape[0], 1, *images.shape[2:]), dtype=torch.float32)
        rows = torch.empty(images.shape[0], images.shape[2], dtype=torch.int32)
        fn(
            images.numpy(),
            ints.numpy(),
            floats.numpy(),
            None if foreground is None else foreground.numpy(),
            out.numpy(),
            mask.numpy(),
            rows.numpy(),
            num_threads(),
        )
        return out, mask, rows

    return cutpaste_cpp


@register_impl("cutpaste", "triton")
def _load_triton():
    from anofast._kernels.cutpaste import cutpaste_triton

    return cutpaste_triton
