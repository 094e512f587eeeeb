"""Anomalies on unorganized point clouds (METHODS.md 6.4-6.8): bulges, dents, holes, cuts and debris.

A cloud's anomaly is a few *regions*: balls around seed points drawn from the counter RNG
(``Stream.POINTCLOUD``). A ball's radius is either a fraction of the cloud's bounding-box diagonal
(``region="radius"``) or the distance to the seed's k-th nearest point with ``k`` a fraction of the cloud
(``region="knn"``: the ball then holds that share of the points whatever the density). Per region kind:

- ``bulge`` / ``dent``: every point of the ball moves along its *signed* normal by ``s * A * K(d / r)``
  (``s = +1`` / ``-1``, ``A = height * r``, ``K`` a smooth kernel with ``K(0) = 1`` and ``K(1) = 0``, so the
  edge has no cliff). This fixes PO3AD's ``|n|`` (a bulge that becomes a shear) and Patch-Gen's unsorted
  spikes. ``one_sided=True`` leaves points whose normal faces away from the seed's (the other sheet of a thin
  part) untouched.
- ``hole``: the ball's points are removed; ``cut``: the points of a slab through the seed (perpendicular to a
  random tangent direction, inside the ball) are removed. The remaining points within ``rim * r`` of the
  removed set are labelled (they are where the defect is, as Real3D-AD's "sink" ground truth).
- ``debris``: points added above the region: anchors drawn in the ball, lifted along their normal and jittered
  with counter-RNG Gaussians.

Normals are the smallest-eigenvalue eigenvector of the covariance of each point's ``normal_knn`` nearest
neighbours (open3d's KD-tree, ``open3d.core.nns``), as open3d's ``estimate_normals``, computed only for the
points a region needs (open3d's whole-cloud ``estimate_normals`` costs about 2.5 s per 100k points on the
2-core reference machine). The KD-tree is built over the points near the region only, and the result is
checked to equal the whole-cloud kNN (the tree grows until it does), so a normal depends on the cloud alone.
Orientation: ``orient="outward"`` flips each normal away from the cloud's centroid (complete objects);
``orient="camera"`` towards ``camera`` (single-view scans in camera coordinates, camera at the origin).

Labels: 1 for moved points (exactly those whose coordinates changed), the rim of removed material, and added
points; every other point is bit-identical to the input. Same seed, same result: the draws come from the
counter RNG, the neighbour search is exact and every step is a fixed-order numpy computation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor

from anofast import _rng
from anofast._rng import Stream
from anofast._validate import check_probability, check_range

KINDS = ("bulge", "dent", "hole", "cut", "debris")
KERNELS = ("poly", "cosine", "gaussian", "linear")
PRESETS = {
    "default": {},
    "surface": {"kinds": ("bulge", "dent")},
    "missing": {"kinds": ("hole", "cut")},
}
MAX_REGIONS = 8
MAX_DEBRIS = 8192
# Counters on Stream.POINTCLOUD (fixed: adding a draw must never shift another).
_COIN, _N_REGIONS = 0, 1
_REGION_BASE, _REGION_STRIDE = 8, 8  # region r's scalars at 8 + 8 r + j
_KIND, _CENTER, _SIZE, _HEIGHT, _ANGLE, _WIDTH, _DEBRIS = range(7)
_N_SCALARS = _REGION_BASE + _REGION_STRIDE * MAX_REGIONS
_DEBRIS_BASE, _DEBRIS_STRIDE = 1 << 20, 1 << 16  # region r's debris point k at base + r * stride + 8 k + j
_GAUSS_SIGMA = 0.4


def _open3d() -> Any:
    try:
        import open3d
    except ImportError as e:
        raise ImportError(
            f"point-cloud anomalies need open3d (KD-tree and .pcd/.ply I/O): pip install 'anofast[3d]' ({e})"
        ) from None
    return open3d


def kernel(name: str, t: np.ndarray) -> np.ndarray:
    """Radial profile ``K(t)`` for ``t = d / r`` in [0, 1]: 1 at the centre, 0 at and beyond the edge.

    ``poly`` = ``(1 - t^2)^2`` (zero slope at the edge), ``cosine`` = ``(1 + cos(pi t)) / 2``, ``gaussian`` =
    ``exp(-t^2 / (2 * 0.4^2))`` shifted and rescaled to reach 0 at ``t = 1``, ``linear`` = ``1 - t`` (PO3AD).
    """
    t = np.clip(t, 0.0, 1.0)
    if name == "poly":
        u = 1.0 - t * t
        return u * u
    if name == "cosine":
        return 0.5 * (1.0 + np.cos(np.pi * t))
    if name == "gaussian":
        e1 = math.exp(-0.5 / _GAUSS_SIGMA**2)
        return (np.exp(-0.5 * (t / _GAUSS_SIGMA) ** 2) - e1) / (1.0 - e1)
    if name == "linear":
        return 1.0 - t
    raise ValueError(f"kernel must be one of {KERNELS}, got {name!r}")


@dataclass(frozen=True)
class PointCloudParams:
    """Per-cloud draws of :meth:`PointCloudAnomaly.sample_params` (they do not depend on the cloud).

    Attributes:
        seeds: ``(B,)`` int64 per-cloud seeds.
        apply: ``(B,)`` bool, False = the cloud stays normal.
        n_regions: ``(B,)`` int64 number of regions used (the first ``n_regions`` columns below).
        kind: ``(B, R)`` int64 index into :data:`KINDS`.
        center: ``(B, R)`` float32 in [0, 1): the seed point is ``floor(center * N)``.
        size: ``(B, R)`` float32 region fraction (``region="knn"``) or radius / diagonal (``"radius"``).
        height: ``(B, R)`` float32 amplitude as a fraction of the region radius (unsigned).
        angle: ``(B, R)`` float32 direction of a cut in the seed's tangent plane, radians.
        width: ``(B, R)`` float32 width of a cut as a fraction of the region radius.
        debris: ``(B, R)`` int64 number of added points of a debris region.
    """

    seeds: Tensor
    apply: Tensor
    n_regions: Tensor
    kind: Tensor
    center: Tensor
    size: Tensor
    height: Tensor
    angle: Tensor
    width: Tensor
    debris: Tensor

    def __len__(self) -> int:
        return int(self.seeds.shape[0])


class PointCloudResult(NamedTuple):
    """One anomalous cloud.

    Attributes:
        points: ``(N', 3)`` in the input's type (numpy array or torch tensor, same dtype; numpy float64 for an
            open3d cloud): kept points (in input order), then added points.
        labels: ``(N',)`` int64 0/1: 1 for moved, rim and added points.
        index: ``(N',)`` int64 index of each point in the input, -1 for added points.
        normals: ``(N', 3)`` float32 unit normals of the *output* cloud (``return_normals=True``), else None.
        colors: ``(N', 3)`` colours carried over from an open3d cloud (added points take their anchor's), or None.
        params: per-cloud record: seed, applied, kinds, center_index, center, radius, height (signed, in the
            cloud's units), n_moved, n_removed, n_added, scale (bounding-box diagonal).
    """

    points: Any
    labels: Any
    index: Any
    normals: Any
    colors: Any
    params: dict[str, Any]

    def to_open3d(self) -> Any:
        """The result as an ``open3d.geometry.PointCloud`` (with colours and normals where present)."""
        o3d = _open3d()
        pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(_numpy(self.points).astype(np.float64)))
        if self.colors is not None:
            pc.colors = o3d.utility.Vector3dVector(np.asarray(self.colors, dtype=np.float64))
        if self.normals is not None:
            pc.normals = o3d.utility.Vector3dVector(np.asarray(self.normals, dtype=np.float64))
        return pc


class _Cloud(NamedTuple):
    points: np.ndarray  # (N, 3) as given (float32 / float64), never modified
    colors: np.ndarray | None
    kind: str  # "numpy", "torch" or "open3d"
    like: Tensor | None  # the torch input (dtype / device of the output)


def _numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)


def _as_cloud(x: Any, name: str) -> _Cloud:
    """Validates one cloud: numpy / torch ``(N, 3)`` float, or an open3d ``PointCloud`` (legacy or tensor)."""
    colors = None
    like = None
    if isinstance(x, Tensor):
        kind, like = "torch", x
        if not x.is_floating_point():
            raise TypeError(f"{name} must be a float tensor of shape (N, 3), got {x.dtype}")
        pts = x.detach().cpu().numpy()
    elif isinstance(x, np.ndarray):
        kind, pts = "numpy", x
        if not np.issubdtype(x.dtype, np.floating):
            raise TypeError(f"{name} must be a float array of shape (N, 3), got dtype {x.dtype}")
        if x.dtype not in (np.float32, np.float64):
            pts = x.astype(np.float64)
    elif type(x).__module__.startswith("open3d"):
        kind = "open3d"
        if hasattr(x, "to_legacy"):  # open3d.t.geometry.PointCloud
            x = x.to_legacy()
        if not hasattr(x, "points"):
            raise TypeError(f"{name}: expected an open3d PointCloud, got {type(x).__name__}")
        pts = np.asarray(x.points)
        if x.has_colors():
            colors = np.asarray(x.colors).copy()
    else:
        raise TypeError(
            f"{name} must be a (N, 3) numpy array, a torch tensor, an open3d PointCloud or a list of them, "
            f"got {type(x).__name__}"
        )
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"{name} must have shape (N, 3), got {tuple(pts.shape)}")
    if pts.shape[0] == 0:
        raise ValueError(f"{name} is an empty point cloud (0 points)")
    if pts.shape[0] < 4:
        raise ValueError(f"{name} has {pts.shape[0]} points; at least 4 are needed to estimate normals")
    bad = ~np.isfinite(pts).all(axis=1)
    if bad.any():
        raise ValueError(
            f"{name} contains {int(bad.sum())} NaN or infinite points; drop them first "
            f"(e.g. anofast.three_d.io.read_point_cloud(..., drop_invalid=True))"
        )
    return _Cloud(np.ascontiguousarray(pts), colors, kind, like)


def estimate_normals(points: np.ndarray, query: np.ndarray, knn: int = 30, *, dist: np.ndarray | None = None,
                     reach: float | None = None) -> np.ndarray:
    """Unoriented unit normals of ``points[query]`` from their ``knn`` nearest neighbours in ``points``.

    The normal is the eigenvector of the smallest eigenvalue of the neighbourhood's covariance (numpy
    ``eigh``; open3d's KD-tree finds the neighbours). With ``dist`` (every point's distance to a centre) and
    ``reach`` (a first guess of how far the neighbourhoods extend), the KD-tree is built over the points with
    ``dist < reach`` only; ``reach`` doubles until every query's k-th neighbour provably lies inside, so the
    result is the whole-cloud kNN.

    Returns:
        ``(len(query), 3)`` float64.
    """
    o3d = _open3d()
    n = points.shape[0]
    k = min(knn, n)
    query = np.asarray(query, dtype=np.int64)
    if query.size == 0:
        return np.zeros((0, 3))
    while True:
        cand = np.arange(n) if dist is None or reach is None else np.flatnonzero(dist < reach)
        whole = cand.size == n
        if cand.size >= k:
            nns = o3d.core.nns.NearestNeighborSearch(o3d.core.Tensor(points[cand]))
            nns.knn_index()
            nb, d2 = nns.knn_search(o3d.core.Tensor(points[query]), k)
            nb, d2 = cand[nb.numpy()], d2.numpy()
            if whole or bool((np.sqrt(d2[:, -1]) < reach - dist[query]).all()):
                break
        reach *= 2.0
    nbp = points[nb].astype(np.float64)
    centred = nbp - nbp.mean(axis=1, keepdims=True)
    cov = np.einsum("nki,nkj->nij", centred, centred)
    return np.linalg.eigh(cov)[1][:, :, 0]


def _orient(normals: np.ndarray, points: np.ndarray, toward: np.ndarray, outward: bool) -> np.ndarray:
    """Flips normals to face away from (``outward``) or towards ``toward``."""
    side = np.einsum("ni,ni->n", normals, (points - toward) if outward else (toward - points))
    return np.where((side < 0)[:, None], -normals, normals)


class PointCloudAnomaly:
    """Seeded anomalies on point clouds: bulges, dents, holes, cuts and debris, with per-point labels.

    Args:
        kinds: region kinds to draw from (:data:`KINDS`).
        kind_weights: relative probability of each kind (default: equal).
        p_anomaly: probability that a cloud gets an anomaly (others are returned unchanged, all labels 0).
        n_regions: ``(low, high)`` number of regions per cloud, uniform over the integers (at most 8).
        region: ``"knn"`` (the ball holds a ``region_fraction`` share of the points) or ``"radius"`` (radius =
            ``radius`` x the bounding-box diagonal).
        region_fraction: ``(low, high)`` share of the points in a region (``region="knn"``); Real3D-AD's real
            anomalies cover 1-5 % of the points.
        radius: ``(low, high)`` region radius as a fraction of the bounding-box diagonal (``region="radius"``).
        height: ``(low, high)`` bulge / dent amplitude as a fraction of the region radius (debris lift too).
        kernel: radial profile (:func:`kernel`): ``"poly"``, ``"cosine"``, ``"gaussian"`` or ``"linear"``.
        one_sided: only move points whose normal faces the same side as the seed's.
        cut_width: ``(low, high)`` width of a cut as a fraction of the region radius.
        debris: ``(low, high)`` number of points a debris region adds.
        rim: width of the labelled rim around removed material, as a fraction of the region radius.
        normal_knn: neighbours per normal.
        orient: ``"outward"`` (away from the centroid) or ``"camera"`` (towards ``camera``).
        camera: camera position for ``orient="camera"`` (scans in camera coordinates: the origin).
        return_normals: also estimate the normals of every output point (costly: a kNN query per point).
    """

    def __init__(
        self,
        *,
        kinds: Sequence[str] = KINDS,
        kind_weights: Sequence[float] | None = None,
        p_anomaly: float = 1.0,
        n_regions: tuple[int, int] | int = (1, 1),
        region: Literal["knn", "radius"] = "knn",
        region_fraction: tuple[float, float] | float = (0.01, 0.05),
        radius: tuple[float, float] | float = (0.04, 0.12),
        height: tuple[float, float] | float = (0.15, 0.5),
        kernel: str = "poly",
        one_sided: bool = True,
        cut_width: tuple[float, float] | float = (0.15, 0.35),
        debris: tuple[int, int] | int = (16, 64),
        rim: float = 0.25,
        normal_knn: int = 30,
        orient: Literal["outward", "camera"] = "outward",
        camera: Sequence[float] = (0.0, 0.0, 0.0),
        return_normals: bool = False,
    ):
        kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
        if not kinds or any(k not in KINDS for k in kinds):
            raise ValueError(f"kinds must be a non-empty subset of {KINDS}, got {kinds!r}")
        self.kinds = kinds
        w = np.ones(len(kinds)) if kind_weights is None else np.asarray(kind_weights, dtype=np.float64)
        if w.shape != (len(kinds),) or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"kind_weights must be {len(kinds)} non-negative numbers with a positive sum, "
                             f"got {kind_weights!r}")
        self.kind_weights = tuple(float(v) for v in w / w.sum())
        self.p_anomaly = check_probability(p_anomaly, "p_anomaly")
        self.n_regions = _int_range(n_regions, "n_regions", 1, MAX_REGIONS)
        if region not in ("knn", "radius"):
            raise ValueError(f"region must be 'knn' or 'radius', got {region!r}")
        self.region = region
        self.region_fraction = check_range(region_fraction, "region_fraction", 0.0, 1.0)
        self.radius = check_range(radius, "radius", 0.0, 10.0)
        if self.region_fraction[0] <= 0 or self.radius[0] <= 0:
            raise ValueError("region_fraction and radius must be > 0")
        self.height = check_range(height, "height", 0.0, 10.0)
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
        self.kernel = kernel
        self.one_sided = bool(one_sided)
        self.cut_width = check_range(cut_width, "cut_width", 0.0, 2.0)
        self.debris = _int_range(debris, "debris", 1, MAX_DEBRIS)
        if not (isinstance(rim, (int, float)) and 0.0 <= rim <= 10.0):
            raise ValueError(f"rim must be a number in [0, 10], got {rim!r}")
        self.rim = float(rim)
        if not isinstance(normal_knn, int) or isinstance(normal_knn, bool) or normal_knn < 3:
            raise ValueError(f"normal_knn must be an int >= 3, got {normal_knn!r}")
        self.normal_knn = normal_knn
        if orient not in ("outward", "camera"):
            raise ValueError(f"orient must be 'outward' or 'camera', got {orient!r}")
        self.orient = orient
        cam = np.asarray(camera, dtype=np.float64)
        if cam.shape != (3,) or not np.isfinite(cam).all():
            raise ValueError(f"camera must be 3 finite numbers, got {camera!r}")
        self.camera = cam
        self.return_normals = bool(return_normals)

    @classmethod
    def preset(cls, name: str = "default", **overrides: Any) -> PointCloudAnomaly:
        """A named configuration: ``default`` (every kind), ``surface`` (bulge, dent), ``missing`` (hole, cut)."""
        if name not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {name!r}")
        return cls(**{**PRESETS[name], **overrides})

    def config(self) -> dict[str, Any]:
        """JSON-serialisable options (for manifests)."""
        return {
            "kinds": list(self.kinds), "kind_weights": list(self.kind_weights), "p_anomaly": self.p_anomaly,
            "n_regions": list(self.n_regions), "region": self.region, "region_fraction": list(self.region_fraction),
            "radius": list(self.radius), "height": list(self.height), "kernel": self.kernel,
            "one_sided": self.one_sided, "cut_width": list(self.cut_width), "debris": list(self.debris),
            "rim": self.rim, "normal_knn": self.normal_knn, "orient": self.orient, "camera": self.camera.tolist(),
            "return_normals": self.return_normals,
        }

    def __repr__(self) -> str:
        return f"PointCloudAnomaly({', '.join(f'{k}={v!r}' for k, v in self.config().items())})"

    # ------------------------------------------------------------------------------------------------ params
    def sample_params(self, batch_size: int, seed: int | Tensor | None = None) -> PointCloudParams:
        """Draws every per-cloud random quantity from the clouds' seeds (see :meth:`__call__`)."""
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        seeds = _rng.resolve_seeds(seed, batch_size)
        u = _rng.uniform(seeds, Stream.POINTCLOUD, _N_SCALARS)
        lo, hi = self.n_regions
        n_regions = (lo + (u[:, _N_REGIONS] * (hi - lo + 1)).long()).clamp(max=hi)
        reg = u[:, _REGION_BASE:].view(batch_size, MAX_REGIONS, _REGION_STRIDE)
        cum = torch.tensor(np.cumsum(self.kind_weights)[:-1], dtype=torch.float32)
        picked = torch.bucketize(reg[..., _KIND].contiguous(), cum, right=True)
        kind = torch.tensor([KINDS.index(k) for k in self.kinds])[picked]

        def span(r: tuple[float, float], j: int) -> Tensor:
            return (r[0] + (r[1] - r[0]) * reg[..., j]).to(torch.float32)

        d0, d1 = self.debris
        return PointCloudParams(
            seeds=seeds, apply=u[:, _COIN] < self.p_anomaly, n_regions=n_regions, kind=kind,
            center=reg[..., _CENTER].contiguous(),
            size=span(self.region_fraction if self.region == "knn" else self.radius, _SIZE),
            height=span(self.height, _HEIGHT), angle=(2 * math.pi * reg[..., _ANGLE]).to(torch.float32),
            width=span(self.cut_width, _WIDTH),
            debris=(d0 + (reg[..., _DEBRIS] * (d1 - d0 + 1)).long()).clamp(max=d1),
        )

    # ------------------------------------------------------------------------------------------------- apply
    def __call__(self, points: Any, seed: int | Tensor | None = None) -> PointCloudResult | list[PointCloudResult]:
        """Makes anomalies on one cloud or a list of clouds.

        Args:
            points: a ``(N, 3)`` float numpy array or torch tensor, an open3d ``PointCloud``, or a list of them.
            seed: an int (cloud ``i`` of a list is keyed by ``anofast.sample_seeds(seed, 1, i)``), a ``(B,)`` int64
                tensor of per-cloud seeds (a cloud then does not depend on its position in the list), or None.

        Returns:
            A :class:`PointCloudResult` (a list of them for a list input).
        """
        single = not isinstance(points, (list, tuple))
        clouds = [points] if single else list(points)
        if not clouds:
            raise ValueError("points is an empty list of clouds")
        out = self.apply(clouds, self.sample_params(len(clouds), seed))
        return out[0] if single else out

    def apply(self, points: Sequence[Any], params: PointCloudParams) -> list[PointCloudResult]:
        """Applies drawn parameters to a list of clouds: a pure function of ``(points, params)``."""
        if not isinstance(params, PointCloudParams):
            raise TypeError(f"params must be PointCloudParams from sample_params, got {type(params).__name__}")
        if len(params) != len(points):
            raise ValueError(f"params are for {len(params)} clouds but {len(points)} clouds were given")
        clouds = [_as_cloud(p, f"points[{i}]" if len(points) > 1 else "points") for i, p in enumerate(points)]
        return [self._apply_one(c, params, b) for b, c in enumerate(clouds)]

    def _apply_one(self, cloud: _Cloud, params: PointCloudParams, b: int) -> PointCloudResult:
        pin = cloud.points
        p = pin.astype(np.float64)
        n = p.shape[0]
        seed = int(params.seeds[b])
        lo, hi = p.min(axis=0), p.max(axis=0)
        scale = float(np.linalg.norm(hi - lo))
        record: dict[str, Any] = {"seed": seed, "applied": bool(params.apply[b]), "kinds": [], "center_index": [],
                                  "center": [], "radius": [], "height": [], "scale": scale}
        disp = np.zeros((n, 3))
        removed = np.zeros(n, dtype=bool)
        rim = np.zeros(n, dtype=bool)
        added: list[np.ndarray] = []
        anchors: list[np.ndarray] = []
        if record["applied"]:
            if scale == 0.0:
                raise ValueError("points: every point is at the same position; there is no surface to deform")
            centroid = p.mean(axis=0)
            toward = centroid if self.orient == "outward" else self.camera
            for r in range(int(params.n_regions[b])):
                kind = KINDS[int(params.kind[b, r])]
                c_idx = min(int(float(params.center[b, r]) * n), n - 1)
                d = np.sqrt(((p - p[c_idx]) ** 2).sum(axis=1))
                if self.region == "knn":
                    k = min(n - 1, max(self.normal_knn, round(float(params.size[b, r]) * n)))
                    radius = float(np.partition(d, k)[k])
                else:
                    radius = float(params.size[b, r]) * scale
                region = np.flatnonzero(d < radius)
                amp = float(params.height[b, r]) * radius
                record["kinds"].append(kind)
                record["center_index"].append(c_idx)
                record["center"].append(p[c_idx].tolist())
                record["radius"].append(radius)
                record["height"].append(-amp if kind == "dent" else 0.0 if kind in ("hole", "cut") else amp)
                if radius <= 0.0:
                    continue

                def normals_of(idx: np.ndarray) -> np.ndarray:
                    nrm = estimate_normals(p, idx, self.normal_knn, dist=d, reach=2.0 * radius)
                    return _orient(nrm, p[idx], toward, self.orient == "outward")

                if kind in ("bulge", "dent"):
                    nrm = normals_of(np.concatenate([[c_idx], region]))
                    w = kernel(self.kernel, d[region] / radius)
                    if self.one_sided:
                        w = w * (nrm[1:] @ nrm[0] > 0)
                    disp[region] += (-amp if kind == "dent" else amp) * w[:, None] * nrm[1:]
                elif kind == "hole":
                    removed[region] = True
                    rim |= d < radius * (1.0 + self.rim)
                elif kind == "cut":
                    nc = normals_of(np.array([c_idx]))[0]
                    t = _tangent(nc, float(params.angle[b, r]))
                    half = 0.5 * float(params.width[b, r]) * radius
                    s = np.abs((p - p[c_idx]) @ t)
                    removed |= (s < half) & (d < radius)
                    rim |= (s < half + self.rim * radius) & (d < radius * (1.0 + self.rim))
                else:  # debris
                    pts, anchor = self._debris(p, disp, region, normals_of, seed, r, int(params.debris[b, r]), amp,
                                               radius)
                    added.append(pts)
                    anchors.append(anchor)
        return self._assemble(cloud, p, disp, removed, rim, added, anchors, record)

    def _debris(self, p, disp, region, normals_of, seed, r, count, amp, radius):
        """``count`` points lifted by U(0.25, 1) x ``amp`` along the normal of random region points, jittered by
        Gaussians of 0.1 x ``radius`` (counter RNG)."""
        base = _DEBRIS_BASE + r * _DEBRIS_STRIDE
        counters = base + 8 * torch.arange(count).view(-1, 1) + torch.arange(5).view(1, -1)
        skey = _rng.stream_key(_rng.sample_key(torch.tensor(seed)), Stream.POINTCLOUD)
        bits = _rng.bits(skey, counters)
        u = _rng.to_unit_float(bits[:, :2]).double().numpy()
        g = _rng.to_normal(bits[:, 2:], _rng.normal_table()).double().numpy()
        anchor = region[np.minimum((u[:, 0] * region.size).astype(np.int64), region.size - 1)]
        uniq, inv = np.unique(anchor, return_inverse=True)
        nrm = normals_of(uniq)[inv]
        lift = (0.25 + 0.75 * u[:, 1]) * amp
        return p[anchor] + disp[anchor] + lift[:, None] * nrm + 0.1 * radius * g, anchor

    def _assemble(self, cloud, p, disp, removed, rim, added, anchors, record) -> PointCloudResult:
        pin = cloud.points
        moved_idx = np.flatnonzero(disp.any(axis=1) & ~removed)
        out = pin.copy()
        out[moved_idx] = (p[moved_idx] + disp[moved_idx]).astype(pin.dtype)
        moved = np.zeros(len(pin), dtype=bool)
        moved[moved_idx] = (out[moved_idx] != pin[moved_idx]).any(axis=1)
        keep = np.flatnonzero(~removed)
        extra = np.concatenate(added).astype(pin.dtype) if added else np.zeros((0, 3), pin.dtype)
        anchor = np.concatenate(anchors) if anchors else np.zeros(0, np.int64)
        points = np.concatenate([out[keep], extra])
        labels = np.concatenate([(moved | rim)[keep], np.ones(len(extra), bool)]).astype(np.int64)
        index = np.concatenate([keep, np.full(len(extra), -1)]).astype(np.int64)
        colors = None if cloud.colors is None else np.concatenate([cloud.colors[keep], cloud.colors[anchor]])
        record.update(n_moved=int(moved[keep].sum()), n_removed=int(removed.sum()), n_added=int(len(extra)))
        normals = None
        if self.return_normals:
            toward = points.astype(np.float64).mean(axis=0) if self.orient == "outward" else self.camera
            normals = _orient(estimate_normals(points, np.arange(len(points)), self.normal_knn), points,
                              toward, self.orient == "outward").astype(np.float32)
        if cloud.kind == "torch":
            like = cloud.like
            return PointCloudResult(torch.from_numpy(points).to(like.device), torch.from_numpy(labels).to(like.device),
                                    torch.from_numpy(index).to(like.device),
                                    None if normals is None else torch.from_numpy(normals).to(like.device),
                                    None if colors is None else torch.from_numpy(colors), record)
        return PointCloudResult(points, labels, index, normals, colors, record)


def _tangent(normal: np.ndarray, angle: float) -> np.ndarray:
    """The unit vector at ``angle`` in the plane perpendicular to ``normal`` (a fixed basis of that plane)."""
    helper = np.array([1.0, 0.0, 0.0]) if abs(normal[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = np.cross(normal, helper)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(normal, e1)
    return math.cos(angle) * e1 + math.sin(angle) * e2


def _int_range(value: object, name: str, lo: int, hi: int) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    try:
        a, b = value  # type: ignore[misc]
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an int or a (low, high) pair of ints, got {value!r}") from None
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (a, b)) or not lo <= a <= b <= hi:
        raise ValueError(f"{name} must be ints with {lo} <= low <= high <= {hi}, got {value!r}")
    return a, b
