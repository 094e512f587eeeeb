"""Data model shared by every generator."""

from __future__ import annotations

from typing import Any, NamedTuple

from torch import Tensor


class AnomalyBatch(NamedTuple):
    """Output of a generator.

    A NamedTuple, so ``torch.utils.data.default_collate`` batches it field by field.

    Attributes:
        image: ``(B, C, H, W)`` float32 in [0, 1] (``(C, H, W)`` for one dataset item).
        mask: ``(B, 1, H, W)`` float32 in {0, 1}: exactly the pixels where ``image`` differs from the input.
        label: ``(B,)`` int64, 1 where the mask is non-empty.
        params: per-sample record of what was drawn (dict of tensors with leading ``B``): replay it with
            the generator's ``apply``.
    """

    image: Tensor
    mask: Tensor
    label: Tensor
    params: dict[str, Any]
