"""Fused feature-level noise (SimpleNet, GLASS's Gaussian step, SuperSimpleNet): noise, weight, add and exact mask.

``out = f + n * (std * weight)`` with ``n`` the counter-RNG standard normal of (output sample seed,
``Stream.FEATURE_NOISE``, element index): one pass over the features, no full-size temporaries. Output sample
``j`` of ``N = copies * B`` reads input sample ``j % B`` (SuperSimpleNet's duplicated batch in the same pass);
with ``inplace=True`` (``copies == 1``) the features are overwritten and the pixels with a zero weight keep
their bits.
"""

from __future__ import annotations

import torch
from torch import Tensor

import anofast.reference.feature_noise  # noqa: F401  (registers the reference backend)
from anofast._dispatch import dispatch, num_threads, register_impl
from anofast._validate import check_param


def feature_noise(
    features: Tensor,
    seeds: Tensor,
    std: Tensor | float,
    weight: Tensor | None = None,
    *,
    copies: int = 1,
    inplace: bool = False,
    out: Tensor | None = None,
    backend: str = "auto",
) -> tuple[Tensor, Tensor, Tensor]:
    """Adds seeded Gaussian noise to feature maps under a per-pixel weight, with the exact mask of changed pixels.

    Args:
        features: ``(B, C, H, W)`` float32 feature maps (any finite values).
        seeds: ``(N,)`` int64 noise seed of each output sample, ``N = copies * B``.
        std: noise standard deviation, a float or an ``(N,)`` float32 tensor.
        weight: optional ``(N, 1, H, W)`` float32 per-pixel factor on the noise, broadcast over channels: a
            ``{0, 1}`` mask (SuperSimpleNet's Perlin mask) or per-pixel scales (SimpleNet's ``mix_noise``).
            None = 1 everywhere.
        copies: output samples per input sample (SuperSimpleNet duplicates its batch: 2); output ``j`` reads
            input ``j % B``.
        inplace: write into ``features`` (needs ``copies == 1`` and a contiguous tensor); pixels whose weight
            is 0 keep their bits (the C++ kernel touches only the pixels with a non-zero weight).
        out: optional ``(N, C, H, W)`` float32 contiguous buffer to write into (e.g. one reused across training
            steps: a fresh output costs a page fault per 4 KB on first touch, which can dominate on a busy
            machine). It may *start with* the features, ``features = out[:B]`` (SuperSimpleNet's duplicated batch
            without a second buffer: the backbone writes into the first half, the op fills the other copies and
            then adds the noise of copy 0 in place); any other overlap with ``features`` is an error.
        backend: ``auto``, ``reference``, ``cpp`` (CPU) or ``triton`` (CUDA).

    Autograd: with ``features.requires_grad`` the output is differentiable in the features (the identity, summed
    over copies), as SimpleNet / SuperSimpleNet need to train their adaptor; ``inplace`` and ``out`` starting
    with the features are then refused.

    Returns:
        ``out`` ``(N, C, H, W)`` float32 (``features`` itself with ``inplace``; bitwise the input where the
        weight is 0), ``mask`` ``(N, 1, H, W)`` float32 in {0, 1}: pixels where any channel's bits changed,
        ``count`` ``(N,)`` int64 pixels in ``mask``.

    Raises:
        TypeError, ValueError: bad shapes, dtypes, devices, a non-finite std or weight, more than 2**32
            elements per sample, or a NaN / infinite feature where the weight is non-zero (detected during the
            pass; with ``inplace`` the features are then already partly overwritten).

    Backends:
        ``reference`` (any device), ``cpp`` (CPU), ``triton`` (CUDA); all three agree bit for bit.

    Example:
        >>> f = torch.zeros(1, 4, 2, 3)
        >>> w = torch.tensor([[[[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]]])
        >>> out, mask, count = feature_noise(f, torch.tensor([7]), 0.015, w)
        >>> count.tolist(), bool((out[:, :, 0, 1] == 0).all())
        ([2], True)
    """
    if not isinstance(features, Tensor):
        raise TypeError(f"features must be a torch.Tensor, got {type(features).__name__}")
    if features.dtype != torch.float32:
        raise TypeError(f"features must be float32, got {features.dtype}")
    if features.dim() != 4:
        raise ValueError(f"features must have shape (B, C, H, W), got {tuple(features.shape)}")
    if isinstance(copies, bool) or not isinstance(copies, int) or copies < 1:
        raise ValueError(f"copies must be an int >= 1, got {copies!r}")
    batch, channels, height, width = features.shape
    if channels * height * width >= 2**32:
        raise ValueError(f"features must have fewer than 2**32 elements per sample, got {channels}x{height}x{width}")
    n_out = batch * copies
    dev = features.device
    if out is not None:
        if not isinstance(out, Tensor) or out.dtype != torch.float32 or not out.is_contiguous():
            raise TypeError(f"out must be a contiguous float32 tensor, got {getattr(out, 'dtype', type(out).__name__)}")
        if tuple(out.shape) != (n_out, channels, height, width) or out.device != dev:
            raise ValueError(f"out must have shape {(n_out, channels, height, width)} on {dev}, got "
                             f"{tuple(out.shape)} on {out.device}")
    if inplace:
        if copies != 1:
            raise ValueError(f"inplace=True needs copies == 1 (for more copies pass out= with features = "
                             f"out[:B]), got copies={copies}")
        if not features.is_contiguous():
            raise ValueError("inplace=True needs contiguous features")
        if out is not None:
            raise ValueError("pass either inplace=True or out=, not both")
        out = features
    elif out is not None and _overlaps(out, features):
        if not (features.is_contiguous() and out.data_ptr() == features.data_ptr()):
            raise ValueError("out overlaps features: it may only start with them (features = out[:B]); "
                             "otherwise use inplace=True or a separate buffer")
        inplace = True  # copy 0 is the features themselves
    else:
        features = features.contiguous()
    seeds = check_param(seeds, "seeds", torch.int64, (n_out,), dev, like="features")
    if isinstance(std, (int, float)) and not isinstance(std, bool):
        std = torch.full((n_out,), float(std), dtype=torch.float32, device=dev)
    std = check_param(std, "std", torch.float32, (n_out,), dev, like="features")
    if weight is not None:
        weight = check_param(weight, "weight", torch.float32, (n_out, 1, height, width), dev, like="features")
    if n_out:
        checks = [torch.isfinite(std).all()] + ([] if weight is None else [torch.isfinite(weight).all()])
        ok = torch.stack(checks).tolist()
        if not ok[0]:
            raise ValueError("std contains NaN or infinite values")
        if weight is not None and not ok[1]:
            raise ValueError("weight contains NaN or infinite values")
    impl = dispatch("feature_noise", dev, backend)
    if features.requires_grad and torch.is_grad_enabled():
        if inplace:
            raise ValueError("features require grad: inplace=True and out= starting with the features would "
                             "overwrite a tensor autograd needs; pass a separate out= or none")
        out, mask, count = _FeatureNoiseGrad.apply(features, impl, seeds, std, weight, copies, out)
    else:
        # Backends get inplace=True exactly when out's first B samples are the features; out is then given.
        out, mask, count = impl(features, seeds, std, weight, copies, inplace, out)
    if n_out and bool((count < 0).any()):
        raise ValueError("features contain NaN or infinite values where noise is added")
    return out, mask, count


