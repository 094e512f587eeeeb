"""blend in Triton; mirrors anofast/reference/blend.py operation by operation (launched without FMA fusion)."""

import torch
import triton
import triton.language as tl

from anofast.reference.blend import INV255

_INV255 = tl.constexpr(INV255)


# H and W stay runtime values (no recompilation per image size, no constexpr when one of them is 1).
@triton.jit(do_not_specialize=["H", "W"])
def _blend_kernel(
    out_ptr,  # (B, C, H, W) float32
    mask_ptr,  # (B, 1, H, W) float32
    rows_ptr,  # (B, H) int32: changed pixels per row, -1 if the row holds an image value outside [0, 1]
    img_ptr,  # (B, C, H, W) float32
    tex_ptr,  # (B, C, H, W) uint8
    place_ptr,  # (B, 1, H, W) float32
    opacity_ptr,  # (B,) float32
    bbox_ptr,  # (B, 4) int32 (unused without HAS_BBOX)
    H,
    W,
    C: tl.constexpr,
    HAS_BBOX: tl.constexpr,
    BLOCK_W: tl.constexpr,
):
    # One program per row: the row's count is reduced by one program, deterministic and without atomics.
    row = tl.program_id(0).to(tl.int64)  # b*H + y
    b = row // H
    y = row % H
    op = tl.load(opacity_ptr + b)
    bx0 = 0
    bx1 = W
    if HAS_BBOX:
        in_rows = (y >= tl.load(bbox_ptr + 4 * b)) & (y < tl.load(bbox_ptr + 4 * b + 2))
        bx0 = tl.where(in_rows, tl.load(bbox_ptr + 4 * b + 1), 0)
        bx1 = tl.where(in_rows, tl.load(bbox_ptr + 4 * b + 3), 0)
    base = (b * C * H + y) * W  # channel 0 of this row
    count = 0
    bad = 0
    for x0 in range(0, W, BLOCK_W):
        x = x0 + tl.arange(0, BLOCK_W)
        in_row = x < W
        placed = (tl.load(place_ptr + row * W + x, mask=in_row, other=0.0) > 0.5) & (x >= bx0) & (x < bx1)
        changed = tl.zeros([BLOCK_W], dtype=tl.int1)
        for c in tl.static_range(C):
            offs = base + c * H * W + x
            i = tl.load(img_ptr + offs, mask=in_row, other=0.0)
            t = tl.load(tex_ptr + offs, mask=in_row & placed, other=0).to(tl.float32) * _INV255
            o = i + (op * (t - i))
            o = tl.where(o > 0.0, o, 0.0)  # clamp to [0, 1], as selects (the reference's form)
            o = tl.where(o < 1.0, o, 1.0)
            v = tl.where(placed, o, i)
            tl.store(out_ptr + offs, v, mask=in_row)
            changed = changed | (v != i)
            bad = bad + tl.sum((~((i >= 0.0) & (i <= 1.0))).to(tl.int32), axis=0)
        tl.store(mask_ptr + row * W + x, changed.to(tl.float32), mask=in_row)
        count = count + tl.sum(changed.to(tl.int32), axis=0)
    tl.store(rows_ptr + row, tl.where(bad > 0, -1, count))


def blend_triton(images: torch.Tensor, texture: torch.Tensor, placement: torch.Tensor, opacity: torch.Tensor, bbox):
    """Same contract as ``anofast.reference.blend.blend_reference``."""
    batch, channels, height, width = images.shape
    out = torch.empty_like(images)
    mask = torch.empty_like(placement)
    rows = torch.empty((batch, height), dtype=torch.int32, device=images.device)
    if batch == 0 or height == 0:
        return out, mask, rows
    block = min(1024, triton.next_power_of_2(width))
    _blend_kernel[(batch * height,)](
        out,
        mask,
        rows,
        images,
        texture,
        placement,
        opacity,
        bbox if bbox is not None else rows,
        height,
        width,
        C=channels,
        HAS_BBOX=bbox is not None,
        BLOCK_W=block,
        enable_fp_fusion=False,
    )
    return out, mask, rows
