"""``anofast generate --method pointcloud|depth``: outputs, labels equal to the generator's, gallery, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from anofast import sample_seeds
from anofast.cli import main
from anofast.three_d import io
from anofast.three_d.render import colormap, render_points, shade_xyz


def _sphere(n: int, shift: float) -> np.ndarray:
    i = np.arange(n) + 0.5
    phi, theta = np.arccos(1 - 2 * i / n), np.pi * (1 + 5**0.5) * i
    return (np.stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)], 1) + shift).astype(
        np.float32)


def test_generate_pointcloud_writes_labelled_clouds_and_a_gallery(tmp_path):
    pytest.importorskip("open3d")
    from anofast.three_d.pointcloud import PointCloudAnomaly

    src = tmp_path / "in"
    src.mkdir()
    io.write_point_cloud(src / "a.npz", _sphere(1500, 0.0))
    io.write_point_cloud(src / "b.ply", _sphere(1200, 2.0), colors=np.full((1200, 3), 90, np.uint8))
    out = tmp_path / "out"
    assert main(["generate", "--method", "pointcloud:surface", "--input", str(src), "--output", str(out),
                 "--count", "3", "--seed", "4", "--gallery"]) == 0
    entries = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [e["cloud"] for e in entries] == ["clouds/000000.npz", "clouds/000001.ply", "clouds/000002.npz"]
    gen = PointCloudAnomaly.preset("surface")
    for k, e in enumerate(entries):
        data = io.read_point_cloud(out / e["cloud"])
        source = io.read_point_cloud(src / e["source"])
        expected = gen(source.points, seed=sample_seeds(4, 1, offset=k))
        assert np.array_equal(data.points, expected.points) and np.array_equal(data.labels, expected.labels)
        assert e["labelled_points"] == int(expected.labels.sum()) > 0 and e["params"]["kinds"][0] in ("bulge", "dent")
    assert io.read_point_cloud(out / "clouds/000001.ply").colors is not None
    assert (out / "gallery.png").stat().st_size > 1000 and (out / "index.html").is_file()
    assert len(list((out / "renders").glob("*.png"))) == 3 * 4
    # an existing run is not overwritten without --resume; --resume with the same settings is a no-op
    assert main(["generate", "--method", "pointcloud:surface", "--input", str(src), "--output", str(out),
                 "--count", "3", "--seed", "4"]) == 2
    assert main(["generate", "--method", "pointcloud:surface", "--input", str(src), "--output", str(out),
                 "--count", "3", "--seed", "4", "--resume"]) == 0


def test_generate_3d_errors(tmp_path, capsys):
    assert main(["generate", "--method", "pointcloud", "--input", str(tmp_path), "--output",
                 str(tmp_path / "o")]) == 2
    assert "no point clouds" in capsys.readouterr().err
    assert main(["generate", "--method", "pointcloud:nope", "--input", str(tmp_path), "--output",
                 str(tmp_path / "o")]) == 2
    assert main(["generate", "--method", "depth", "--input", str(tmp_path), "--output", str(tmp_path / "o")]) == 2
    assert "MVTec 3D-AD sample folder" in capsys.readouterr().err
    assert main(["generate", "--method", "perlin,pointcloud", "--input", str(tmp_path), "--output",
                 str(tmp_path / "o")]) == 2


def _rgbd_folder(root, n: int = 2, h: int = 48, w: int = 64) -> None:
    """An MVTec 3D-AD style sample folder: a tilted plane with a bump, 0.4 m from the camera, in metres."""
    v, u = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    z = 0.4 + 0.0005 * u + 0.004 * torch.exp(-((u - 30) ** 2 + (v - 20) ** 2) / 80)
    xyz = torch.stack([(u - w / 2) * z / 500, (v - h / 2) * z / 500, z])
    xyz[:, :3, :5] = 0  # a few invalid points
    for k in range(n):
        rgb = (torch.rand(3, h, w, generator=torch.Generator().manual_seed(k)) * 80 + 100).to(torch.uint8)
        io.write_mvtec3d_sample(root, f"{k:03d}", rgb, xyz)


def test_generate_depth_on_an_mvtec3d_folder(tmp_path):
    src = tmp_path / "sample"
    _rgbd_folder(src)
    out = tmp_path / "out"
    assert main(["generate", "--method", "depth", "--input", str(src), "--output", str(out), "--count", "2",
                 "--gallery"]) == 0
    entries = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(entries) == 2 and (out / "gallery.png").is_file()
    for e in entries:
        xyz_in = io.read_xyz_tiff(src / "xyz" / f"{e['source']}.tiff")
        xyz_out = io.read_xyz_tiff(out / e["xyz"])
        geo = io.read_mask_png(out / "masks_geo" / f"{e['index']:06d}.png")[0].bool()
        changed = (xyz_out != xyz_in).any(0)
        assert torch.equal(changed, geo)  # the written geometry mask marks exactly the moved points
        assert (xyz_out[:, ~(xyz_in.abs().sum(0) > 0)] == 0).all()  # invalid points stay invalid


def test_pictures():
    pts = _sphere(3000, 0.0)
    labels = (pts[:, 2] > 0.8).astype(np.int64)
    pic = render_points(pts, labels=labels, size=96)
    assert pic.shape == (96, 96, 3) and pic.dtype == np.uint8
    red = (pic[..., 0] > 150) & (pic[..., 1] < 80)
    assert red.any() and (pic[48, 48] != pic[0, 0]).any()  # the sphere covers the centre, not the corner
    assert np.array_equal(colormap(np.array([-1.0, 0.0, 1.0])), [[0, 0, 255], [255, 255, 255], [255, 0, 0]])
    xyz = torch.zeros(3, 8, 8)
    xyz[2, 2:6, 2:6] = 1.0
    shaded = shade_xyz(xyz)
    assert shaded.shape == (8, 8, 3) and (shaded[0, 0] == [32, 32, 32]).all() and shaded[3, 3].sum() > 96