class _FeatureNoiseGrad(torch.autograd.Function):
    """``out = f + n * w`` is the identity in ``f``: the gradient of each input sample is the sum over its copies
    (SimpleNet / SuperSimpleNet train their adaptor through the noisy features). No gradient for std / weight."""

    @staticmethod
    def forward(ctx, features, impl, seeds, std, weight, copies, out):  # type: ignore[override]
        ctx.copies = copies
        out, mask, count = impl(features.detach(), seeds, std, weight, copies, False, out)
        ctx.mark_non_differentiable(mask, count)
        return out, mask, count

    @staticmethod
    def backward(ctx, grad_out, grad_mask, grad_count):  # type: ignore[override]
        grad = grad_out.unflatten(0, (ctx.copies, -1)).sum(dim=0) if ctx.copies > 1 else grad_out
        return grad, None, None, None, None, None, None


def _overlaps(a: Tensor, b: Tensor) -> bool:
    """Whether the memory spans of two tensors intersect (each span: first to last element it can address)."""
    if a.device != b.device or a.numel() == 0 or b.numel() == 0:
        return False

    def span(t: Tensor) -> tuple[int, int]:
        last = sum((n - 1) * st for n, st in zip(t.shape, t.stride(), strict=True))
        return t.data_ptr(), t.data_ptr() + (last + 1) * t.element_size()

    (a0, a1), (b0, b1) = span(a), span(b)
    return a0 < b1 and b0 < a1


@register_impl("feature_noise", "cpp")
def _load_cpp():
    from anofast._backend import cpp_module
    from anofast._rng import Stream, normal_table

    fn = cpp_module().feature_noise_cpu

    def feature_noise_cpp(features, seeds, std, weight, copies, inplace, out):
        batch, channels, height, width = features.shape
        n_out = batch * copies
        if out is None:
            out = torch.empty((n_out, channels, height, width), dtype=torch.float32)
        mask = torch.empty((n_out, 1, height, width), dtype=torch.float32)
        blocks = torch.empty((n_out, _cpp_blocks(height, width)), dtype=torch.int32)
        fn(
            features.numpy(),
            seeds.numpy(),
            std.numpy(),
            None if weight is None else weight.numpy(),
            normal_table().numpy(),
            int(Stream.FEATURE_NOISE),
            inplace,
            out.numpy(),
            mask.numpy(),
            blocks.numpy(),
            num_threads(),
        )
        return out, mask, _counts(blocks)

    return feature_noise_cpp


def _cpp_blocks(height: int, width: int) -> int:
    """Row blocks per sample in the C++ kernel (about 4096 pixels each; mirrors feature_noise_cpu.cpp)."""
    rows = max(1, 4096 // max(width, 1))
    return -(-height // rows) if height else 0


def _counts(blocks: Tensor) -> Tensor:
    """Per-sample count from per-block counts; -1 when any block saw a non-finite feature."""
    bad = (blocks < 0).any(dim=1)
    return torch.where(bad, -1, blocks.sum(dim=1, dtype=torch.int64))


@register_impl("feature_noise", "triton")
def _load_triton():
    from anofast._kernels.feature_noise import feature_noise_triton

    def feature_noise_tr(features, seeds, std, weight, copies, inplace, out):
        out, mask, blocks = feature_noise_triton(features, seeds, std, weight, copies, inplace, out)
        return out, mask, _counts(blocks)

    return feature_noise_tr
