"""Composition of generators: :class:`OneOf` picks one generator (or none) per sample.

The choice is drawn from the counter RNG (``Stream.COMPOSE``, counter 0 = the normal coin, counter 1 = which
generator) keyed by the sample's seed, and the chosen generator runs on its sub-batch with the samples' own
per-sample seeds. So sample ``i`` of ``OneOf(...)(images, seed=s)`` is exactly what the chosen generator makes
from ``images[i:i+1]`` with ``seed=anofast.sample_seeds(s, 1, i)``, for any batch size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from anofast import _rng
from anofast._rng import Stream
from anofast._validate import check_images, check_mask, check_probability
from anofast.ops.rng import rng_uniform
from anofast.types import AnomalyBatch

_NORMAL, _CHOICE = 0, 1  # counters on Stream.COMPOSE (anofast.foreground's plane fit uses counters >= 2**20)


@dataclass(frozen=True)
class OneOfParams:
    """What :meth:`OneOf.sample_params` drew.

    Attributes:
        seeds: ``(B,)`` int64 per-sample seeds (also the seeds each chosen generator gets).
        normal: ``(B,)`` bool, True = the sample is returned untouched (the ``p_normal`` coin).
        choice: ``(B,)`` int64 index of the generator (-1 for normal samples).
    """

    seeds: Tensor
    normal: Tensor
    choice: Tensor

    def __len__(self) -> int:
        return int(self.seeds.shape[0])


class OneOf:
    """Applies one generator per sample, chosen at random with ``weights``; ``p_normal`` of samples stay normal.

    Args:
        generators: generators called as ``g(images, seed=per_sample_seeds, foreground=fg)`` returning an
            :class:`~anofast.AnomalyBatch` (every anofast generator).
        weights: relative weight of each generator (default: equal).
        p_normal: probability that a sample is returned bit-identical to its input, label 0.
        names: provenance names (default: each generator's class name, numbered when repeated).

    ``params`` of the output holds, per sample, ``seed``, ``normal``, ``generator`` (index, -1 for normal
    samples), ``generator_name`` (a list of str, ``"normal"`` for normal samples) and the chosen generator's own
    params under ``"<name>.<key>"`` (rows of samples made by another generator hold zeros there).
    """

    def __init__(self, generators: Sequence[Callable[..., AnomalyBatch]], weights: Sequence[float] | None = None,
                 p_normal: float = 0.0, names: Sequence[str] | None = None):
        if isinstance(generators, (str, bytes)) or not isinstance(generators, Sequence) or len(generators) == 0:
            raise ValueError(f"generators must be a non-empty list of generators, got {generators!r}")
        for i, g in enumerate(generators):
            if not callable(g):
                raise TypeError(f"generators[{i}] is not callable: {g!r}")
        self.generators = list(generators)
        n = len(self.generators)
        if weights is None:
            weights = [1.0] * n
        w = [float(v) for v in weights]
        if len(w) != n or any(not (v >= 0.0) or v == float("inf") for v in w) or sum(w) <= 0.0:
            raise ValueError(f"weights must be {n} finite non-negative numbers with a positive sum, got {weights!r}")
        self.weights = w
        self.p_normal = check_probability(p_normal, "p_normal")
        if names is None:
            base = [type(g).__name__ for g in self.generators]
            names = [b if base.count(b) == 1 else f"{b}{i}" for i, b in enumerate(base)]
        names = [str(v) for v in names]
        if len(names) != n or len(set(names)) != n:
            raise ValueError(f"names must be {n} distinct strings, got {names!r}")
        self.names = names
        total = sum(w)
        cum = torch.tensor(w, dtype=torch.float64).cumsum(0) / total
        self._cum = cum.to(torch.float32)

    def config(self) -> dict[str, Any]:
        """JSON-serialisable options (for manifests)."""
        def sub(g: Any) -> Any:
            return g.config() if hasattr(g, "config") else repr(g)

        return {"one_of": [{"name": nm, "config": sub(g)} for nm, g in zip(self.names, self.generators, strict=True)],
                "weights": self.weights, "p_normal": self.p_normal}

    def __repr__(self) -> str:
        return f"OneOf({self.names}, weights={self.weights}, p_normal={self.p_normal})"

    def sample_params(self, batch_size: int, seed: int | Tensor | None = None) -> OneOfParams:
        """Draws which generator each sample gets (see :meth:`__call__` for ``seed``)."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        seeds = _rng.resolve_seeds(seed, batch_size)
        u = rng_uniform(seeds, Stream.COMPOSE, 2)
        normal = u[:, _NORMAL] < self.p_normal
        choice = torch.searchsorted(self._cum, u[:, _CHOICE].contiguous(), right=True)
        choice = choice.clamp_max(len(self.generators) - 1)
        choice = torch.where(normal, -1, choice.to(torch.int64))
        return OneOfParams(seeds=seeds, normal=normal, choice=choice)

    def __call__(self, images: Tensor, seed: int | Tensor | None = None, *,
                 foreground: Tensor | None = None) -> AnomalyBatch:
        """Makes anomalies on a batch, one chosen generator per sample.

        Args:
            images: ``(B, C, H, W)`` float in [0, 1] or uint8.
            seed: an int (sample ``i`` keyed by ``(seed, i)``), a ``(B,)`` int64 tensor of per-sample seeds, or
                None (torch's global RNG).
            foreground: optional ``(B, 1, H, W)`` mask, passed to the chosen generators (their sub-batch rows).
        """
        images = check_images(images)
        return self.apply(images, self.sample_params(images.shape[0], seed), foreground=foreground)

    def apply(self, images: Tensor, params: OneOfParams, *, foreground: Tensor | None = None) -> AnomalyBatch:
        """Runs each chosen generator on its samples: a pure function of ``(images, params, foreground)``."""
        images = check_images(images)
        if not isinstance(params, OneOfParams):
            raise TypeError(f"params must be OneOfParams from sample_params, got {type(params).__name__}")
        batch = images.shape[0]
        if len(params) != batch:
            raise ValueError(f"params are for {len(params)} samples but images has batch size {batch}")
        if foreground is not None:
            foreground = check_mask(foreground, "foreground", images)
        device = images.device
        out_image = images.clone()
        out_mask = torch.zeros((batch, 1, *images.shape[2:]), dtype=torch.float32, device=device)
        label = torch.zeros(batch, dtype=torch.int64, device=device)
        record: dict[str, Any] = {"seed": params.seeds.cpu(), "normal": params.normal.cpu(),
                                  "generator": params.choice.cpu()}
        for k, (gen, name) in enumerate(zip(self.generators, self.names, strict=True)):
            rows = (params.choice == k).nonzero().flatten()
            if rows.numel() == 0:
                continue
            rows_d = rows.to(device)
            fg = None if foreground is None else foreground[rows_d]
            res = gen(images[rows_d], seed=params.seeds[rows], foreground=fg)
            if not isinstance(res, AnomalyBatch):
                raise TypeError(f"generator {name!r} returned {type(res).__name__}, expected an AnomalyBatch")
            out_image[rows_d] = res.image.to(out_image.dtype)
            out_mask[rows_d] = res.mask.to(torch.float32)
            label[rows_d] = res.label.to(torch.int64)
            for key, value in res.params.items():
                _scatter_param(record, f"{name}.{key}", value, rows, batch)
        record["generator_name"] = ["normal" if c < 0 else self.names[c] for c in params.choice.tolist()]
        return AnomalyBatch(image=out_image, mask=out_mask, label=label, params=record)


def _scatter_param(record: dict[str, Any], key: str, value: Any, rows: Tensor, batch: int) -> None:
    """Puts a sub-batch's per-sample param into a ``(B, ...)`` tensor (zeros for the other rows)."""
    if isinstance(value, Tensor) and value.dim() >= 1 and value.shape[0] == rows.numel():
        value = value.cpu()
        full = record[key] = torch.zeros((batch, *value.shape[1:]), dtype=value.dtype)
        full[rows] = value
    elif isinstance(value, (list, tuple)) and len(value) == rows.numel():
        full = record.setdefault(key, [None] * batch)
        for r, v in zip(rows.tolist(), value, strict=True):
            full[r] = v
