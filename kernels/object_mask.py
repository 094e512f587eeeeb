"""object_mask in Triton; mirrors anofast/reference/object_mask.py (integer arithmetic: the same bits).

One program per block of BLOCK consecutive output pixels (flattened over B, H, W). For each of the MEDIAN x MEDIAN
window offsets it reads the neighbour at clamped coordinates (replicated borders), sums its C uint8 channels in
int32, tests the sum against every ``(lo, hi)`` row of the table (on iff ``s < lo`` or ``s > hi`` for all rows) and
counts the neighbours that are on; the pixel is 1 iff the count reaches ``(MEDIAN * MEDIAN + 1) // 2``.
Neighbouring programs reread the same bytes, from the cache.
"""

import torch
import triton
import triton.language as tl


# H, W, C and P stay runtime values (no recompilation per image size, channel count or table length).
@triton.jit(do_not_specialize=["H", "W", "C", "P"])
def _object_mask_kernel(
    out_ptr,  # (B, 1, H, W) float32 or uint8
    img_ptr,  # (B, C, H, W) uint8
    tab_ptr,  # (P, 2) int32: lo, hi
    total,  # B * H * W
    H,
    W,
    C,
    P,
    MEDIAN: tl.constexpr,
    BLOCK: tl.constexpr,
):
    pix = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    inb = pix < total
    x = pix % W
    y = (pix // W) % H
    plane = H.to(tl.int64) * W  # 64-bit offsets: C * H * W may exceed 2^31
    base = (pix // plane) * C * plane  # the sample's first channel
    R: tl.constexpr = MEDIAN // 2
    count = tl.zeros([BLOCK], dtype=tl.int32)
    for dy in range(MEDIAN):  # loops, not unrolled: a 63 x 63 window stays a small kernel
        yy = tl.minimum(tl.maximum(y + (dy - R), 0), H - 1)
        for dx in range(MEDIAN):
            xx = tl.minimum(tl.maximum(x + (dx - R), 0), W - 1)
            at = base + yy * W + xx
            s = tl.zeros([BLOCK], dtype=tl.int32)
            for c in range(C):
                s += tl.load(img_ptr + at + c * plane, mask=inb, other=0).to(tl.int32)
            on = inb
            for p in range(P):
                lo = tl.load(tab_ptr + 2 * p)
                hi = tl.load(tab_ptr + 2 * p + 1)
                on = on & ((s < lo) | (s > hi))
            count += on.to(tl.int32)
    on = count >= (MEDIAN * MEDIAN + 1) // 2
    tl.store(out_ptr + pix, on.to(out_ptr.dtype.element_ty), mask=inb)


def object_mask_triton(
    images: torch.Tensor, table: torch.Tensor, median: int, dtype: torch.dtype = torch.float32,
    block: int | None = None,
) -> torch.Tensor:
    """Same contract as ``anofast.reference.object_mask.object_mask_reference``.

    ``block``: pixels per program (a power of two); default 256 on CUDA and up to 1024 under ``TRITON_INTERPRET=1``
    (the interpreter's cost is per program and per operation, not per element).
    """
    batch, channels, height, width = images.shape
    out = torch.empty(batch, 1, height, width, dtype=dtype, device=images.device)
    total = batch * height * width
    if total == 0:
        return out
    if block is None:
        block = 256 if images.is_cuda else min(1024, triton.next_power_of_2(total))
    _object_mask_kernel[(triton.cdiv(total, block),)](
        out, images, table, total, height, width, channels, table.shape[0], MEDIAN=median, BLOCK=block,
    )  # fmt: skip
    return out
