"""normals: analytic surfaces (plane, sphere, cylinder), then every backend against the reference, bit for bit."""

from __future__ import annotations

import math

import pytest
import torch

from anofast._backend import triton_interpreted
from anofast.ops.normals import normals
from anofast.testing import backend_params

INTERPRETED = triton_interpreted()


def _grid(height: int, width: int, f: float = 200.0):
    v, u = torch.meshgrid(torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64),
                          indexing="ij")
    return (u - (width - 1) / 2) / f, (v - (height - 1) / 2) / f  # ray direction (rx, ry, 1)


def plane(height: int, width: int):
    """A tilted plane n . p = -1 with n facing the camera; xyz and the analytic normal."""
    n = torch.tensor([0.3, -0.2, -1.0], dtype=torch.float64)
    n = n / n.norm()
    rx, ry = _grid(height, width)
    ray = torch.stack((rx, ry, torch.ones_like(rx)))
    t = -1.0 / (n.view(3, 1, 1) * ray).sum(0)  # p = t * ray on the plane
    xyz = (ray * t).unsqueeze(0)
    return xyz.float(), n.view(1, 3, 1, 1).expand_as(xyz).float()


def sphere(height: int, width: int, radius: float = 0.2, centre_z: float = 1.0):
    rx, ry = _grid(height, width, f=height / 0.5)
    ray = torch.stack((rx, ry, torch.ones_like(rx)))
    ray = ray / ray.norm(dim=0, keepdim=True)
    c = torch.tensor([0.0, 0.0, centre_z], dtype=torch.float64).view(3, 1, 1)
    b = (ray * c).sum(0)
    disc = b * b - (c * c).sum(0) + radius**2
    hit = disc > 0
    t = b - disc.clamp(min=0).sqrt()  # the near intersection
    p = torch.where(hit, ray * t, 0.0)
    n = torch.where(hit, (p - c) / radius, 0.0)
    return p.unsqueeze(0).float(), n.unsqueeze(0).float(), hit


def cylinder(height: int, width: int, radius: float = 0.3, centre_z: float = 1.0):
    """Axis along y at (0, *, centre_z): analytic normal (x, 0, z - centre_z) / radius."""
    rx, ry = _grid(height, width, f=height / 0.5)
    a = rx * rx + 1.0
    b = centre_z
    disc = b * b - a * (centre_z**2 - radius**2)
    hit = disc > 0
    t = (b - disc.clamp(min=0).sqrt()) / a
    p = torch.stack((rx * t, ry * t, t))
    p = torch.where(hit, p, 0.0)
    n = torch.stack((p[0], torch.zeros_like(p[1]), p[2] - centre_z)) / radius
    return p.unsqueeze(0).float(), torch.where(hit, n, 0.0).unsqueeze(0).float(), hit


def _random_cloud(batch: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xyz = torch.randn(batch, 3, height, width, generator=g) * 0.05
    xyz[:, 2] += 1.0
    holes = torch.rand(batch, 1, height, width, generator=g) < 0.1
    xyz = torch.where(holes, 0.0, xyz)
    xyz[0, :, :, :2] = 0.0  # an invalid band
    return xyz.contiguous()


@pytest.mark.parametrize("surface", ["plane", "sphere", "cylinder"])
def test_reference_matches_analytic_normals(surface):
    if surface == "plane":
        xyz, n = plane(21, 27)
        inner = torch.zeros(21, 27, dtype=torch.bool)
        inner[1:-1, 1:-1] = True
        atol = 1e-4
    else:
        xyz, n, hit = (sphere if surface == "sphere" else cylinder)(121, 127)
        inner = hit.clone()
        for shift in ((0, 1), (0, -1), (1, 0), (-1, 0)):  # points whose four neighbours are on the surface too
            inner &= torch.roll(hit, shift, dims=(0, 1))
        inner[0], inner[-1], inner[:, 0], inner[:, -1] = False, False, False, False
        inner &= n[0, 2] < -0.5  # away from the silhouette, where central differences are exact enough
        atol = 1e-2  # central differences on a curved surface: O(spacing / radius) ~ 0.01 here
    got = normals(xyz, backend="reference")
    assert inner.sum() > 100
    torch.testing.assert_close(got[0][:, inner], n[0][:, inner], rtol=0, atol=atol)
    assert (got[0].norm(dim=0)[inner] - 1).abs().max() < 1e-6
    assert (got[0][:, ~inner & ~((got[0] != 0).any(0))] == 0).all()
    assert (got[0, :, 0] == 0).all() and (got[0, :, :, -1] == 0).all()  # border: undefined


def test_reference_invalid_points_have_no_normal():
    xyz, _ = plane(9, 11)
    xyz[0, :, 4, 5] = 0.0
    got = normals(xyz, backend="reference")
    for y, x in ((4, 5), (3, 5), (5, 5), (4, 4), (4, 6)):
        assert (got[0, :, y, x] == 0).all()
    assert (got[0, :, 4, 7] != 0).any() and (got[0, :, 2, 5] != 0).any()


@pytest.mark.parametrize("backend", backend_params("normals"))
def test_matches_reference_bitwise(backend):
    name, device = backend
    sizes = [(1, 1), (3, 3), (7, 5), (17, 23)] + ([(64, 300)] if name == "cpp" else [])
    for size in sizes:
        xyz = _random_cloud(3, *size, seed=size[1])
        expected = normals(xyz, backend="reference")
        got = normals(xyz.to(device), backend=name).cpu()
        assert torch.equal(got.view(torch.int32), expected.view(torch.int32)), size
    xyz, _, _ = sphere(31, 37)
    assert torch.equal(normals(xyz.to(device), backend=name).cpu().view(torch.int32),
                       normals(xyz, backend="reference").view(torch.int32))


@pytest.mark.parametrize("backend", [b for b in backend_params("normals") if b.id == "cpp"])
def test_cpp_thread_count_invariant(backend):
    xyz = _random_cloud(4, 70, 90, seed=3)
    torch.set_num_threads(1)
    one = normals(xyz, backend="cpp")
    torch.set_num_threads(2)
    assert torch.equal(one, normals(xyz, backend="cpp"))


@pytest.mark.skipif(INTERPRETED, reason="compiles the real kernel; the interpreter replaces it")
def test_triton_kernel_compiles_for_cuda_exactly():
    from anofast._kernels import normals as kn
    from anofast.testing import compile_ptx_for_cuda

    ptx = compile_ptx_for_cuda(kn._normals_kernel, {"out_ptr": "*fp32", "xyz_ptr": "*fp32", "H": "i32", "W": "i32"},
                               {"BLOCK_W": 128})
    # div.rn.f32 / sqrt.rn.f32 are IEEE exactly rounded (what C++ computes); approximations and FMA are not.
    for op in ("fma.rn.f32", "mad.f32", "rcp.approx", "div.approx", "div.full", "sqrt.approx"):
        assert op not in ptx, op


def test_rejects_bad_inputs():
    xyz = _random_cloud(2, 6, 7)
    with pytest.raises(ValueError, match="xyz"):
        normals(xyz[:, :2])
    with pytest.raises(ValueError, match="xyz"):
        normals(xyz[0])
    with pytest.raises(TypeError, match="xyz"):
        normals(xyz.to(torch.int32))
    with pytest.raises(TypeError, match="xyz"):
        normals(xyz.numpy())  # type: ignore[arg-type]
    bad = xyz.clone()
    bad[1, 2, 3, 3] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        normals(bad)
    with pytest.raises(ValueError, match="empty"):
        normals(xyz[:0])
