"""Depth-aware RGB-D anomalies on organized point clouds (METHODS.md §6.8): bulges, dents, grooves, holes and
combined geometry + colour defects that keep xyz, normals, shading and masks consistent.

Pipeline per batch (every step batched; the two per-pixel passes are ops with reference, C++ and Triton kernels):

1. ``normals`` of the input cloud; foreground = valid normals (∩ an optional plane-fit foreground from
   :func:`anofast.foreground.estimate`, ∩ the user's ``foreground``), eroded by ``erode`` pixels;
2. a footprint inside it: an ellipse, a Perlin blob (``perlin_mask``, windowed by an ellipse) or a curve (groove);
3. a smooth height field ``h = sign * A * K * T``: profile ``K`` in [0, 1] vanishing with its gradient at the
   footprint's edge, times a taper ``T`` = smoothstep of the distance to the foreground's edge, so there is no cliff;
4. ``depth_inject``: every point moves along its own viewing ray by ``h`` along its normal (holes: removed, xyz 0),
   normals are recomputed, the RGB is multiplied by the ratio of new to old Lambertian shading under a drawn light,
   with cavity darkening for dents and an optional colour change; ``mask_geo`` / ``mask_rgb`` are exactly the
   points / pixels that changed.

Randomness: ``Stream.DEPTH`` (per-sample scalars, counters below) and ``Stream.DEPTH_PIXELS`` (the Perlin
footprint's sub-seeds); nothing depends on batch size, thread count or backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor

from anofast import _rng
from anofast._rng import Stream
from anofast._validate import check_images, check_mask, check_probability, check_range, check_tensor
from anofast.ops.depth_inject import depth_inject
from anofast.ops.normals import check_xyz, normals
from anofast.ops.perlin import perlin_mask, sample_perlin_params
from anofast.ops.rng import rng_uniform
from anofast.reference import depth_inject as di

KINDS = ("bulge", "dent", "groove", "hole", "combined")
# Counters on Stream.DEPTH (fixed: adding a draw must never shift another).
(_COIN, _KIND, _CENTRE, _SIZE, _ASPECT, _ANGLE, _AMP, _PERLIN, _LIGHT_AZ, _LIGHT_EL, _AMBIENT, _COL_R, _COL_G,
 _COL_B, _COL_OPACITY, _BEND, _WIGGLE, _PHASE, _FREQ, _SIGN, _WIDTH) = range(21)
_N_SCALARS = 21
_TWO_PI = 6.283185307179586


class DepthAnomalyBatch(NamedTuple):
    """Output of :class:`DepthAnomaly` (a NamedTuple, so ``default_collate`` batches it field by field).

    Attributes:
        image: ``(B, 3, H, W)`` float32 in [0, 1].
        xyz: ``(B, 3, H, W)`` float32 organized cloud, same units and zero convention as the input.
        depth: ``(B, 1, H, W)`` float32 z channel of ``xyz`` (the depth map when depth was given).
        normals: ``(B, 3, H, W)`` float32 unit normals of ``xyz`` (0 where undefined).
        height: ``(B, 1, H, W)`` float32 requested signed height field (xyz units, > 0 towards the camera).
        mask_geo: ``(B, 1, H, W)`` float32 {0, 1}: exactly the points that changed.
        mask_rgb: ``(B, 1, H, W)`` float32 {0, 1}: exactly the pixels whose colour changed.
        mask: ``(B, 1, H, W)`` float32 {0, 1}: their union.
        label: ``(B,)`` int64, 1 where ``mask`` is non-empty.
        params: per-sample record (dict of tensors with leading ``B``).
    """

    image: Tensor
    xyz: Tensor
    depth: Tensor
    normals: Tensor
    height: Tensor
    mask_geo: Tensor
    mask_rgb: Tensor
    mask: Tensor
    label: Tensor
    params: dict[str, Any]


@dataclass(frozen=True)
class DepthAnomalyParams:
    """What :meth:`DepthAnomaly.apply` needs: per-sample seeds, the coin, the kind and the raw uniform draws
    (``u[:, c]`` for the counters of ``Stream.DEPTH``); the centre is resolved against the foreground at apply."""

    seeds: Tensor
    apply: Tensor
    kind: Tensor
    u: Tensor

    def __len__(self) -> int:
        return int(self.seeds.shape[0])


def xyz_from_depth(depth: Tensor, intrinsics: Any) -> Tensor:
    """Organized cloud from a depth map along the pinhole rays: ``x = (u - cx) * d / fx``, ``y = (v - cy) * d / fy``,
    ``z = d`` (``u``, ``v`` = column, row index); ``d = 0`` gives the invalid point 0.

    Args:
        depth: ``(B, 1, H, W)`` float depth (0 = invalid).
        intrinsics: ``(fx, fy, cx, cy)``: four numbers, a ``(4,)`` or a ``(B, 4)`` tensor (per sample).
    """
    d = check_tensor(depth, "depth")
    if d.dim() != 4 or d.shape[1] != 1 or d.shape[0] == 0:
        raise ValueError(f"depth must have shape (B, 1, H, W) with B >= 1, got {tuple(d.shape)}")
    if not d.is_floating_point():
        raise TypeError(f"depth must be a float tensor, got {d.dtype}")
    d = d.to(torch.float32)
    if not bool(torch.isfinite(d).all()):
        raise ValueError("depth contains NaN or infinite values; mark missing depth with 0")
    batch, _, height, width = d.shape
    k = torch.as_tensor(intrinsics, dtype=torch.float64) if not isinstance(intrinsics, Tensor) else intrinsics
    k = k.to(torch.float64).cpu()
    if k.shape == (4,):
        k = k.expand(batch, 4)
    if tuple(k.shape) != (batch, 4) or not bool(torch.isfinite(k).all()) or bool((k[:, :2] <= 0).any()):
        raise ValueError(f"intrinsics must be (fx, fy, cx, cy) with fx, fy > 0, per batch (4,) or per sample "
                         f"({batch}, 4), got shape {tuple(k.shape)}")
    k = k.to(torch.float32).to(d.device)
    u = torch.arange(width, dtype=torch.float32, device=d.device).view(1, 1, 1, width)
    v = torch.arange(height, dtype=torch.float32, device=d.device).view(1, 1, height, 1)
    fx, fy, cx, cy = (k[:, i].view(batch, 1, 1, 1) for i in range(4))
    return torch.cat(((u - cx) * d / fx, (v - cy) * d / fy, d), dim=1).contiguous()


def _erode3(m: Tensor) -> Tensor:
    """3 x 3 erosion of a ``(B, 1, H, W)`` bool mask (outside the image counts as background), separable."""
    out = m.clone()
    out[..., 1:, :] &= m[..., :-1, :]
    out[..., :-1, :] &= m[..., 1:, :]
    out[..., 0, :] = False
    out[..., -1, :] = False
    col = out.clone()
    out[..., :, 1:] &= col[..., :, :-1]
    out[..., :, :-1] &= col[..., :, 1:]
    out[..., :, 0] = False
    out[..., :, -1] = False
    return out


def _inner_distance(m: Tensor, steps: int) -> Tensor:
    """Chessboard distance (in pixels, capped at ``steps``) from each pixel of ``m`` to the outside of ``m``:
    0 on the mask's edge ring, ``k`` where ``k`` erosions keep it."""
    dist = torch.zeros(m.shape, dtype=torch.float32, device=m.device)
    for _ in range(steps):
        m = _erode3(m)
        if not bool(m.any()):
            break
        dist += m
    return dist


