"""3D readers and writers: .pcd / .ply / .npz round trips, MVTec 3D-AD sample folders and the dataset, and
clear errors for corrupt, empty and NaN inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anofast.three_d import io


def _cloud(n: int = 50) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    g = np.random.default_rng(0)
    return (g.normal(size=(n, 3)).astype(np.float32), g.integers(0, 256, (n, 3)).astype(np.uint8),
            g.normal(size=(n, 3)).astype(np.float32), g.integers(0, 2, n).astype(np.int64))


@pytest.mark.parametrize("ext", [".npz", ".pcd", ".ply"])
def test_point_cloud_round_trip(tmp_path, ext):
    if ext != ".npz":
        pytest.importorskip("open3d")
    pts, colors, normals, labels = _cloud()
    path = tmp_path / f"c{ext}"
    io.write_point_cloud(path, pts, colors=colors, normals=normals, labels=labels)
    back = io.read_point_cloud(path)
    assert np.array_equal(back.points, pts) and np.array_equal(back.colors, colors)
    assert np.array_equal(back.normals, normals) and np.array_equal(back.labels, labels)
    assert [f.name for f in tmp_path.iterdir()] == [path.name]  # no temporary file left
    assert io.list_point_clouds(tmp_path) == [path]


def test_npz_organized_and_nan_points(tmp_path):
    xyz = np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3)
    xyz[1, 2] = np.nan
    np.savez(tmp_path / "o.npz", xyz=xyz, rgb=np.zeros((2, 3, 3), np.uint8))
    with pytest.raises(io.Read3DError, match="1 NaN or infinite points"):
        io.read_point_cloud(tmp_path / "o.npz")
    data = io.read_point_cloud(tmp_path / "o.npz", drop_invalid=True)
    assert data.points.shape == (5, 3) and data.colors.shape == (5, 3)
    assert np.array_equal(data.points, xyz.reshape(6, 3)[:5])


def test_corrupt_empty_and_unsupported_files_raise(tmp_path):
    pytest.importorskip("open3d")
    (tmp_path / "bad.pcd").write_text("this is not a PCD header\n1 2 3\n")
    with pytest.raises(io.Read3DError, match="not a valid PCD"):
        io.read_point_cloud(tmp_path / "bad.pcd")
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(io.Read3DError, match="cannot read point cloud"):
        io.read_point_cloud(tmp_path / "bad.npz")
    np.savez(tmp_path / "empty.npz", xyz=np.zeros((0, 3), np.float32))
    with pytest.raises(io.Read3DError, match="holds no points"):
        io.read_point_cloud(tmp_path / "empty.npz")
    np.savez(tmp_path / "nokey.npz", foo=np.zeros((3, 3)))
    with pytest.raises(io.Read3DError, match="no 'xyz'"):
        io.read_point_cloud(tmp_path / "nokey.npz")
    (tmp_path / "x.obj").write_text("v 0 0 0\n")
    with pytest.raises(io.Read3DError, match="unsupported extension"):
        io.read_point_cloud(tmp_path / "x.obj")
    with pytest.raises(FileNotFoundError, match="not found"):
        io.read_point_cloud(tmp_path / "missing.ply")
    with pytest.raises(ValueError, match="extension"):
        io.write_point_cloud(tmp_path / "x.xyz", np.zeros((3, 3)))
    with pytest.raises(ValueError, match="labels must have 3 rows"):
        io.write_point_cloud(tmp_path / "x.npz", np.zeros((3, 3)), labels=np.zeros(2))
    (tmp_path / "sub").mkdir()
    with pytest.raises(FileNotFoundError, match="no point clouds"):
        io.list_point_clouds(tmp_path / "sub")


def _sample(h: int = 7, w: int = 9) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    rgb = torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8)
    xyz = torch.rand(3, h, w, generator=g)
    xyz[:, 0, :] = 0  # an invalid row (MVTec 3D-AD: zeros)
    gt = (torch.rand(1, h, w, generator=g) > 0.7).float()
    return rgb, xyz, gt


def test_mvtec3d_sample_round_trip(tmp_path):
    rgb, xyz, gt = _sample()
    io.write_mvtec3d_sample(tmp_path, "000", rgb, xyz, gt)
    io.write_mvtec3d_sample(tmp_path, "001", rgb, xyz)
    assert io.list_mvtec3d_samples(tmp_path) == ["000", "001"]
    s = io.read_mvtec3d_sample(tmp_path, "000")
    assert torch.equal(s.rgb, rgb) and torch.equal(s.xyz, xyz) and torch.equal(s.gt, gt)
    assert io.read_mvtec3d_sample(tmp_path, "001").gt is None


def test_xyz_tiff_errors(tmp_path):
    import tifffile

    tifffile.imwrite(tmp_path / "grey.tiff", np.zeros((4, 5), np.float32))
    with pytest.raises(io.Read3DError, match="H x W x 3 float"):
        io.read_xyz_tiff(tmp_path / "grey.tiff")
    bad = np.zeros((4, 5, 3), np.float32)
    bad[1, 1, 2] = np.nan
    tifffile.imwrite(tmp_path / "nan.tiff", bad, photometric="rgb")
    with pytest.raises(io.Read3DError, match="NaN"):
        io.read_xyz_tiff(tmp_path / "nan.tiff")
    (tmp_path / "junk.tiff").write_bytes(b"II*\x00garbage")
    with pytest.raises(io.Read3DError, match="junk.tiff"):
        io.read_xyz_tiff(tmp_path / "junk.tiff")
    with pytest.raises(FileNotFoundError, match="rgb/ is missing"):
        io.list_mvtec3d_samples(tmp_path)


def test_mvtec3d_dataset(tmp_path):
    from anofast.data.mvtec3d import MVTec3D

    rgb, xyz, gt = _sample()
    cat = tmp_path / "tire"
    io.write_mvtec3d_sample(cat / "train" / "good", "000", rgb, xyz)
    io.write_mvtec3d_sample(cat / "test" / "good", "000", rgb, xyz)
    io.write_mvtec3d_sample(cat / "test" / "crack", "000", rgb, xyz, gt)
    ds = MVTec3D(tmp_path, "tire", split="test")
    assert len(ds) == 2
    items = sorted((ds[i] for i in range(2)), key=lambda it: it["defect"])
    crack, good = items
    assert crack["label"] == 1 and torch.equal(crack["mask"], gt) and good["label"] == 0
    assert good["mask"].sum() == 0 and torch.equal(good["xyz"], xyz)
    assert good["image"].dtype == torch.float32 and good["image"].max() <= 1
    assert len(MVTec3D(tmp_path, "tire", split="train")) == 1
    with pytest.raises(FileNotFoundError, match="split"):
        MVTec3D(tmp_path, "tire", split="validation")


def test_real_pcd_files_read(shared_data):
    pytest.importorskip("open3d")
    folder = shared_data / "pointclouds_pcl"
    if not folder.is_dir():
        pytest.skip("pointclouds_pcl is absent")
    milk = io.read_point_cloud(folder / "milk_color.pcd")
    npz = io.read_point_cloud(folder / "milk_color.npz")
    assert milk.points.shape == (13704, 3) and milk.colors.dtype == np.uint8
    assert np.array_equal(milk.points, npz.points) and np.array_equal(milk.colors, npz.colors)
    with pytest.raises(io.Read3DError, match="drop_invalid"):
        io.read_point_cloud(folder / "table_scene_mug_stereo_textured.pcd")
    assert len(io.read_point_cloud(folder / "table_scene_mug_stereo_textured.pcd", drop_invalid=True).points) == 209280
