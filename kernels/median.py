"""masked_median in Triton; mirrors anofast/reference/median.py (same selected value, bit for bit).

One program per block of BLOCK consecutive pixels (flattened over B, H, W); a block without a mask pixel only writes
zeros. For the others, the k-th smallest of the n disk values is found by a radix search on the floats' order-
preserving uint32 keys (negative floats: all bits flipped; others: the sign bit set), most significant bit first:
``res`` grows by each bit for which at most k keys lie below ``res | bit``; after 32 steps ``res`` is exactly the
k-th smallest key, i.e. one of the values, so the result equals any other correct selection's. Values are
canonicalised first (``v + 0.0``: -0.0 becomes +0.0), as in the other backends. The disk is read in chunks of CHUNK
offsets of the (2R + 1)^2 square; with one chunk (R <= 5) the keys are loaded once and stay in registers.
"""

import torch
import triton
import triton.language as tl

from anofast.reference.median import disk_offsets


@triton.jit
def _disk_keys(val_ptr, plane, y, x, on, c, H, W, R: tl.constexpr, CHUNK: tl.constexpr):
    """Keys ``(BLOCK, CHUNK)`` of chunk ``c`` of the disk square, and which of its columns are disk offsets."""
    side: tl.constexpr = 2 * R + 1
    j = c * CHUNK + tl.arange(0, CHUNK)
    dy = j // side - R
    dx = j % side - R
    in_disk = (j < side * side) & (dy * dy + dx * dx <= R * R)
    yy = y[:, None] + dy[None, :]
    xx = x[:, None] + dx[None, :]
    inside = on[:, None] & in_disk[None, :] & (yy >= 0) & (yy < H) & (xx >= 0) & (xx < W)
    v = tl.load(val_ptr + plane[:, None] + yy * W + xx, mask=inside, other=0.0)  # 0.0 outside the image
    u = (v + 0.0).to(tl.uint32, bitcast=True)
    key = tl.where((u >> 31) != 0, ~u, u | 0x80000000)
    return key, in_disk


# H and W stay runtime values (no recompilation per image size).
@triton.jit(do_not_specialize=["H", "W"])
def _masked_median_kernel(
    out_ptr,  # (B, 1, H, W) float32
    val_ptr,  # (B, 1, H, W) float32
    mask_ptr,  # (B, 1, H, W) float32
    total,  # B * H * W
    H,
    W,
    R: tl.constexpr,
    K: tl.constexpr,  # the median's index in the sorted disk values, (n - 1) // 2
    CHUNK: tl.constexpr,
    NCHUNK: tl.constexpr,
    BLOCK: tl.constexpr,
):
    pix = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    inb = pix < total
    on = (tl.load(mask_ptr + pix, mask=inb, other=0.0) > 0.5) & inb
    x = pix % W
    y = (pix // W) % H
    plane = pix - y * W - x  # b * H * W
    res = tl.zeros([BLOCK], dtype=tl.uint32)
    one = tl.full([BLOCK], 1, dtype=tl.uint32)
    if tl.max(on.to(tl.int32), axis=0) > 0:
        if NCHUNK == 1:
            key, in_disk = _disk_keys(val_ptr, plane, y, x, on, 0, H, W, R, CHUNK)
            for i in range(32):
                cand = res | (one << (31 - i))
                below = tl.sum(((key < cand[:, None]) & in_disk[None, :]).to(tl.int32), axis=1)
                res = tl.where(below <= K, cand, res)
        else:
            for i in range(32):
                cand = res | (one << (31 - i))
                below = tl.zeros([BLOCK], dtype=tl.int32)
                for c in range(NCHUNK):
                    key, in_disk = _disk_keys(val_ptr, plane, y, x, on, c, H, W, R, CHUNK)
                    below += tl.sum(((key < cand[:, None]) & in_disk[None, :]).to(tl.int32), axis=1)
                res = tl.where(below <= K, cand, res)
    bits = tl.where((res >> 31) != 0, res ^ 0x80000000, ~res)
    med = bits.to(tl.float32, bitcast=True)
    tl.store(out_ptr + pix, tl.where(on, med, 0.0), mask=inb)


def masked_median_triton(
    values: torch.Tensor, mask: torch.Tensor, radius: int, block: int | None = None
) -> torch.Tensor:
    """Same contract as ``anofast.reference.median.masked_median_reference``.

    ``block``: pixels per program (a power of two); default 32 on CUDA and up to 1024 under ``TRITON_INTERPRET=1``
    (the interpreter's cost is per program and per operation, not per element).
    """
    batch, _, height, width = values.shape
    out = torch.empty_like(values)
    total = batch * height * width
    if total == 0:
        return out
    side = 2 * radius + 1
    n = len(disk_offsets(radius)[0])  # disk size, odd
    chunk = min(128, triton.next_power_of_2(side * side))
    nchunk = triton.cdiv(side * side, chunk)
    if block is None:
        block = 32 if values.is_cuda else min(1024, triton.next_power_of_2(total))
    _masked_median_kernel[(triton.cdiv(total, block),)](
        out, values, mask, total, height, width,
        R=radius, K=(n - 1) // 2, CHUNK=chunk, NCHUNK=nchunk, BLOCK=block,
    )  # fmt: skip
    return out
