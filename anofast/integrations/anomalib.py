"""A drop-in for anomalib 2.x's ``anomalib.data.utils.generators.perlin`` module, built on anofast.

Switch by changing one import::

    # from anomalib.data.utils.generators.perlin import PerlinAnomalyGenerator, generate_perlin_noise
    from anofast.integrations.anomalib import PerlinAnomalyGenerator, generate_perlin_noise

Same constructor arguments, same call contract (``[C, H, W]`` or ``[B, C, H, W]`` float in [0, 1] ->
``(image, mask)`` with the input's shape and dtype, mask ``[1, H, W]`` / ``[B, 1, H, W]`` float32 {0, 1}), same
defaults (:meth:`anofast.PerlinAnomaly.anomalib`: probability 0.5, anomaly weight ``beta ~ U[0.2, 1.0]``,
rotation +-90 degrees, empty masks re-drawn up to 10 times, anomalib's augmentation list). Without a seed every
call draws its seed from torch's global RNG, so ``torch.manual_seed`` makes a run repeatable, as with anomalib.

Differences, on purpose:

- the mask marks exactly the pixels that changed (anomalib marks the whole Perlin region, even where the
  blended texture equals the image);
- the batch is generated in one pass (no per-image Python loop) and the anomaly-source folder is decoded once;
- without ``anomaly_source_path`` the source is anofast's bank of procedural textures (anomalib blends its
  grey Perlin noise);
- Perlin lattices span the image itself (anomalib pads to a power of two first, which changes the noise
  frequency of non-power-of-two sizes);
- input values outside [0, 1] (ImageNet-normalised tensors) raise ``ValueError``: de-normalise first, as
  anomalib's GLASS does.

Neither anomalib nor torchvision is imported.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import torch
from torch import Tensor

from anofast import _rng
from anofast._validate import check_range
from anofast.data.dataset import epoch_seed
from anofast.data.folder import list_images
from anofast.ops.perlin import perlin_noise, sample_perlin_params
from anofast.reference.perlin import G1
from anofast.synth.perlin import PerlinAnomaly

__all__ = ["PerlinAnomalyGenerator", "generate_perlin_noise"]


def _default_device(device: torch.device | str | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def generate_perlin_noise(height: int, width: int, scale: tuple[int, int] | None = None,
                          device: torch.device | str | None = None) -> Tensor:
    """Perlin noise ``[height, width]`` in about [-1, 1] (anomalib's function, on anofast's kernels).

    Args:
        height, width: size of the noise.
        scale: ``(cells along the height, cells along the width)``, integers in [1, 32]; None = powers of two
            ``2**U{0..5}`` drawn from torch's global RNG, as anomalib does.
        device: output device (default: CUDA when available, else the CPU, as anomalib).

    Raises:
        ValueError: a non-positive size or a scale outside [1, 32].
    """
    for name, v in (("height", height), ("width", width)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    dev = _default_device(device)
    if scale is None:
        exps = torch.randint(0, 6, (2,))
        res = (1 << int(exps[0]), 1 << int(exps[1]))
    else:
        try:
            res = (int(scale[0]), int(scale[1]))
        except (TypeError, ValueError, IndexError):
            raise ValueError(f"scale must be a pair of ints, got {scale!r}") from None
        if min(res) < 1 or max(res) > G1 - 1:
            raise ValueError(f"scale must hold ints in [1, {G1 - 1}], got {scale!r}")
    seeds = _rng.resolve_seeds(None, 1)  # from torch's global RNG
    params = sample_perlin_params(seeds, rotation_range=(0.0, 0.0))
    params = replace(params, res=torch.tensor([[res]], dtype=torch.int32))
    return perlin_noise(params.to(dev), (height, width))[0, 0]


class PerlinAnomalyGenerator(torch.nn.Module):
    """anomalib 2.x's ``PerlinAnomalyGenerator``, batched and seeded (see the module docstring).

    Args:
        anomaly_source_path: optional folder of anomaly-source images (searched recursively, e.g. DTD).
        probability: probability that an image gets an anomaly.
        blend_factor: anomaly weight ``beta``: a float, or a ``(low, high)`` range drawn uniformly per image.
        rotation_range: rotation of the Perlin noise in degrees.
        dual_mask: a second Perlin mask, united with the first half of the time.
        seed: optional int: call ``k`` then uses the seed ``anofast.data.epoch_seed(seed, k)``, independent of
            torch's RNG. None (the default): every call draws its seed from torch's global RNG.
        backend: anofast backend (``"auto"``, ``"reference"``, ``"cpp"``, ``"triton"``).

    Example:
        >>> gen = PerlinAnomalyGenerator(probability=1.0)
        >>> image, mask = gen(torch.rand(3, 64, 64))
        >>> tuple(image.shape), tuple(mask.shape)
        ((3, 64, 64), (1, 64, 64))
    """

    def __init__(
        self,
        anomaly_source_path: Path | str | None = None,
        probability: float = 0.5,
        blend_factor: float | tuple[float, float] = (0.2, 1.0),
        rotation_range: tuple[float, float] = (-90, 90),
        dual_mask: bool = False,
        *,
        seed: int | None = None,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.probability = probability
        self.blend_factor = blend_factor
        self.dual_mask = dual_mask
        self.anomaly_source_paths: list[Path] = []
        if anomaly_source_path is not None:
            if not isinstance(anomaly_source_path, (str, os.PathLike)):
                raise TypeError(f"anomaly_source_path must be a folder path, got {type(anomaly_source_path).__name__}")
            self.anomaly_source_paths = list_images(anomaly_source_path, recursive=True,
                                                    what="anomaly_source_path folder")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"seed must be an int or None, got {type(seed).__name__}")
        self.seed = seed
        self._calls = 0
        beta = check_range(blend_factor, "blend_factor", 0.0, 1.0)
        self.generator = PerlinAnomaly.anomalib(
            source=None if anomaly_source_path is None else str(anomaly_source_path), beta=beta,
            dual_mask=bool(dual_mask), p_anomaly=probability, rotation_range=tuple(rotation_range), backend=backend,
        )

    def forward(self, img: Tensor) -> tuple[Tensor, Tensor]:
        """Adds anomalies to an image ``[C, H, W]`` or a batch ``[B, C, H, W]`` (float in [0, 1]).

        Returns:
            ``(augmented, mask)``: the input's shape and float dtype, and ``[1, H, W]`` / ``[B, 1, H, W]``
            float32 {0, 1}, on the input's device.
        """
        if not isinstance(img, Tensor):
            raise TypeError(f"img must be a torch.Tensor, got {type(img).__name__}")
        if img.dim() not in (3, 4):
            raise ValueError(f"img must have shape [C, H, W] or [B, C, H, W], got {tuple(img.shape)}")
        single = img.dim() == 3
        batch = img.unsqueeze(0) if single else img
        if self.seed is None:
            seed = None  # drawn from torch's global RNG
        else:
            seed = epoch_seed(self.seed, self._calls)
            self._calls += 1
        out = self.generator(batch, seed=seed)
        image = out.image.to(img.dtype) if img.is_floating_point() else out.image
        mask = out.mask
        return (image[0], mask[0]) if single else (image, mask)

    def extra_repr(self) -> str:
        return (f"probability={self.probability}, blend_factor={self.blend_factor}, dual_mask={self.dual_mask}, "
                f"sources={len(self.anomaly_source_paths)}, seed={self.seed}")
