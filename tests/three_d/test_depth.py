"""DepthAnomaly: consistency on synthetic scenes (plane, sphere) and a real RGB-D scene, determinism, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import anofast
from anofast._dispatch import usable
from anofast._validate import check_images
from anofast.ops.normals import normals
from anofast.testing import make_batch
from anofast.three_d.depth import KINDS, DepthAnomaly, xyz_from_depth

F_PX = 120.0  # focal length of the synthetic camera, pixels


def _rays(height: int, width: int):
    v, u = torch.meshgrid(torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64),
                          indexing="ij")
    return (u - (width - 1) / 2) / F_PX, (v - (height - 1) / 2) / F_PX


def plane_scene(batch: int, height: int = 48, width: int = 56, invalid_band: bool = True):
    """A tilted plane about 0.5 m away (metres), with an invalid band; xyz (B, 3, H, W) float32."""
    n = torch.tensor([0.2, -0.1, -1.0], dtype=torch.float64)
    n = n / n.norm()
    rx, ry = _rays(height, width)
    ray = torch.stack((rx, ry, torch.ones_like(rx)))
    xyz = (ray * (-0.5 / (n.view(3, 1, 1) * ray).sum(0))).float()
    xyz = xyz.unsqueeze(0).repeat(batch, 1, 1, 1)
    if invalid_band:
        xyz[:, :, :, :3] = 0.0
        xyz[:, :, 20:23, 30:34] = 0.0  # a small invalid island
    return xyz.contiguous(), n.float()


def sphere_scene(batch: int, size: int = 64, radius: float = 0.12, centre_z: float = 0.5):
    """A sphere filling most of the image; xyz, analytic normals and the hit mask."""
    rx, ry = _rays(size, size)
    ray = torch.stack((rx, ry, torch.ones_like(rx)))
    ray = ray / ray.norm(dim=0, keepdim=True)
    c = torch.tensor([0.0, 0.0, centre_z], dtype=torch.float64).view(3, 1, 1)
    b = (ray * c).sum(0)
    disc = b * b - (c * c).sum(0) + radius**2
    hit = disc > 0
    p = torch.where(hit, ray * (b - disc.clamp(min=0).sqrt()), 0.0)
    n = torch.where(hit, (p - c) / radius, 0.0)
    rep = lambda t: t.float().unsqueeze(0).repeat(batch, 1, 1, 1).contiguous()  # noqa: E731
    return rep(p), rep(n), hit


def _check_consistency(out, rgb, xyz):
    assert torch.equal(out.mask_geo.bool(), (out.xyz != xyz).any(1, keepdim=True))
    assert torch.equal(out.mask_rgb.bool(), (out.image != rgb).any(1, keepdim=True))
    assert torch.equal(out.mask, torch.maximum(out.mask_geo, out.mask_rgb))
    assert torch.equal(out.label, (out.mask.flatten(1).amax(1) > 0).long())
    invalid = (xyz == 0).all(1, keepdim=True)
    assert (out.xyz[invalid.expand_as(xyz)] == 0).all()  # invalid stays invalid
    assert not (out.mask_geo.bool() & invalid).any()
    assert not (out.mask_rgb.bool() & invalid).any()  # and its colour untouched
    assert torch.equal(out.depth, out.xyz[:, 2:3])
    assert out.image.min() >= 0 and out.image.max() <= 1


def test_api_fields_and_exact_masks_on_a_plane():
    xyz, _ = plane_scene(8)
    rgb = make_batch(8, 3, 48, 56)
    out = anofast.three_d.DepthAnomaly()(rgb, xyz=xyz, seed=0)
    assert out.image.shape == rgb.shape and out.xyz.shape == xyz.shape and out.normals.shape == xyz.shape
    assert out.mask_geo.shape == out.mask_rgb.shape == out.mask.shape == out.height.shape == (8, 1, 48, 56)
    assert out.label.dtype == torch.int64 and out.label.sum() >= 7
    assert set(out.params) >= {"seed", "kind", "centre", "amplitude_m", "light"}
    _check_consistency(out, rgb, xyz)
    # geometry changes only where the height field is non-zero; normals are those of the new cloud
    assert not (out.mask_geo.bool() & (out.height == 0)).any()
    assert torch.equal(out.normals, normals(out.xyz))
    # height along the (plane's) normal equals the requested height field, outside holes
    n_in = normals(xyz)
    along = ((out.xyz - xyz) * n_in).sum(1, keepdim=True)
    keep = out.mask_geo.bool() & (out.params["kind"] != KINDS.index("hole")).view(-1, 1, 1, 1)
    torch.testing.assert_close(along[keep], out.height[keep], rtol=1e-3, atol=1e-7)
    # the profile is smooth: no cliff, the height field vanishes on the foreground's edge
    fg = (n_in != 0).any(1, keepdim=True)
    assert (out.height[~fg] == 0).all()


def test_height_along_the_analytic_normal_on_a_sphere():
    xyz, n_true, hit = sphere_scene(6)
    rgb = make_batch(6, 3, 64, 64, seed=1)
    gen = DepthAnomaly(kinds=("bulge", "dent"), amplitude=(0.5e-3, 1e-3))
    out = gen(rgb, xyz=xyz, seed=3)
    _check_consistency(out, rgb, xyz)
    assert out.label.sum() == 6
    along = ((out.xyz - xyz) * n_true).sum(1, keepdim=True)
    m = out.mask_geo.bool() & (out.height.abs() > 1e-5)
    # displacement follows the estimated normal; the analytic one differs by O(spacing / radius)
    torch.testing.assert_close(along[m], out.height[m], rtol=0.03, atol=2e-7)
    signs = torch.sign(out.height.flatten(1).sum(1))
    expect = torch.where(out.params["kind"] == 0, 1.0, -1.0)
    assert torch.equal(signs, expect)
    # recomputed normals on the untouched part of the sphere still match the analytic normals
    far = (torch.nn.functional.max_pool2d(out.mask_geo, 5, 1, 2) == 0) & (out.normals != 0).any(1, keepdim=True)
    far &= n_true[:, 2:3] < -0.5
    err = (out.normals - n_true).abs().amax(1, keepdim=True)[far]
    assert err.max() < 0.02


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind(kind):
    xyz, _ = plane_scene(4)
    rgb = make_batch(4, 3, 48, 56, seed=2)
    out = DepthAnomaly(kinds=(kind,))(rgb, xyz=xyz, seed=5)
    _check_consistency(out, rgb, xyz)
    assert out.label.tolist() == [1, 1, 1, 1]
    removed = (out.xyz == 0).all(1, keepdim=True) & (xyz != 0).any(1, keepdim=True)
    if kind == "hole":
        assert torch.equal(removed, out.mask_geo.bool())
        assert (out.image[out.mask_geo.bool().expand_as(rgb)] <= rgb[out.mask_geo.bool().expand_as(rgb)]).all()
    else:
        assert not removed.any()
    if kind in ("bulge",):
        assert (out.height >= 0).all()
    if kind in ("dent", "groove", "hole"):
        assert (out.height <= 0).all()


def test_normal_samples_are_untouched():
    xyz, _ = plane_scene(3)
    rgb = make_batch(3, 3, 48, 56)
    out = DepthAnomaly(p_anomaly=0.0)(rgb, xyz=xyz, seed=1)
    assert torch.equal(out.image, rgb) and torch.equal(out.xyz, xyz) and out.label.sum() == 0
    assert out.mask.sum() == 0


def test_depth_with_intrinsics_matches_xyz():
    xyz, _ = plane_scene(2, invalid_band=True)
    depth = xyz[:, 2:3].clone()
    k = (F_PX, F_PX, (56 - 1) / 2, (48 - 1) / 2)
    cloud = xyz_from_depth(depth, k)
    rgb = make_batch(2, 3, 48, 56)
    a = DepthAnomaly()(rgb, depth=depth, intrinsics=k, seed=4)
    b = DepthAnomaly()(rgb, xyz=cloud, seed=4)
    assert torch.equal(a.xyz, b.xyz) and torch.equal(a.image, b.image) and torch.equal(a.depth, a.xyz[:, 2:3])
    torch.testing.assert_close(cloud, xyz, rtol=0, atol=1e-6)  # the same rays
    per_sample = DepthAnomaly()(rgb, depth=depth, intrinsics=torch.tensor([k, k]), seed=4)
    assert torch.equal(per_sample.xyz, a.xyz)


def _assert_same(a, b, what):
    for name in ("image", "xyz", "normals", "height", "mask_geo", "mask_rgb", "label"):
        assert torch.equal(getattr(a, name), getattr(b, name)), f"{what}: {name}"


def test_deterministic_across_threads_batch_and_backends():
    xyz, _ = plane_scene(4)
    rgb = make_batch(4, 3, 48, 56, seed=3)
    gen = DepthAnomaly()
    torch.set_num_threads(1)
    one = gen(rgb, xyz=xyz, seed=11)
    torch.set_num_threads(2)
    two = gen(rgb, xyz=xyz, seed=11)
    _assert_same(one, two, "threads")
    for i in range(4):
        single = gen(rgb[i:i + 1], xyz=xyz[i:i + 1], seed=anofast.sample_seeds(11, 1, offset=i))
        for name in ("image", "xyz", "mask", "height"):
            assert torch.equal(getattr(single, name)[0], getattr(one, name)[i]), (i, name)
    ref = DepthAnomaly(backend="reference")(rgb, xyz=xyz, seed=11)
    _assert_same(ref, one, "reference vs cpp")


@pytest.mark.skipif(not usable("triton", torch.device("cpu"))[0] and not torch.cuda.is_available(),
                    reason="triton needs CUDA or TRITON_INTERPRET=1")
def test_triton_backend_matches():
    xyz, _ = plane_scene(2, 20, 24)
    xyz = xyz.contiguous()
    rgb = make_batch(2, 3, 20, 24)
    kw = dict(size=(0.2, 0.3), kinds=("bulge", "combined"))
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    ref = DepthAnomaly(backend="reference", **kw)(rgb, xyz=xyz, seed=2)
    tri = DepthAnomaly(backend="triton", **kw)(rgb.to(dev), xyz=xyz.to(dev), seed=2)
    assert ref.label.sum() > 0
    for name in ("image", "xyz", "normals", "mask_geo", "mask_rgb"):
        assert torch.equal(getattr(tri, name).cpu(), getattr(ref, name)), name


def test_rejects_bad_inputs():
    xyz, _ = plane_scene(2)
    rgb = make_batch(2, 3, 48, 56)
    gen = DepthAnomaly()
    with pytest.raises(ValueError, match="xyz"):
        gen(rgb, xyz=xyz[:, :2])
    with pytest.raises(ValueError, match="xyz"):
        gen(rgb, xyz=xyz[:, :, :40])
    bad = xyz.clone()
    bad[0, 1, 5, 5] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        gen(rgb, xyz=bad)
    with pytest.raises(ValueError, match="no valid point"):
        gen(rgb, depth=torch.zeros(2, 1, 48, 56), intrinsics=(100.0, 100.0, 28.0, 24.0))
    depth = xyz[:, 2:3].clone()
    depth[1, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="depth"):
        gen(rgb, depth=depth, intrinsics=(100.0, 100.0, 28.0, 24.0))
    with pytest.raises(ValueError, match="intrinsics"):
        gen(rgb, depth=xyz[:, 2:3])
    with pytest.raises(ValueError, match="intrinsics"):
        gen(rgb, depth=xyz[:, 2:3], intrinsics=(0.0, 100.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="exactly one"):
        gen(rgb, xyz=xyz, depth=xyz[:, 2:3])
    with pytest.raises(ValueError, match="rgb"):
        gen(rgb[:, :1], xyz=xyz)
    with pytest.raises(ValueError, match="kinds"):
        DepthAnomaly(kinds=("scratch",))


def test_real_rgbd_scene(shared_data):
    tifffile = pytest.importorskip("tifffile")
    from PIL import Image

    folder = shared_data / "rgbd_middlebury_motorcycle"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    # nearest-neighbour downsampling only (METHODS.md 6.1); this scene's xyz.tiff is in millimetres
    xyz = torch.from_numpy(np.ascontiguousarray(tifffile.imread(folder / "xyz.tiff")[::4, ::4])).permute(2, 0, 1)
    rgb = torch.from_numpy(np.asarray(Image.open(folder / "rgb_left.png").convert("RGB"))[::4, ::4].copy())
    rgb = rgb.permute(2, 0, 1).unsqueeze(0).repeat(3, 1, 1, 1)
    xyz = xyz.unsqueeze(0).repeat(3, 1, 1, 1).contiguous()
    gen = DepthAnomaly(xyz_unit=0.001, amplitude=(5e-3, 20e-3))  # depth 2-5 m: defects of 5-20 mm
    out = gen(rgb, xyz=xyz, seed=0)
    _check_consistency(out, check_images(rgb), xyz)
    assert out.label.sum() == 3
    # the same scene given as depth + intrinsics lands on the same rays
    meta = json.loads((folder / "meta.json").read_text())["intrinsics_px"]
    depth = torch.from_numpy(np.load(folder / "depth_mm.npy")[::4, ::4].copy()).view(1, 1, *xyz.shape[-2:])
    cloud = xyz_from_depth(depth, (meta["f"] / 4, meta["f"] / 4, meta["cx"] / 4, meta["cy"] / 4))
    valid = depth[0, 0] > 0
    assert (cloud[0, 2][valid] == xyz[0, 2][valid]).all()
