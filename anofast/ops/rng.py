"""Batched counter-based draws: ``rng_uniform(seeds, stream, n)`` and ``rng_normal(seeds, stream, n)``.

Used to draw every per-sample parameter and every Gaussian; the three backends agree bit for bit, so a
number drawn by any of them is the same number.
"""

from __future__ import annotations

import torch
from torch import Tensor

from anofast._dispatch import dispatch, num_threads, register_impl


def _check(seeds: Tensor, stream: int, n: int) -> None:
    if not isinstance(seeds, Tensor) or seeds.dtype != torch.int64 or seeds.dim() != 1:
        raise TypeError(f"seeds must be a (B,) int64 tensor, got {getattr(seeds, 'dtype', type(seeds))}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 0 <= int(stream) < 2**31:
        raise ValueError(f"stream must be in [0, 2**31), got {stream}")


def rng_uniform(seeds: Tensor, stream: int, n: int, *, backend: str = "auto") -> Tensor:
    """Draws ``(B, n)`` float32 uniforms in [0, 1) for ``(B,)`` int64 ``seeds`` on stream ``stream``.

    Backends: ``reference`` (any device), ``cpp`` (CPU), ``triton`` (CUDA).

    Example:
        >>> rng_uniform(torch.tensor([1, 2]), 31, 3).shape
        torch.Size([2, 3])
    """
    _check(seeds, stream, n)
    return dispatch("rng_uniform", seeds.device, backend)(seeds.contiguous(), int(stream), int(n))


def rng_normal(seeds: Tensor, stream: int, n: int, *, backend: str = "auto") -> Tensor:
    """Draws ``(B, n)`` float32 standard normals (``anofast._rng.to_normal``; truncated at about 3.9 sigma).

    Element ``i`` of row ``b`` uses the same 32 bits as ``rng_uniform``'s, so the two must not share a stream.

    Example:
        >>> rng_normal(torch.tensor([1, 2]), 31, 3).shape
        torch.Size([2, 3])
    """
    _check(seeds, stream, n)
    return dispatch("rng_normal", seeds.device, backend)(seeds.contiguous(), int(stream), int(n))


@register_impl("rng_uniform", "reference")
def _load_reference():
    from anofast.reference.rng import rng_uniform_reference

    return rng_uniform_reference


@register_impl("rng_uniform", "cpp")
def _load_cpp():
    from anofast._backend import cpp_module

    fn = cpp_module().rng_uniform_cpu

    def rng_uniform_cpp(seeds: Tensor, stream: int, n: int) -> Tensor:
        out = torch.empty((seeds.shape[0], n), dtype=torch.float32)
        fn(seeds.numpy(), stream, out.numpy(), num_threads())
        return out

    return rng_uniform_cpp


@register_impl("rng_uniform", "triton")
def _load_triton():
    from anofast._kernels.rng import rng_uniform_triton

    return rng_uniform_triton


@register_impl("rng_normal", "reference")
def _load_normal_reference():
    from anofast.reference.rng import rng_normal_reference

    return rng_normal_reference


@register_impl("rng_normal", "cpp")
def _load_normal_cpp():
    from anofast._backend import cpp_module
    from anofast._rng import normal_table

    fn = cpp_module().rng_normal_cpu

    def rng_normal_cpp(seeds: Tensor, stream: int, n: int) -> Tensor:
        out = torch.empty((seeds.shape[0], n), dtype=torch.float32)
        fn(seeds.numpy(), stream, normal_table().numpy(), out.numpy(), num_threads())
        return out

    return rng_normal_cpp


@register_impl("rng_normal", "triton")
def _load_normal_triton():
    from anofast._kernels.rng import rng_normal_triton

    return rng_normal_triton
