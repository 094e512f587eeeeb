"""Reference of the ``feature_noise`` op: Gaussian noise on feature maps under a per-pixel weight, with the exact mask.

Output sample ``j`` (of ``N = copies * B``) is a noisy copy of input sample ``b = j % B``. Per element
``(j, c, p)`` (``p = y * W + x``; float32, this operation order)::

    w = std[j] * weight[j, p]                      # std[j] alone when no weight is given
    n = to_normal(bits(stream_key(sample_key(seeds[j]), FEATURE_NOISE), c * H * W + p))
    out = f + n * w  if w != 0  else  f            # f exactly where the weight is 0
    mask[j, p] = any over c of bits(out) != bits(f)

``count[j]`` is the number of mask pixels, or -1 when a feature read at a pixel with ``w != 0`` is NaN or
infinite (the kernels see those values anyway, so they validate them during the pass and the caller raises).
"""

from __future__ import annotations

import torch
from torch import Tensor

from anofast import _rng
from anofast._dispatch import register_impl
from anofast._rng import Stream


def feature_noise_reference(
    features: Tensor, seeds: Tensor, std: Tensor, weight: Tensor | None, copies: int, inplace: bool,
    out: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """``(out (N, C, H, W), mask (N, 1, H, W) float32, count (N,) int64)``; see the module docstring.

    ``features`` ``(B, C, H, W)`` float32, ``seeds`` ``(N,)`` int64, ``std`` ``(N,)`` float32, ``weight``
    ``(N, 1, H, W)`` float32 or None. The result is written into ``out`` when given; with ``inplace`` (then
    always given) its first ``B`` samples are ``features``, which are read before anything is written.
    """
    batch, channels, height, width = features.shape
    n_out = batch * copies
    dev = features.device
    f = features.repeat(copies, 1, 1, 1) if copies > 1 else features
    w = std.view(n_out, 1, 1, 1)
    if weight is not None:
        w = w * weight
    else:
        w = w.expand(n_out, 1, height, width)
    skey = _rng.stream_key(_rng.sample_key(seeds.to(dev)), Stream.FEATURE_NOISE).view(n_out, 1, 1, 1)
    counter = torch.arange(channels * height * width, dtype=torch.int64, device=dev).view(1, channels, height, width)
    noise = _rng.to_normal(_rng.bits(skey, counter), _rng.normal_table(dev))
    active = w != 0
    result = torch.where(active, f + noise * w, f)
    changed = (result.view(torch.int32) != f.view(torch.int32)).any(dim=1, keepdim=True)
    bad = (active & ~torch.isfinite(f)).flatten(1).any(dim=1)
    count = torch.where(bad, -1, changed.flatten(1).sum(dim=1))
    if out is not None:
        out.copy_(result)
        result = out
    return result, changed.to(torch.float32), count


@register_impl("feature_noise", "reference")
def _load_reference():
    return feature_noise_reference
