"""Perlin-noise anomaly masks (DRAEM, GLASS, anomalib style): seeded parameters, noise, and masks with a bbox.

Sampling and application are separate: :func:`sample_perlin_params` draws everything random from per-sample
seeds (counter RNG, so a sample's parameters never depend on batch size or backend); :func:`perlin_noise` and
:func:`perlin_mask` are pure functions of ``(params, size)`` checked against ``anofast.reference.perlin``.

RNG counters (per sample, ``attempt`` = re-draw index ``k >= 0``):

- ``Stream.PERLIN_SCALAR``, counter ``16*k + n``: ``n = 3*l + 0`` exponent of ``ry``, ``3*l + 1`` exponent of
  ``rx``, ``3*l + 2`` rotation of lattice ``l``; ``6`` threshold; ``7`` combine code.
- ``Stream.PERLIN_GRADS``, counter ``2*G1*G1*k + (l*G1 + j)*G1 + i``: gradient angle of node ``[j, i]`` of
  lattice ``l``.

Lattice 0 is therefore the same whether one or two lattices are drawn.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch
from torch import Tensor

import anofast.reference.perlin  # noqa: F401  (registers the reference backends)
from anofast._dispatch import dispatch, num_threads, register_impl
from anofast._rng import Stream
from anofast._validate import check_range
from anofast.ops.rng import rng_uniform
from anofast.reference.perlin import G1, perlin_frame

_SCALAR_STRIDE = 16  # scalar counters per attempt
_GRAD_STRIDE = 2 * G1 * G1  # gradient counters per attempt (room for two lattices)
_TWO_PI = 6.2831854820251465  # float32(2*pi)
_DEG2RAD = 0.01745329238474369  # float32(pi/180)


@dataclass(frozen=True)
class PerlinParams:
    """Per-sample parameters of :func:`perlin_noise` / :func:`perlin_mask` (all tensors lead with ``B``).

    Attributes:
        res: ``(B, L, 2)`` int32 lattice cells ``(ry, rx)`` of lattice ``l`` in ``[1, G1-1]`` (the sampler draws
            powers of two, as DRAEM does; the kernels take any integer).
        grads: ``(B, L, G1, G1, 2)`` float32 unit gradients ``(gx, gy)`` at node ``[j (row), i (col)]``.
        rot: ``(B, L, 2)`` float32 ``(cos, sin)`` of the rotation of lattice ``l``'s sampling coordinates.
        threshold: ``(B,)`` float32; a pixel is in ``m_l`` where ``noise_l > threshold``.
        combine: ``(B,)`` int32: 0 = lattice 0 only, 1 = union of lattices 0 and 1, 2 = intersection.
    """

    res: Tensor
    grads: Tensor
    rot: Tensor
    threshold: Tensor
    combine: Tensor

    def to(self, device: torch.device | str) -> PerlinParams:
        """A copy with every tensor on ``device`` (``self`` if already there)."""
        if all(getattr(self, f.name).device == torch.device(device) for f in fields(self)):
            return self
        return PerlinParams(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def index(self, idx: Tensor) -> PerlinParams:
        """The parameters of rows ``idx`` (a ``(K,)`` index or ``(B,)`` bool tensor), e.g. to re-draw a subset."""
        return PerlinParams(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    @property
    def batch_size(self) -> int:
        """Number of samples ``B``."""
        return self.res.shape[0]


def sample_perlin_params(
    seeds: Tensor,
    *,
    res_exp_range: tuple[int, int] = (0, 6),
    rotation_range: tuple[float, float] = (-90.0, 90.0),
    threshold: float | tuple[float, float] = 0.5,
    lattices: int = 1,
    combine_probs: Sequence[float] = (1.0, 0.0, 0.0),
    attempt: int = 0,
    backend: str = "auto",
) -> PerlinParams:
    """Draws :class:`PerlinParams` from ``(B,)`` int64 per-sample seeds, on the CPU.

    Args:
        seeds: ``(B,)`` int64 per-sample seeds (``anofast.sample_seeds``).
        res_exp_range: ``(lo, hi)``: exponents ``a, b ~ U{lo..hi-1}`` independently, ``(ry, rx) = (2**a, 2**b)``;
            ``0 <= lo < hi <= 6``. DRAEM: ``(0, 6)``.
        rotation_range: degrees; ``theta ~ U(lo, hi)`` per lattice.
        threshold: a float, or a ``(lo, hi)`` range drawn per sample.
        lattices: 1 (DRAEM) or 2 (GLASS, anomalib ``dual_mask``).
        combine_probs: probabilities of combine codes (lattice 0 only, union, intersection); ignored when
            ``lattices == 1``. GLASS: ``(1/3, 1/3, 1/3)``; anomalib dual_mask: ``(0.5, 0.5, 0)``.
        attempt: re-draw index: attempt ``k`` gives an independent draw for the same seeds (0 = the default).
        backend: backend of the RNG draws (all give identical numbers).

    Returns:
        PerlinParams on the CPU.

    Raises:
        TypeError, ValueError: bad seeds or arguments.

    Example:
        >>> p = sample_perlin_params(torch.tensor([1, 2], dtype=torch.int64))
        >>> tuple(p.res.shape), tuple(p.grads.shape)
        ((2, 1, 2), (2, 1, 33, 33, 2))
    """
    if not isinstance(seeds, Tensor) or seeds.dtype != torch.int64 or seeds.dim() != 1:
        raise TypeError(f"seeds must be a (B,) int64 tensor, got {getattr(seeds, 'dtype', type(seeds))}")
    lo, hi = (int(v) for v in res_exp_range)
    if (lo, hi) != tuple(res_exp_range) or not 0 <= lo < hi or 2 ** (hi - 1) > G1 - 1:
        raise ValueError(
            f"res_exp_range must be integers 0 <= lo < hi <= {int(math.log2(G1 - 1)) + 1}, got {res_exp_range!r}"
        )
    rot_lo, rot_hi = check_range(rotation_range, "rotation_range")
    thr_lo, thr_hi = check_range(threshold, "threshold")
    if lattices not in (1, 2):
        raise ValueError(f"lattices must be 1 or 2, got {lattices!r}")
    probs = [float(p) for p in combine_probs]
    if len(probs) != 3 or min(probs) < 0 or abs(sum(probs) - 1.0) > 1e-6:
        raise ValueError(f"combine_probs must be 3 non-negative probabilities summing to 1, got {combine_probs!r}")
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 0:
        raise ValueError(f"attempt must be an int >= 0, got {attempt!r}")

    seeds = seeds.cpu()
    batch = seeds.shape[0]
    base = attempt * _SCALAR_STRIDE
    u = rng_uniform(seeds, Stream.PERLIN_SCALAR, base + 8, backend=backend)[:, base:]
    lat = u[:, :6].view(batch, 2, 3)[:, :lattices]
    span = hi - lo
    exps = lo + (lat[..., :2] * span).to(torch.int32).clamp_max(span - 1)
    res = (torch.ones_like(exps) << exps).contiguous()
    theta = (rot_lo + lat[..., 2] * (rot_hi - rot_lo)) * _DEG2RAD
    rot = torch.stack((theta.cos(), theta.sin()), dim=-1).contiguous()
    thr = (thr_lo + u[:, 6] * (thr_hi - thr_lo)).contiguous()
    if lattices == 1:
        combine = torch.zeros(batch, dtype=torch.int32)
    else:
        combine = (u[:, 7] >= probs[0]).to(torch.int32) + (u[:, 7] >= probs[0] + probs[1]).to(torch.int32)

    gbase = attempt * _GRAD_STRIDE
    n = lattices * G1 * G1
    angle = rng_uniform(seeds, Stream.PERLIN_GRADS, gbase + n, backend=backend)[:, gbase:] * _TWO_PI
    grads = torch.empty((batch, lattices, G1, G1, 2), dtype=torch.float32)
    torch.cos(angle, out=grads.view(batch, n, 2)[..., 0])  # written in place: no stacked temporaries
    torch.sin(angle, out=grads.view(batch, n, 2)[..., 1])
    return PerlinParams(res=res, grads=grads, rot=rot, threshold=thr, combine=combine.contiguous())


def _check_params(params: PerlinParams) -> tuple[int, int]:
    if not isinstance(params, PerlinParams):
        raise TypeError(f"params must be PerlinParams, got {type(params).__name__}")
    res, grads, rot, thr, comb = params.res, params.grads, params.rot, params.threshold, params.combine
    if res.dtype != torch.int32 or res.dim() != 3 or res.shape[-1] != 2 or res.shape[1] not in (1, 2):
        raise ValueError(f"params.res must be (B, L, 2) int32 with L in (1, 2), got {res.dtype} {tuple(res.shape)}")
    batch, lat = res.shape[:2]
    expect = {
        "grads": (grads, torch.float32, (batch, lat, G1, G1, 2)),
        "rot": (rot, torch.float32, (batch, lat, 2)),
        "threshold": (thr, torch.float32, (batch,)),
        "combine": (comb, torch.int32, (batch,)),
    }
    for name, (t, dtype, shape) in expect.items():
        if t.dtype != dtype or tuple(t.shape) != shape:
            raise ValueError(f"params.{name} must be {shape} {dtype}, got {tuple(t.shape)} {t.dtype}")
        if t.device != res.device:
            raise ValueError(f"params.{name} is on {t.device} but params.res is on {res.device}")
    if batch:
        # Few reductions, one sync: this runs on every call (min/max propagate NaN, so they test finiteness too).
        ints = torch.stack((res.amin(), res.amax(), comb.amin(), comb.amax())).tolist()
        floats = torch.stack((*grads.aminmax(), *rot.aminmax(), *thr.aminmax())).view(3, 2)
        finite = torch.isfinite(floats).all(1).tolist()
        if ints[0] < 1 or ints[1] > G1 - 1:
            raise ValueError(f"params.res must lie in [1, {G1 - 1}], got values in [{ints[0]}, {ints[1]}]")
        for name, ok in zip(("grads", "rot", "threshold"), finite, strict=True):
            if not ok:
                raise ValueError(f"params.{name} contains NaN or infinite values")
        if ints[2] < 0 or ints[3] > (2 if lat > 1 else 0):
            raise ValueError("params.combine must be 0, 1 or 2, and 0 when L == 1")
    return batch, lat


def _check_size(size: object) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in size)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise TypeError(f"size must be a (height, width) pair, got {size!r}") from None
    if height < 1 or width < 1 or height >= 2**24 or width >= 2**24:
        raise ValueError(f"size must be positive (and < 2**24 so pixel coordinates are exact floats), got {size!r}")
    return height, width


def perlin_noise(params: PerlinParams, size: tuple[int, int], *, backend: str = "auto") -> Tensor:
    """Renders the Perlin noise of every lattice, on the device of ``params``.

    Args:
        params: from :func:`sample_perlin_params` (moved with ``params.to(device)``).
        size: ``(H, W)``.
        backend: ``auto``, ``reference``, ``cpp`` (CPU) or ``triton`` (CUDA).

    Returns:
        ``(B, L, H, W)`` float32 noise in about ``[-1, 1]``, exactly 0 outside the rotated frame.

    Raises:
        TypeError, ValueError: bad params or size. BackendUnavailableError: an explicit backend cannot run.

    Backends:
        ``reference`` (any device), ``cpp`` (CPU), ``triton`` (CUDA); all three agree bit for bit.
    """
    height, width = _check_size(size)
    batch, lat = _check_params(params)
    fn = dispatch("perlin_noise", params.res.device, backend)
    frame = perlin_frame(params.res, params.rot, height, width)
    return fn(params.res.contiguous(), params.grads.contiguous(), frame, height, width)


def _bbox(extents: Tensor) -> Tensor:
    """``(B, 4)`` int32 ``(y0, x0, y1, x1)`` (exclusive ends, zeros when empty) from per-row extents."""
    height = extents.shape[1]
    first, last = extents[..., 0], extents[..., 1]
    rows = last > 0
    y0 = rows.to(torch.uint8).argmax(1)
    y1 = height - rows.flip(1).to(torch.uint8).argmax(1)
    box = torch.stack((y0, first.min(1).values.long(), y1, last.max(1).values.long()), dim=1)
    return torch.where(rows.any(1, keepdim=True), box, 0).to(torch.int32)


def perlin_mask(
    params: PerlinParams,
    size: tuple[int, int],
    *,
    foreground: Tensor | None = None,
    apply: Tensor | None = None,
    device: torch.device | str | None = None,
    backend: str = "auto",
) -> tuple[Tensor, Tensor]:
    """Thresholds and combines the Perlin noise into binary masks, with each mask's bounding box.

    Args:
        params: from :func:`sample_perlin_params`; moved to the output device.
        size: ``(H, W)``.
        foreground: optional ``(B, 1, H, W)`` float (or bool): the mask is kept only where ``foreground > 0.5``.
        apply: optional ``(B,)`` bool: rows with False get an all-zero mask (and cost nothing).
        device: output device; default: the foreground's device, else the device of ``params``.
        backend: ``auto``, ``reference``, ``cpp`` (CPU) or ``triton`` (CUDA).

    Returns:
        ``mask`` ``(B, 1, H, W)`` float32 in {0, 1} and ``bbox`` ``(B, 4)`` int32 ``(y0, x0, y1, x1)`` of its
        nonzero pixels with exclusive ends, ``(0, 0, 0, 0)`` for an empty mask.

    Raises:
        TypeError, ValueError: bad params, size, foreground or apply. BackendUnavailableError: see ``dispatch``.

    Backends:
        ``reference`` (any device), ``cpp`` (CPU), ``triton`` (CUDA); all three agree bit for bit.

    Example:
        >>> p = sample_perlin_params(torch.tensor([7], dtype=torch.int64))
        >>> mask, bbox = perlin_mask(p, (64, 64))
        >>> mask.shape, bbox.shape
        (torch.Size([1, 1, 64, 64]), torch.Size([1, 4]))
    """
    height, width = _check_size(size)
    batch, _ = _check_params(params)
    if device is None:
        device = foreground.device if isinstance(foreground, Tensor) else params.res.device
    device = torch.device(device)
    fg = None
    if foreground is not None:
        if not isinstance(foreground, Tensor):
            raise TypeError(f"foreground must be a torch.Tensor or None, got {type(foreground).__name__}")
        if tuple(foreground.shape) != (batch, 1, height, width):
            raise ValueError(
                f"foreground must have shape ({batch}, 1, {height}, {width}), got {tuple(foreground.shape)}"
            )
        if not (foreground.is_floating_point() or foreground.dtype == torch.bool):
            raise TypeError(f"foreground must be float or bool, got {foreground.dtype}")
        fg = foreground.to(device=device, dtype=torch.float32).reshape(batch, height, width).contiguous()
        if foreground.is_floating_point() and not bool(torch.isfinite(fg).all()):
            raise ValueError("foreground contains NaN or infinite values")
    if apply is None:
        app = torch.ones(batch, dtype=torch.bool, device=device)
    else:
        if not isinstance(apply, Tensor) or apply.dtype != torch.bool or tuple(apply.shape) != (batch,):
            raise ValueError(
                f"apply must be a ({batch},) bool tensor, got "
                f"{getattr(apply, 'dtype', type(apply).__name__)} {tuple(getattr(apply, 'shape', ()))}"
            )
        app = apply.to(device).contiguous()
    fn = dispatch("perlin_mask", device, backend)
    p = params.to(device)
    frame = perlin_frame(p.res, p.rot, height, width)
    mask, extents = fn(
        p.res.contiguous(),
        p.grads.contiguous(),
        frame,
        p.threshold.contiguous(),
        p.combine.contiguous(),
        fg,
        app,
        height,
        width,
    )
    return mask, _bbox(extents)


@register_impl("perlin_noise", "cpp")
def _load_noise_cpp():
    from anofast._backend import cpp_module

    fn = cpp_module().perlin_noise_cpu

    def perlin_noise_cpp(res: Tensor, grads: Tensor, frame: Tensor, height: int, width: int) -> Tensor:
        out = torch.empty((res.shape[0], res.shape[1], height, width), dtype=torch.float32)
        fn(res.numpy(), grads.numpy(), frame.numpy(), out.numpy(), num_threads())
        return out

    return perlin_noise_cpp


@register_impl("perlin_mask", "cpp")
def _load_mask_cpp():
    from anofast._backend import cpp_module

    fn = cpp_module().perlin_mask_cpu

    def perlin_mask_cpp(res, grads, frame, threshold, combine, foreground, apply, height, width):
        batch = res.shape[0]
        mask = torch.empty((batch, 1, height, width), dtype=torch.float32)
        extents = torch.empty((batch, height, 2), dtype=torch.int32)
        fn(
            res.numpy(),
            grads.numpy(),
            frame.numpy(),
            threshold.numpy(),
            combine.numpy(),
            None if foreground is None else foreground.numpy(),
            apply.to(torch.uint8).numpy(),
            mask.numpy(),
            extents.numpy(),
            num_threads(),
        )
        return mask, extents

    return perlin_mask_cpp


@register_impl("perlin_noise", "triton")
def _load_noise_triton():
    from anofast._kernels.perlin import perlin_noise_triton

    return perlin_noise_triton


@register_impl("perlin_mask", "triton")
def _load_mask_triton():
    from anofast._kernels.perlin import perlin_mask_triton

    return perlin_mask_triton
