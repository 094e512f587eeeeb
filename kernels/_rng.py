"""Counter-based RNG in Triton; mirrors anofast/_rng.py and csrc/common/hash.h bit for bit."""

import triton
import triton.language as tl


@triton.jit
def hash32(x):
    """lowbias32 on uint32 values."""
    x = x.to(tl.uint32)
    x ^= x >> 16
    x *= 0x7FEB352D
    x ^= x >> 15
    x *= 0x846CA68B
    x ^= x >> 16
    return x


@triton.jit
def sample_key(seed):
    """uint32 key of an int64 seed."""
    s = seed.to(tl.uint64, bitcast=True)
    lo = (s & 0xFFFFFFFF).to(tl.uint32)
    hi = (s >> 32).to(tl.uint32)
    return hash32(hash32(lo) ^ hi)


@triton.jit
def stream_key(key, salt):
    """Key of one (sample, stream) pair; ``salt`` = ``anofast._rng.stream_salt(stream)``, passed from the host."""
    return hash32(key ^ salt.to(tl.uint32))


@triton.jit
def bits(skey, counter):
    """32 random bits for element ``counter`` of the stream ``skey``."""
    c = counter.to(tl.uint32)
    return hash32(hash32(c ^ skey) + skey)


@triton.jit
def uniform(skey, counter):
    """float32 in [0, 1) from the top 24 bits."""
    return (bits(skey, counter) >> 8).to(tl.float32) * 5.9604644775390625e-08


@triton.jit
def to_normal(b, table_ptr):
    """Standard normal from 32 random bits; ``table_ptr`` holds ``anofast._rng.normal_table(device)``."""
    b = b.to(tl.uint32)
    i = (b >> 18).to(tl.int32)
    f = (b & 0x3FFFF).to(tl.float32) * 3.814697265625e-06
    lo = tl.load(table_ptr + i)
    return lo + (tl.load(table_ptr + i + 1) - lo) * f


@triton.jit
def normal(skey, counter, table_ptr):
    """Standard normal for element ``counter`` of the stream ``skey``."""
    return to_normal(bits(skey, counter), table_ptr)
