"""PointCloudAnomaly: geometry consistency on synthetic scenes (plane, sphere, cylinder) and real scans,
labels, determinism (seed, list position, thread count) and input errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

pytest.importorskip("open3d", reason="point-cloud anomalies need open3d (pip install 'anofast[3d]')")

import anofast  # noqa: E402
from anofast.three_d.pointcloud import KINDS, PointCloudAnomaly, estimate_normals, kernel  # noqa: E402


def plane(n: int = 60) -> np.ndarray:
    """A jittered n x n grid on z = 0, 1 unit wide."""
    g = np.random.default_rng(0)
    u, v = np.meshgrid(np.linspace(0, 1, n), np.linspace(0, 1, n))
    xy = np.stack([u.ravel(), v.ravel()], 1) + g.uniform(-0.002, 0.002, (n * n, 2))
    return np.concatenate([xy, np.zeros((n * n, 1))], 1).astype(np.float32)


def sphere(n: int = 4000, radius: float = 0.5) -> np.ndarray:
    """A Fibonacci sphere around (0.1, -0.2, 0.3)."""
    i = np.arange(n) + 0.5
    phi = np.arccos(1 - 2 * i / n)
    theta = math.pi * (1 + 5**0.5) * i
    unit = np.stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)], 1)
    return (radius * unit + np.array([0.1, -0.2, 0.3])).astype(np.float64)


def cylinder(n_around: int = 80, n_along: int = 40, radius: float = 0.3) -> np.ndarray:
    """The side of a cylinder about the z axis, height 1."""
    a, z = np.meshgrid(np.linspace(0, 2 * math.pi, n_around, endpoint=False), np.linspace(0, 1, n_along))
    return np.stack([radius * np.cos(a).ravel(), radius * np.sin(a).ravel(), z.ravel()], 1).astype(np.float32)


def _changed(res, pts: np.ndarray) -> np.ndarray:
    kept = res.index >= 0
    return (np.asarray(res.points)[kept] != pts[res.index[kept]]).any(1)


def _expected_offset(res, pts: np.ndarray, kern: str = "poly") -> np.ndarray:
    """Per kept point, the kernel height ``A * K(d / r)`` the record says it should move by."""
    p = res.params
    c = np.asarray(p["center"][0])
    d = np.linalg.norm(pts[res.index].astype(np.float64) - c, axis=1)
    return abs(p["height"][0]) * kernel(kern, d / p["radius"][0])


def test_plane_bulge_moves_along_the_normal_by_the_kernel_height():
    pts = plane()
    gen = PointCloudAnomaly(kinds="bulge", orient="camera", camera=(0.5, 0.5, 3.0), region_fraction=0.05)
    res = gen(pts, seed=3)
    delta = res.points.astype(np.float64) - pts[res.index]
    assert np.abs(delta[:, :2]).max() == 0  # along z only: the plane's normal
    np.testing.assert_allclose(delta[:, 2], _expected_offset(res, pts), rtol=0, atol=1e-6)
    assert (delta[:, 2] >= 0).all() and delta[:, 2].max() > 0.01  # a bulge towards the camera
    moved = _changed(res, pts)
    assert np.array_equal(res.labels.astype(bool), moved) and res.labels.sum() == res.params["n_moved"] > 50
    assert res.points.dtype == np.float32 and len(res.points) == len(pts)


@pytest.mark.parametrize("kind", ["bulge", "dent"])
def test_sphere_displacement_is_radial_with_the_kernel_height(kind):
    pts = sphere()
    res = PointCloudAnomaly(kinds=kind, region="radius", radius=0.1)(pts, seed=11)
    delta = res.points - pts[res.index]
    mag = np.linalg.norm(delta, axis=1)
    np.testing.assert_allclose(mag, _expected_offset(res, pts), rtol=1e-9, atol=1e-12)
    moved = mag > 0
    radial = (pts[res.index] - np.array([0.1, -0.2, 0.3]))[moved]
    cos = np.einsum("ni,ni->n", delta[moved], radial) / (mag[moved] * np.linalg.norm(radial, axis=1))
    # PCA normals of a 4000-point sphere are within ~1 degree of the analytic (radial) normal
    assert (cos > 0.999).all() if kind == "bulge" else (cos < -0.999).all()
    assert moved.sum() == res.params["n_moved"] and res.params["height"][0] * (1 if kind == "bulge" else -1) > 0


def test_cylinder_normals_match_the_analytic_normals():
    pts = cylinder()
    interior = np.flatnonzero((pts[:, 2] > 0.1) & (pts[:, 2] < 0.9))
    n = estimate_normals(pts, interior, 30)
    analytic = pts[interior].astype(np.float64) * [1, 1, 0]
    analytic /= np.linalg.norm(analytic, axis=1, keepdims=True)
    assert (np.abs(np.einsum("ni,ni->n", n, analytic)) > 0.999).all()
    res = PointCloudAnomaly(kinds="dent")(pts, seed=0)
    delta = (res.points - pts).astype(np.float64)
    moved = np.abs(delta).sum(1) > 0
    assert moved.any() and np.abs(delta[moved, 2]).max() < 0.05 * np.abs(delta[moved, :2]).max()


def test_hole_and_cut_remove_points_inside_the_region_and_label_the_rim():
    pts = sphere()
    for kind in ("hole", "cut"):
        res = PointCloudAnomaly(kinds=kind, rim=0.25)(pts, seed=5)
        p = res.params
        c, r = np.asarray(p["center"][0]), p["radius"][0]
        removed = np.setdiff1d(np.arange(len(pts)), res.index)
        assert len(removed) == p["n_removed"] > 0 and len(res.points) == len(pts) - len(removed)
        assert (np.linalg.norm(pts[removed] - c, axis=1) < r).all()
        assert np.array_equal(res.points, pts[res.index])  # no kept point moves
        d_lab = np.linalg.norm(res.points[res.labels == 1] - c, axis=1)
        assert res.labels.sum() > 0 and (d_lab < 1.25 * r).all()


def test_debris_adds_labelled_points_near_the_region():
    pts = sphere()
    res = PointCloudAnomaly(kinds="debris", debris=(20, 20))(pts, seed=2)
    extra = res.index == -1
    assert extra.sum() == res.params["n_added"] == 20 and (res.labels[extra] == 1).all()
    assert (res.labels[~extra] == 0).all() and np.array_equal(res.points[~extra], pts)
    c, r = np.asarray(res.params["center"][0]), res.params["radius"][0]
    assert (np.linalg.norm(res.points[extra] - c, axis=1) < 2.5 * r).all()
    assert (np.linalg.norm(res.points[extra] - [0.1, -0.2, 0.3], axis=1) > 0.5 - 0.1 * r * 4).all()


def test_knn_region_holds_the_requested_share_of_points():
    pts = sphere(5000)
    res = PointCloudAnomaly(kinds="hole", region_fraction=0.03)(pts, seed=1)
    assert abs(res.params["n_removed"] - 150) <= 1


def test_same_seed_same_result_and_list_position_invariance():
    clouds = [sphere(), plane(), cylinder()]
    gen = PointCloudAnomaly(n_regions=(1, 3))
    batch = gen(clouds, seed=9)
    again = gen(clouds, seed=9)
    for i, (a, b) in enumerate(zip(batch, again)):
        assert np.array_equal(a.points, b.points) and np.array_equal(a.labels, b.labels)
        alone = gen(clouds[i], seed=anofast.sample_seeds(9, 1, offset=i))
        assert np.array_equal(alone.points, a.points) and np.array_equal(alone.labels, a.labels)
        assert alone.params == a.params
    reordered = gen(clouds[::-1], seed=anofast.sample_seeds(9, 3).flip(0))
    assert np.array_equal(reordered[0].points, batch[2].points)
    other = gen(clouds, seed=10)
    assert any(not np.array_equal(a.points, b.points) or a.points.shape != b.points.shape
               for a, b in zip(batch, other))


def test_thread_count_does_not_change_the_result():
    pts = sphere()
    gen = PointCloudAnomaly(n_regions=(2, 2))
    torch.set_num_threads(1)
    one = gen(pts, seed=4)
    torch.set_num_threads(2)
    two = gen(pts, seed=4)
    assert np.array_equal(one.points, two.points) and np.array_equal(one.labels, two.labels)


def test_every_kind_keeps_unlabelled_points_bit_identical():
    pts = sphere()
    for kind in KINDS:
        res = PointCloudAnomaly(kinds=kind)(pts, seed=7)
        kept = res.index >= 0
        unl = kept & (res.labels == 0)
        assert np.array_equal(res.points[unl], pts[res.index[unl]]), kind
        assert res.labels.sum() > 0, kind
        assert not (_changed(res, pts) & (res.labels[kept] == 0)).any(), kind  # every changed point is labelled


def test_normal_cloud_with_p_anomaly_zero_is_unchanged():
    pts = sphere()
    res = PointCloudAnomaly(p_anomaly=0.0)(pts, seed=0)
    assert np.array_equal(res.points, pts) and res.labels.sum() == 0 and not res.params["applied"]


def test_input_types_torch_open3d_and_returned_normals():
    import open3d as o3d

    pts = sphere(2000).astype(np.float32)
    gen = PointCloudAnomaly(kinds="bulge", return_normals=True)
    ref = gen(pts, seed=1)
    t = gen(torch.from_numpy(pts), seed=1)
    assert isinstance(t.points, torch.Tensor) and t.points.dtype == torch.float32
    assert np.array_equal(t.points.numpy(), ref.points) and np.array_equal(t.labels.numpy(), ref.labels)
    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts.astype(np.float64)))
    pc.colors = o3d.utility.Vector3dVector(np.full((len(pts), 3), 0.5))
    res = gen(pc, seed=1)
    np.testing.assert_array_equal(res.points.astype(np.float32), ref.points)
    assert res.colors.shape == (len(res.points), 3)
    assert ref.normals.shape == (len(pts), 3)
    assert np.allclose(np.linalg.norm(ref.normals, axis=1), 1, atol=1e-5)
    assert len(res.to_open3d().points) == len(res.points)


@pytest.mark.parametrize(
    ("points", "error", "match"),
    [
        (np.zeros((0, 3), np.float32), ValueError, "empty point cloud"),
        (np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [np.nan, 0, 0]], np.float32), ValueError, "NaN"),
        (np.zeros((10, 2), np.float32), ValueError, r"shape \(N, 3\)"),
        (np.zeros((10, 3), np.int32), TypeError, "float"),
        (np.zeros((3, 3), np.float32), ValueError, "at least 4"),
        (np.zeros((10, 3), np.float32), ValueError, "same position"),
        ("cloud.pcd", TypeError, "numpy array"),
        ([], ValueError, "empty list"),
    ],
)
def test_bad_input_raises_a_clear_error(points, error, match):
    with pytest.raises(error, match=match):
        PointCloudAnomaly()(points, seed=0)


def test_bad_options_raise():
    with pytest.raises(ValueError, match="kinds"):
        PointCloudAnomaly(kinds=("bump",))
    with pytest.raises(ValueError, match="n_regions"):
        PointCloudAnomaly(n_regions=(0, 9))
    with pytest.raises(ValueError, match="kernel"):
        PointCloudAnomaly(kernel="box")
    with pytest.raises(ValueError, match="preset"):
        PointCloudAnomaly.preset("nope")


def test_real_scans(shared_data):
    from anofast.three_d.io import read_point_cloud

    folder = shared_data / "pointclouds_pcl"
    if not folder.is_dir():
        pytest.skip("pointclouds_pcl is absent")
    clouds = [read_point_cloud(folder / f).points for f in ("bunny.pcd", "milk.pcd", "car6.pcd")]
    scan = read_point_cloud(folder / "table_scene_mug_stereo_textured.npz", drop_invalid=True).points
    gen = PointCloudAnomaly(n_regions=(1, 2))
    for res, pts in zip(gen(clouds, seed=0), clouds):
        kept = res.index >= 0
        unl = kept & (res.labels == 0)
        assert np.array_equal(res.points[unl], pts[res.index[unl]])
        assert res.labels.sum() > 0
    res = PointCloudAnomaly(kinds="dent", orient="camera", one_sided=False)(scan, seed=1)
    delta = np.linalg.norm(res.points.astype(np.float64) - scan[res.index], axis=1)
    # float32 output: each coordinate is rounded once (|coordinates| < 2 m here)
    np.testing.assert_allclose(delta, _expected_offset(res, scan), rtol=0, atol=5e-7)
    assert res.labels.sum() == res.params["n_moved"] > 0
