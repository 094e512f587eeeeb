"""integral_image in Triton; mirrors anofast/reference/integral.py (exact int32 counts, bit for bit).

One program per (image, block of BLOCK output columns ``j0 .. j0 + BLOCK - 1``); output column ``j`` sums the mask
columns ``< j``, so lane ``j`` reads mask column ``j - 1`` (none for ``j = 0``, which stays 0). The program walks
down the rows keeping its columns' running sums in registers; output row ``y + 1`` is the prefix sum
(``tl.cumsum``) of those column sums plus ``carry``, the count of the mask over rows ``<= y`` and the columns left
of the block (columns ``< j0 - 1``), itself a running sum of each row's left part. With one block per row (W <
BLOCK, the usual case) there is no left part and the mask is read once; each output is written once.
"""

import torch
import triton
import triton.language as tl


# H and W stay runtime values (no recompilation per image size).
@triton.jit(do_not_specialize=["H", "W"])
def _integral_image_kernel(
    out_ptr,  # (B, H + 1, W + 1) int32
    mask_ptr,  # (B, 1, H, W) uint8
    H,
    W,
    BLOCK: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)
    j0 = tl.program_id(1) * BLOCK
    j = j0 + tl.arange(0, BLOCK)  # output columns
    x = j - 1  # the mask column each lane adds
    col_in = (x >= 0) & (x < W)
    out_col = j < W + 1
    mrow = mask_ptr + b * H * W  # b is int64: so are the plane offsets
    orow = out_ptr + b * (H + 1) * (W + 1)
    cols = tl.zeros([BLOCK], dtype=tl.int32)  # column sums over the rows done so far
    carry = tl.zeros([], dtype=tl.int32)  # mask count over the rows done so far and the columns < j0 - 1
    left = j0 - 1
    tl.store(orow + j, cols, mask=out_col)  # row 0
    for _ in range(H):
        for c in range(0, left, BLOCK):  # the row's part left of the block (no iteration when j0 == 0)
            xs = c + tl.arange(0, BLOCK)
            v = tl.load(mrow + xs, mask=xs < left, other=0)
            carry += tl.sum((v != 0).to(tl.int32), axis=0)
        v = tl.load(mrow + x, mask=col_in, other=0)
        cols += (v != 0).to(tl.int32)
        orow += W + 1  # pointers advance row by row: no int32 product of a row index and a row length
        tl.store(orow + j, tl.cumsum(cols, axis=0) + carry, mask=out_col)
        mrow += W


def integral_image_triton(mask: torch.Tensor, block: int | None = None) -> torch.Tensor:
    """Same contract as ``anofast.reference.integral.integral_image_reference``, for a uint8 ``(B, 1, H, W)`` mask.

    ``block``: output columns per program (a power of two); default the whole row (``W + 1``) rounded up to a power of
    two, at most 1024 on CUDA (4096 under ``TRITON_INTERPRET=1``).
    """
    batch, _, height, width = mask.shape
    out = torch.empty(batch, height + 1, width + 1, dtype=torch.int32, device=mask.device)
    if block is None:
        block = min(1024 if mask.is_cuda else 4096, triton.next_power_of_2(width + 1))
    num_warps = 8 if block >= 2048 else 4 if block >= 512 else 2 if block >= 128 else 1
    grid = (batch, triton.cdiv(width + 1, block))
    _integral_image_kernel[grid](out, mask, height, width, BLOCK=block, num_warps=num_warps)
    return out