def _smoothstep(t: Tensor) -> Tensor:
    t = t.clamp(0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


class DepthAnomaly:
    """Batched depth-aware RGB-D anomaly generator (organized xyz or depth + intrinsics; no open3d needed).

    Args:
        kinds: subset of ``("bulge", "dent", "groove", "hole", "combined")`` drawn per sample.
        kind_probs: their probabilities (default: uniform).
        p_anomaly: probability that a sample gets an anomaly (others are returned bit-identical, label 0).
        amplitude: ``(low, high)`` height in metres (default 0.2-2 mm, §6.8).
        size: ``(low, high)`` semi-axis of the footprint as a fraction of the shorter image side.
        p_perlin: probability that a bulge / dent / combined footprint is a Perlin blob instead of an ellipse.
        groove_width: ``(low, high)`` half-width of a groove in pixels.
        xyz_unit: metres per xyz unit (1.0 for MVTec 3D-AD metres, 0.001 for millimetres).
        erode: foreground erosion in pixels, so that defects stay off silhouettes.
        taper: width in pixels of the smooth fade-out at the foreground's edge.
        plane_distance: if given (xyz units, e.g. 0.005 m), the background plane is removed from the foreground
            with :func:`anofast.foreground.estimate` (RANSAC on the border band).
        ambient: ``(low, high)`` ambient term of the shading model (> 0).
        light_elevation: ``(low, high)`` degrees between the light and the camera's viewing axis.
        cavity: darkening of dents, grooves and holes at full depth (0 = none).
        colour_opacity: ``(low, high)`` weight of the colour change of ``"combined"`` defects.
        eps_geo: metres; a point counts as moved (and is moved) when its depth changes by more than this.
        eps_rgb: a pixel's colour changes when its mean absolute change exceeds this.
        backend: ``"auto"``, ``"reference"``, ``"cpp"`` or ``"triton"`` for every op.
    """

    def __init__(
        self,
        *,
        kinds: Sequence[str] = KINDS,
        kind_probs: Sequence[float] | None = None,
        p_anomaly: float = 1.0,
        amplitude: tuple[float, float] | float = (0.2e-3, 2e-3),
        size: tuple[float, float] = (0.05, 0.15),
        p_perlin: float = 0.5,
        groove_width: tuple[float, float] = (1.5, 3.0),
        xyz_unit: float = 1.0,
        erode: int = 2,
        taper: int = 4,
        plane_distance: float | None = None,
        ambient: tuple[float, float] = (0.2, 0.6),
        light_elevation: tuple[float, float] = (0.0, 60.0),
        cavity: float = 0.5,
        colour_opacity: tuple[float, float] = (0.3, 0.8),
        eps_geo: float = 1e-6,
        eps_rgb: float = 0.5 / 255,
        backend: str = "auto",
    ):
        kinds = tuple(kinds)
        if not kinds or any(k not in KINDS for k in kinds):
            raise ValueError(f"kinds must be a non-empty subset of {KINDS}, got {kinds!r}")
        probs = [1.0 / len(kinds)] * len(kinds) if kind_probs is None else [float(p) for p in kind_probs]
        if len(probs) != len(kinds) or min(probs) < 0 or abs(sum(probs) - 1.0) > 1e-6:
            raise ValueError(f"kind_probs must be {len(kinds)} non-negative probabilities summing to 1")
        self.kinds, self.kind_probs = kinds, probs
        self.p_anomaly = check_probability(p_anomaly, "p_anomaly")
        self.amplitude = check_range(amplitude, "amplitude", 0.0)
        self.size = check_range(size, "size", 0.0, 1.0)
        self.p_perlin = check_probability(p_perlin, "p_perlin")
        self.groove_width = check_range(groove_width, "groove_width", 0.5)
        if not isinstance(xyz_unit, (int, float)) or not xyz_unit > 0:
            raise ValueError(f"xyz_unit must be > 0 (metres per xyz unit), got {xyz_unit!r}")
        self.xyz_unit = float(xyz_unit)
        for name, v in (("erode", erode), ("taper", taper)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} must be an int >= 0, got {v!r}")
        self.erode, self.taper = erode, taper
        self.plane_distance = plane_distance
        self.ambient = check_range(ambient, "ambient", 1e-3)
        self.light_elevation = check_range(light_elevation, "light_elevation", 0.0, 89.0)
        self.cavity = check_range(cavity, "cavity", 0.0, 1.0)[0]
        self.colour_opacity = check_range(colour_opacity, "colour_opacity", 0.0, 1.0)
        self.eps_geo = check_range(eps_geo, "eps_geo", 0.0)[0]
        self.eps_rgb = check_range(eps_rgb, "eps_rgb", 0.0, 1.0)[0]
        self.backend = backend

    def __repr__(self) -> str:
        return f"DepthAnomaly(kinds={self.kinds}, amplitude={self.amplitude}, xyz_unit={self.xyz_unit})"

    # ------------------------------------------------------------------------------------------------ params
    def sample_params(self, batch_size: int, seed: int | Tensor | None = None) -> DepthAnomalyParams:
        """Draws every per-sample random quantity from the seeds (see :meth:`__call__`)."""
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        seeds = _rng.resolve_seeds(seed, batch_size)
        u = rng_uniform(seeds, Stream.DEPTH, _N_SCALARS, backend=self.backend)
        cum = torch.tensor(self.kind_probs, dtype=torch.float64).cumsum(0)[:-1].to(torch.float32)
        pick = (u[:, _KIND:_KIND + 1] >= cum.view(1, -1)).sum(1)
        kind = torch.tensor([KINDS.index(k) for k in self.kinds])[pick]
        return DepthAnomalyParams(seeds=seeds, apply=u[:, _COIN] < self.p_anomaly, kind=kind, u=u)

    # ------------------------------------------------------------------------------------------------- apply
    def __call__(self, rgb: Tensor, xyz: Tensor | None = None, seed: int | Tensor | None = None, *,
                 depth: Tensor | None = None, intrinsics: Any = None,
                 foreground: Tensor | None = None) -> DepthAnomalyBatch:
        """Makes depth-aware anomalies on an RGB-D batch.

        Args:
            rgb: ``(B, 3, H, W)`` float in [0, 1] or uint8.
            xyz: ``(B, 3, H, W)`` organized cloud in the camera frame (0 = invalid), units ``xyz_unit``; or
            depth: ``(B, 1, H, W)`` depth (0 = invalid) with ``intrinsics`` ``(fx, fy, cx, cy)`` (per batch or
                ``(B, 4)``), converted with :func:`xyz_from_depth`.
            seed: an int (sample ``i`` keyed by ``(seed, i)``), a ``(B,)`` int64 tensor, or None.
            foreground: optional ``(B, 1, H, W)`` mask restricting the defects.

        Returns:
            :class:`DepthAnomalyBatch`.

        Raises:
            TypeError, ValueError: bad shapes or dtypes, NaN, a sample without any valid point, both or neither
                of ``xyz`` and ``depth``.
        """
        rgb = check_images(rgb, "rgb", channels=(3,))
        return self._apply(rgb, self._cloud(rgb, xyz, depth, intrinsics), self.sample_params(rgb.shape[0], seed),
                           foreground)

    def apply(self, rgb: Tensor, params: DepthAnomalyParams, xyz: Tensor | None = None, *,
              depth: Tensor | None = None, intrinsics: Any = None, foreground: Tensor | None = None
              ) -> DepthAnomalyBatch:
        """Applies drawn parameters: a pure function of the inputs and ``params``."""
        rgb = check_images(rgb, "rgb", channels=(3,))
        if not isinstance(params, DepthAnomalyParams):
            raise TypeError(f"params must be DepthAnomalyParams from sample_params, got {type(params).__name__}")
        if len(params) != rgb.shape[0]:
            raise ValueError(f"params are for {len(params)} samples but rgb has batch size {rgb.shape[0]}")
        return self._apply(rgb, self._cloud(rgb, xyz, depth, intrinsics), params, foreground)

    def _cloud(self, rgb: Tensor, xyz: Tensor | None, depth: Tensor | None, intrinsics: Any) -> Tensor:
        batch, _, height, width = rgb.shape
        if (xyz is None) == (depth is None):
            raise ValueError("pass exactly one of xyz= (an organized cloud) and depth= (with intrinsics=)")
        if depth is not None:
            if intrinsics is None:
                raise ValueError("depth= needs intrinsics=(fx, fy, cx, cy)")
            if tuple(depth.shape) != (batch, 1, height, width):
                raise ValueError(f"depth must have shape ({batch}, 1, {height}, {width}), got {tuple(depth.shape)}")
            xyz = xyz_from_depth(depth, intrinsics)
        cloud = check_xyz(xyz, batch=batch, size=(height, width), device=rgb.device)
        empty = ~(cloud != 0).flatten(1).any(1)
        if bool(empty.any()):
            which = "depth" if depth is not None else "xyz"
            raise ValueError(f"{which} has no valid point (all zero) in sample(s) {empty.nonzero().flatten().tolist()}")
        return cloud

    def _apply(self, rgb: Tensor, xyz: Tensor, params: DepthAnomalyParams,
               foreground: Tensor | None) -> DepthAnomalyBatch:
        batch, _, height, width = rgb.shape
        dev = rgb.device
        n_in = normals(xyz, backend=self.backend)
        fg = (n_in != 0).any(1, keepdim=True)
        if foreground is not None:
            fg &= check_mask(foreground, "foreground", rgb) > 0.5
        if self.plane_distance is not None:
            from anofast.foreground import estimate

            fg &= estimate(rgb, depth=xyz, plane_distance=self.plane_distance, seed=params.seeds, empty="keep") > 0.5
        for _ in range(self.erode):
            fg = _erode3(fg)
        taper = _smoothstep(_inner_distance(fg, self.taper) / max(self.taper, 1)) if self.taper else fg.float()

        u = params.u.to(dev)
        kind = params.kind.to(dev)
        count = fg.flatten(1).sum(1)
        apply = params.apply.to(dev) & (count > 0)
        # centre: the k-th pixel (row-major, k = floor(u * count)) of the untapered core, else of the foreground
        core = taper >= 1.0
        core = torch.where((core.flatten(1).any(1)).view(-1, 1, 1, 1), core, fg).flatten(1)
        n_core = core.sum(1)
        k = torch.minimum((u[:, _CENTRE] * n_core).long(), (n_core - 1).clamp(min=0))
        first = (core.cumsum(1) > k.view(-1, 1)).to(torch.uint8).argmax(1)
        cy, cx = (first // width).float(), (first % width).float()

        side = float(min(height, width))
        s0, s1 = self.size
        ax = (s0 + (s1 - s0) * u[:, _SIZE]) * side
        ax = torch.where(kind == KINDS.index("hole"), 0.5 * ax, ax).clamp(min=2.0)
        ay = (ax * (0.5 + 0.5 * u[:, _ASPECT])).clamp(min=2.0)
        theta = u[:, _ANGLE] * _TWO_PI
        yy = torch.arange(height, dtype=torch.float32, device=dev).view(1, height, 1) - cy.view(-1, 1, 1)
        xx = torch.arange(width, dtype=torch.float32, device=dev).view(1, 1, width) - cx.view(-1, 1, 1)
        cos, sin = theta.cos().view(-1, 1, 1), theta.sin().view(-1, 1, 1)
        along = xx * cos + yy * sin
        across = -xx * sin + yy * cos

        r2 = (along / ax.view(-1, 1, 1)) ** 2 + (across / ay.view(-1, 1, 1)) ** 2
        ellipse = (1.0 - r2).clamp(min=0.0) ** 2
        # groove: a bent, wiggling curve across ``along``; profile across it and fade at both ends
        length = 2.0 * ax.view(-1, 1, 1)
        bend = (u[:, _BEND] - 0.5).view(-1, 1, 1) * 2.0 / length
        wiggle = (u[:, _WIGGLE] * 2.0).view(-1, 1, 1)
        freq = (1.0 + 3.0 * u[:, _FREQ]).view(-1, 1, 1) * _TWO_PI / length
        curve = bend * along**2 + wiggle * torch.sin(freq * along + _TWO_PI * u[:, _PHASE].view(-1, 1, 1))
        g0, g1 = self.groove_width
        half = (g0 + (g1 - g0) * u[:, _WIDTH]).view(-1, 1, 1)
        groove = (1.0 - ((across - curve) / half) ** 2).clamp(min=0.0) ** 2
        groove = groove * (1.0 - (along / length) ** 2).clamp(min=0.0) ** 2

        profile = torch.where((kind == KINDS.index("groove")).view(-1, 1, 1), groove, ellipse).unsqueeze(1)
        perlin = (u[:, _PERLIN] < self.p_perlin) & ((kind == 0) | (kind == 1) | (kind == 4)) & apply
        if bool(perlin.any()):
            idx = perlin.nonzero().flatten()
            blob = self._perlin_profile(params.seeds[idx.cpu()], r2[idx], fg[idx])
            hit = blob.flatten(1).amax(1) > 0  # an empty blob (noise below threshold there) keeps the ellipse
            profile[idx[hit]] = blob[hit]
            perlin[idx[~hit]] = False

        amp_m = self.amplitude[0] + (self.amplitude[1] - self.amplitude[0]) * u[:, _AMP]
        amp = amp_m / self.xyz_unit
        sign = torch.where((kind == 0) | ((kind == 4) & (u[:, _SIGN] < 0.5)), 1.0, -1.0)
        weight = profile * taper * fg
        weight = torch.where(apply.view(-1, 1, 1, 1), weight, 0.0)
        height_field = ((sign * amp).view(-1, 1, 1, 1) * weight).to(torch.float32).contiguous()

        combined = (kind == 4) & apply
        alpha = None
        o0, o1 = self.colour_opacity
        opacity = o0 + (o1 - o0) * u[:, _COL_OPACITY]
        colour = u[:, _COL_R:_COL_B + 1]
        if bool(combined.any()):
            alpha = (torch.where(combined, opacity, 0.0).view(-1, 1, 1, 1) * weight).to(torch.float32).contiguous()

        e0, e1 = self.light_elevation
        elev = torch.deg2rad(e0 + (e1 - e0) * u[:, _LIGHT_EL])
        az = u[:, _LIGHT_AZ] * _TWO_PI
        light = torch.stack((elev.sin() * az.cos(), elev.sin() * az.sin(), -elev.cos()), 1)
        a0, a1 = self.ambient
        table = torch.zeros(batch, di.NPARAMS, dtype=torch.float32, device=dev)
        table[:, di.LX:di.LZ + 1] = light
        table[:, di.AMBIENT] = a0 + (a1 - a0) * u[:, _AMBIENT]
        table[:, di.EPS_GEO] = self.eps_geo / self.xyz_unit
        table[:, di.EPS_RGB3] = 3.0 * self.eps_rgb
        table[:, di.CAVITY] = torch.where(sign < 0, self.cavity, 0.0)
        table[:, di.INV_AMP] = 1.0 / amp
        table[:, di.COLOUR_R:di.COLOUR_B + 1] = colour
        table[:, di.HOLE] = (kind == KINDS.index("hole")).float()

        out_rgb, out_xyz, out_n, geo, col = depth_inject(rgb, xyz, n_in, height_field, table, alpha=alpha,
                                                         backend=self.backend)
        mask = torch.maximum(geo, col)
        label = (mask.flatten(1).amax(1) > 0).to(torch.int64)
        record = {
            "seed": params.seeds.cpu(), "applied": apply.cpu(), "kind": kind.cpu(), "perlin": perlin.cpu(),
            "centre": torch.stack((cy, cx), 1).cpu(), "semi_axes": torch.stack((ax, ay), 1).cpu(),
            "angle_deg": torch.rad2deg(theta).cpu(), "amplitude_m": (sign * amp_m).cpu(), "light": light.cpu(),
            "ambient": table[:, di.AMBIENT].cpu(), "colour": colour.cpu(),
            "colour_opacity": torch.where(combined, opacity, 0.0).cpu(),
        }
        return DepthAnomalyBatch(image=out_rgb, xyz=out_xyz, depth=out_xyz[:, 2:3].contiguous(), normals=out_n,
                                 height=height_field, mask_geo=geo, mask_rgb=col, mask=mask, label=label,
                                 params=record)

    def _perlin_profile(self, seeds: Tensor, r2: Tensor, fg: Tensor) -> Tensor:
        """Perlin blob profiles: ``perlin_mask`` (sub-seeds on ``Stream.DEPTH_PIXELS``) inside an ellipse window
        of 1.5 semi-axes, faded smoothly towards its edge by the distance inside the mask."""
        bits = _rng.uniform_bits(seeds, Stream.DEPTH_PIXELS, 2)
        sub = ((bits[:, 0] & 0x7FFFFFFF) << 32) | bits[:, 1]
        perlin = sample_perlin_params(sub, res_exp_range=(2, 5), threshold=0.2, rotation_range=(-90.0, 90.0),
                                      backend=self.backend)
        size = tuple(r2.shape[-2:])
        blob, _ = perlin_mask(perlin.to(r2.device), size, backend=self.backend)
        window = (r2 < 2.25).unsqueeze(1)
        inside = (blob > 0.5) & window & fg
        steps = 6
        return _smoothstep(_inner_distance(inside, steps) / steps)
