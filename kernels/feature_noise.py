"""feature_noise in Triton; mirrors anofast/reference/feature_noise.py operation by operation (no FMA fusion)."""

import torch
import triton
import triton.language as tl

from anofast._rng import Stream, normal_table, stream_salt

from ._rng import normal, sample_key, stream_key


# The sizes stay runtime values (no recompilation per feature shape, no constexpr when one of them is 1).
@triton.jit(do_not_specialize=["B", "C", "HW", "NBLK", "J0"])
def _feature_noise_kernel(
    out_ptr,  # (N, C, H, W) float32 (the features themselves when INPLACE)
    mask_ptr,  # (N, 1, H, W) float32
    blocks_ptr,  # (N, NBLK) int32: changed pixels of the block, -1 if a non-finite feature got noise
    f_ptr,  # (B, C, H, W) float32
    seeds_ptr,  # (N,) int64
    std_ptr,  # (N,) float32
    weight_ptr,  # (N, 1, H, W) float32 (unused without HAS_WEIGHT)
    table_ptr,  # normal_table()
    salt,
    B,
    C,
    HW,
    NBLK,
    J0,  # first output sample of this launch
    HAS_WEIGHT: tl.constexpr,
    INPLACE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    # One program per (output sample, block of pixels): it loops over the channels, so the per-pixel "changed"
    # reduction stays in registers and the block's count needs no atomics.
    j = J0 + tl.program_id(0).to(tl.int64)
    blk = tl.program_id(1).to(tl.int64)
    p = blk * BLOCK + tl.arange(0, BLOCK)
    inside = p < HW
    sd = tl.load(std_ptr + j)
    if HAS_WEIGHT:
        w = sd * tl.load(weight_ptr + j * HW + p, mask=inside, other=0.0)
    else:
        w = tl.where(inside, sd, 0.0)
    on = inside & (w != 0.0)
    skey = stream_key(sample_key(tl.load(seeds_ptr + j)), salt)
    src = f_ptr + (j % B) * C * HW + p
    dst = out_ptr + j * C * HW + p
    changed = tl.zeros([BLOCK], dtype=tl.int1)
    bad = tl.zeros([BLOCK], dtype=tl.int1)
    for c in range(C):
        # In place, pixels with a zero weight are neither read nor written.
        fv = tl.load(src + c * HW, mask=on if INPLACE else inside, other=0.0)
        n = normal(skey, c * HW + p, table_ptr)
        o = tl.where(on, fv + n * w, fv)
        tl.store(dst + c * HW, o, mask=on if INPLACE else inside)
        changed = changed | (o.to(tl.int32, bitcast=True) != fv.to(tl.int32, bitcast=True))
        bad = bad | (on & ((fv.to(tl.int32, bitcast=True) & 0x7F800000) == 0x7F800000))
    changed = changed & inside
    tl.store(mask_ptr + j * HW + p, changed.to(tl.float32), mask=inside)
    count = tl.sum(changed.to(tl.int32), axis=0)
    nbad = tl.sum(bad.to(tl.int32), axis=0)
    tl.store(blocks_ptr + j * NBLK + blk, tl.where(nbad > 0, -1, count))


def feature_noise_triton(features: torch.Tensor, seeds: torch.Tensor, std: torch.Tensor, weight, copies: int,
                         inplace: bool, out=None):
    """``(out, mask, per-block counts (N, blocks) int32)``; see ``anofast.reference.feature_noise``."""
    batch, channels, height, width = features.shape
    n_out = batch * copies
    hw = height * width
    if out is None:
        out = torch.empty((n_out, channels, height, width), dtype=torch.float32, device=features.device)
    mask = torch.empty((n_out, 1, height, width), dtype=torch.float32, device=features.device)
    block = min(1024, triton.next_power_of_2(max(hw, 1)))
    nblk = triton.cdiv(hw, block)
    blocks = torch.zeros((n_out, nblk), dtype=torch.int32, device=features.device)
    if n_out == 0 or hw == 0:
        return out, mask, blocks
    # inplace (out[:B] is the features, copies >= 1): the other copies first, from the unmodified features, then
    # copy 0 in place; otherwise one launch.
    launches = [(batch, n_out, False), (0, batch, True)] if inplace else [(0, n_out, False)]
    for j0, j1, in_place in launches:
        if j1 == j0:
            continue
        _feature_noise_kernel[(j1 - j0, nblk)](
            out,
            mask,
            blocks,
            features,
            seeds,
            std,
            weight if weight is not None else std,
            normal_table(features.device),
            stream_salt(Stream.FEATURE_NOISE),
            batch,
            channels,
            hw,
            nblk,
            j0,
            HAS_WEIGHT=weight is not None,
            INPLACE=in_place,
            BLOCK=block,
            enable_fp_fusion=False,
        )
    return out, mask, blocks
