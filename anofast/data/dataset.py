"""A dataset wrapper that turns any image dataset into seeded synthetic-anomaly samples."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from anofast._rng import sample_seeds
from anofast.types import AnomalyBatch


def epoch_seed(seed: int, epoch: int) -> int:
    """The base seed of epoch ``epoch`` of a run seeded with ``seed`` (``seed`` itself for epoch 0).

    Other epochs take 63 bits of BLAKE2b over ``(seed, epoch)``, so epochs never share per-sample seeds in
    practice and the mapping is the same on every machine and Python version.
    """
    if epoch == 0:
        return seed
    digest = hashlib.blake2b(f"anofast-epoch:{seed}:{epoch}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


class SyntheticAnomalyDataset(Dataset):
    """Wraps a map-style image dataset; item ``i`` is the image of item ``i`` with a synthetic anomaly.

    The anomaly of item ``i`` is a pure function of ``(seed, epoch, i)``: it is the same for any
    DataLoader worker count, batch size or shuffling, and ``generator(images, seed=s)[i]`` of a batch equals
    ``dataset[i]`` of a wrapper built with ``seed=s`` (at epoch 0). Items collate with the default
    ``collate_fn`` into an :class:`~anofast.AnomalyBatch` of batched tensors.

    Args:
        dataset: a map-style dataset whose item is a ``(C, H, W)`` tensor (float in [0, 1] or uint8), a tuple /
            list whose first element is that image, or a dict holding it under ``image_key``.
        generator: an anofast generator, e.g. ``anofast.PerlinAnomaly.draem()``: called as
            ``generator(images, seed=seeds, foreground=fg)`` on a batch of one.
        seed: base seed of the run.
        image_key: key of the image in dict items.
        foreground_key: optional key (dict items) or index (tuple items) of a ``(1, H, W)`` or ``(H, W)``
            foreground mask: anomalies are then placed only on the foreground.

    Call :meth:`set_epoch` at the start of each epoch to get new anomalies every epoch (deterministically).
    The epoch lives in shared memory, so DataLoader workers, persistent ones included, see the update.
    """

    def __init__(
        self,
        dataset: Dataset,
        generator: Callable[..., AnomalyBatch],
        seed: int = 0,
        image_key: str = "image",
        foreground_key: str | int | None = None,
    ):
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}")
        if not callable(generator):
            raise TypeError(f"generator must be callable (e.g. anofast.PerlinAnomaly.draem()), got {generator!r}")
        self.dataset = dataset
        self.generator = generator
        self.seed = seed
        self.image_key = image_key
        self.foreground_key = foreground_key
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    def set_epoch(self, epoch: int) -> None:
        """Selects the anomalies of ``epoch`` (0 = the ones keyed by ``seed`` itself)."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch must be an int >= 0, got {epoch!r}")
        self._epoch.fill_(epoch)

    @property
    def epoch(self) -> int:
        """The current epoch (see :meth:`set_epoch`)."""
        return int(self._epoch.item())

    def sample_seed(self, index: int) -> Tensor:
        """``(1,)`` int64 per-sample seed of item ``index`` at the current epoch."""
        return sample_seeds(epoch_seed(self.seed, self.epoch), 1, index)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> AnomalyBatch:
        index = int(index)
        if index < 0:
            index += len(self)
        item = self.dataset[index]
        image = self._image(item, index)
        fg = self._foreground(item, index)
        out = self.generator(image.unsqueeze(0), seed=self.sample_seed(index), foreground=fg)
        params = {k: v[0] for k, v in out.params.items()}
        return AnomalyBatch(image=out.image[0], mask=out.mask[0], label=out.label[0], params=params)

    def _image(self, item: Any, index: int) -> Tensor:
        if isinstance(item, Tensor):
            image = item
        elif isinstance(item, Mapping):
            if self.image_key not in item:
                raise KeyError(f"item {index} has no key {self.image_key!r} (keys: {list(item)}); set image_key")
            image = item[self.image_key]
        elif isinstance(item, Sequence) and not isinstance(item, str) and len(item) > 0:
            image = item[0]
        else:
            raise TypeError(
                f"item {index} must be an image tensor, a tuple/list starting with one, or a dict; "
                f"got {type(item).__name__}"
            )
        if not isinstance(image, Tensor) or image.dim() != 3:
            shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
            raise TypeError(f"item {index}: the image must be a (C, H, W) tensor, got {shape}")
        return image

    def _foreground(self, item: Any, index: int) -> Tensor | None:
        if self.foreground_key is None:
            return None
        try:
            fg = item[self.foreground_key]
        except (KeyError, IndexError, TypeError):
            raise KeyError(f"item {index} has no foreground under {self.foreground_key!r}") from None
        if not isinstance(fg, Tensor) or fg.dim() not in (2, 3):
            raise TypeError(f"item {index}: the foreground must be a (1, H, W) or (H, W) tensor")
        return fg.reshape(1, 1, *fg.shape[-2:])

