"""rng_uniform and rng_normal in Triton; mirror anofast/reference/rng.py."""

import torch
import triton
import triton.language as tl

from anofast._rng import normal_table, stream_salt

from ._rng import normal, sample_key, stream_key, uniform


@triton.jit
def _rng_uniform_kernel(out_ptr, seeds_ptr, n, salt, BLOCK: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    i = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    inside = i < n
    skey = stream_key(sample_key(tl.load(seeds_ptr + b)), salt)
    tl.store(out_ptr + b * n + i, uniform(skey, i), mask=inside)


def rng_uniform_triton(seeds: torch.Tensor, stream: int, n: int) -> torch.Tensor:
    """Same contract as ``anofast.reference.rng.rng_uniform_reference``."""
    out = torch.empty((seeds.shape[0], n), dtype=torch.float32, device=seeds.device)
    if out.numel() == 0:
        return out
    block = min(1024, triton.next_power_of_2(n))
    grid = (seeds.shape[0], triton.cdiv(n, block))
    _rng_uniform_kernel[grid](out, seeds.contiguous(), n, stream_salt(stream), BLOCK=block)
    return out


@triton.jit
def _rng_normal_kernel(out_ptr, seeds_ptr, table_ptr, n, salt, BLOCK: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    i = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    inside = i < n
    skey = stream_key(sample_key(tl.load(seeds_ptr + b)), salt)
    tl.store(out_ptr + b * n + i, normal(skey, i, table_ptr), mask=inside)


def rng_normal_triton(seeds: torch.Tensor, stream: int, n: int) -> torch.Tensor:
    """Same contract as ``anofast.reference.rng.rng_normal_reference``."""
    out = torch.empty((seeds.shape[0], n), dtype=torch.float32, device=seeds.device)
    if out.numel() == 0:
        return out
    block = min(1024, triton.next_power_of_2(n))
    grid = (seeds.shape[0], triton.cdiv(n, block))
    _rng_normal_kernel[grid](out, seeds.contiguous(), normal_table(seeds.device), n, stream_salt(stream), BLOCK=block,
                             enable_fp_fusion=False)
    return out
