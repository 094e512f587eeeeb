"""diffusion_step in Triton; mirrors anofast/reference/diffusion_step.py operation by operation (no FMA fusion)."""

import torch
import triton
import triton.language as tl

from anofast._rng import Stream, normal_table, stream_salt
from anofast.reference.diffusion_step import NUM_COEFS

from ._rng import bits, sample_key, stream_key, to_normal

_SALT = stream_salt(Stream.DIFFUSION)
_K = tl.constexpr(NUM_COEFS)


@triton.jit(do_not_specialize=["numel", "hw", "step", "salt"])
def _step_kernel(
    out_ptr,  # (B, C, H, W) float32
    x0_out_ptr,  # (B, C, H, W) float32 (unused without WANT_X0)
    x_ptr,
    pred_ptr,  # (B or 2B, C, H, W): conditional rows, then unconditional (GUIDED)
    known_ptr,
    mask_ptr,  # (B, 1, H, W)
    coefs_ptr,  # (B, K)
    seeds_ptr,  # (B,) int64
    x0_prev_ptr,  # (B, C, H, W) (unused without HAS_PREV)
    table_ptr,  # normal quantile table
    batch,
    numel,  # C * H * W
    hw,  # H * W
    step,
    salt,
    GUIDED: tl.constexpr,
    HAS_PREV: tl.constexpr,
    WANT_X0: tl.constexpr,
    BLOCK: tl.constexpr,
):
    b = tl.program_id(1).to(tl.int64)
    e = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    ok = e < numel
    k = coefs_ptr + b * _K
    g = tl.load(k + 0)
    p0 = tl.load(k + 1)
    p1 = tl.load(k + 2)
    clip = tl.load(k + 3)
    cx = tl.load(k + 4)
    c0 = tl.load(k + 5)
    cp = tl.load(k + 6)
    cz = tl.load(k + 7)
    ka = tl.load(k + 8)
    ks = tl.load(k + 9)
    off = b * numel + e
    pred = tl.load(pred_ptr + off, mask=ok, other=0.0)
    if GUIDED:
        u = tl.load(pred_ptr + batch * numel + off, mask=ok, other=0.0)
        pred = u + g * (pred - u)
    x = tl.load(x_ptr + off, mask=ok, other=0.0)
    x0 = p0 * x + p1 * pred
    x0 = tl.where(x0 > -clip, x0, -clip)
    x0 = tl.where(x0 < clip, x0, clip)
    skey = stream_key(sample_key(tl.load(seeds_ptr + b)), salt)
    counter = (step * numel + e) & 0xFFFFFFFF
    z = to_normal(bits(skey, counter), table_ptr)
    xs = cx * x + c0 * x0
    if HAS_PREV:
        xs = xs + cp * tl.load(x0_prev_ptr + off, mask=ok, other=0.0)
    xs = xs + cz * z
    kn = ka * tl.load(known_ptr + off, mask=ok, other=0.0) + ks * z
    m = tl.load(mask_ptr + b * hw + e % hw, mask=ok, other=0.0)
    tl.store(out_ptr + off, tl.where(m > 0.5, xs, kn), mask=ok)
    if WANT_X0:
        tl.store(x0_out_ptr + off, x0, mask=ok)


def diffusion_step_triton(x, pred, known, mask, coefs, seeds, step, x0_prev, want_x0):
    """Same contract as ``anofast.reference.diffusion_step.diffusion_step_reference``."""
    batch = x.shape[0]
    numel = x[0].numel() if batch else 0
    out = torch.empty_like(x)
    x0 = torch.empty_like(x) if want_x0 else None
    if batch == 0 or numel == 0:
        return out, x0
    block = min(1024, triton.next_power_of_2(numel))
    _step_kernel[(triton.cdiv(numel, block), batch)](
        out,
        x0 if x0 is not None else out,
        x,
        pred,
        known,
        mask,
        coefs,
        seeds,
        x0_prev if x0_prev is not None else x,
        normal_table(x.device),
        batch,
        numel,
        x.shape[2] * x.shape[3],
        step,
        _SALT,
        GUIDED=pred.shape[0] == 2 * batch,
        HAS_PREV=x0_prev is not None,
        WANT_X0=want_x0,
        BLOCK=block,
        enable_fp_fusion=False,
    )
    return out, x0
