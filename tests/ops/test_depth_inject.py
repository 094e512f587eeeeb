"""depth_inject: reference properties (exact masks, invalid points untouched, height along the normal), then every
backend against the reference, bit for bit."""

from __future__ import annotations

import pytest
import torch

from anofast._backend import triton_interpreted
from anofast.ops.depth_inject import depth_inject
from anofast.ops.normals import normals
from anofast.reference import depth_inject as di
from anofast.testing import backend_params, make_batch

INTERPRETED = triton_interpreted()


def _inputs(batch: int, height: int, width: int, seed: int = 0, hole: bool = True):
    g = torch.Generator().manual_seed(seed)
    v, u = torch.meshgrid(torch.arange(height) - height / 2, torch.arange(width) - width / 2, indexing="ij")
    z = 1.0 + 0.0002 * (u**2 + v**2) + 0.001 * torch.rand(batch, height, width, generator=g)
    xyz = torch.stack((u * 0.002 * z, v * 0.002 * z, z), 1)
    xyz = torch.where(torch.rand(batch, 1, height, width, generator=g) < 0.05, 0.0, xyz).contiguous()
    n = normals(xyz, backend="reference")
    h = (0.003 * torch.rand(batch, 1, height, width, generator=g) - 0.001) * (torch.rand(batch, 1, 1, 1, generator=g) > 0.2)
    h[..., : height // 3, :] = 0.0  # rows with nothing to do: the copy path
    h = h.contiguous()
    alpha = (torch.rand(batch, 1, height, width, generator=g) * 0.6).contiguous()
    alpha[..., : width // 2] = 0.0
    rgb = make_batch(batch, 3, height, width, seed=seed)
    rgb[0, :, -1] = 1.0
    p = torch.zeros(batch, di.NPARAMS)
    light = torch.randn(batch, 3, generator=g)
    light[:, 2] = -light[:, 2].abs() - 0.5
    p[:, di.LX:di.LZ + 1] = light / light.norm(dim=1, keepdim=True)
    p[:, di.AMBIENT] = 0.2 + 0.4 * torch.rand(batch, generator=g)
    p[:, di.EPS_GEO] = 1e-6
    p[:, di.EPS_RGB3] = 3 * 0.5 / 255
    p[:, di.CAVITY] = 0.5
    p[:, di.INV_AMP] = 1 / 0.002
    p[:, di.COLOUR_R:di.COLOUR_B + 1] = torch.rand(batch, 3, generator=g)
    if hole and batch > 1:
        p[1, di.HOLE] = 1.0
    return rgb, xyz, n, h, p, alpha


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.int32)


# --- reference properties ----------------------------------------------------------------------------


@pytest.mark.parametrize("with_alpha", [False, True])
def test_reference_masks_are_exactly_the_changes(with_alpha):
    rgb, xyz, n, h, p, alpha = _inputs(4, 23, 31)
    out_rgb, out_xyz, out_n, geo, col = depth_inject(rgb, xyz, n, h, p, alpha=alpha if with_alpha else None,
                                                     backend="reference")
    assert torch.equal(geo.bool(), (out_xyz != xyz).any(1, keepdim=True))
    assert torch.equal(col.bool(), (out_rgb != rgb).any(1, keepdim=True))
    assert geo.sum() > 0 and col.sum() > 0
    invalid = (xyz == 0).all(1, keepdim=True)
    assert (out_xyz * invalid == 0).all() and not (geo.bool() & invalid).any()  # invalid stays invalid, untouched
    assert (out_rgb[invalid.expand_as(rgb)] == rgb[invalid.expand_as(rgb)]).all()
    assert ((out_xyz[1] == 0).all(0) == ((xyz[1] == 0).all(0) | geo[1, 0].bool())).all()  # the hole sample
    assert out_rgb.min() >= 0 and out_rgb.max() <= 1
    unchanged = h == 0
    assert not (geo.bool() & unchanged).any()
    # normals: recomputed where the surface moved, the input's elsewhere
    near = torch.nn.functional.max_pool2d(geo, 3, 1, 1) == 0
    assert torch.equal(out_n[near.expand_as(n)], n[near.expand_as(n)])


def test_reference_zero_height_is_identity():
    rgb, xyz, n, h, p, _ = _inputs(3, 17, 19)
    out = depth_inject(rgb, xyz, n, torch.zeros_like(h), p, backend="reference")
    assert torch.equal(out[0], rgb) and torch.equal(out[1], xyz) and torch.equal(out[2], n)
    assert out[3].sum() == 0 and out[4].sum() == 0


def test_reference_height_along_the_normal_and_the_ray():
    rgb, xyz, n, h, p, _ = _inputs(2, 25, 27, hole=False)
    out_rgb, out_xyz, _, geo, _ = depth_inject(rgb, xyz, n, h, p, backend="reference")
    moved = geo.bool().expand_as(xyz)
    delta = out_xyz - xyz
    along = (delta * n).sum(1, keepdim=True)
    m = geo.bool() & (n != 0).any(1, keepdim=True)  # a point without a normal moves along its ray by h / 0.2
    assert m.sum() > 100
    torch.testing.assert_close(along[m], h[m], rtol=1e-4, atol=5e-7)  # float32 cancellation in P' - P, P ~ 1
    # each point stays on its pixel's ray: delta parallel to xyz
    cross = torch.linalg.cross(delta, xyz, dim=1)
    assert cross[moved].abs().max() < 1e-6


# --- every backend vs the reference ------------------------------------------------------------------


@pytest.mark.parametrize("with_alpha", [False, True])
@pytest.mark.parametrize("backend", backend_params("depth_inject"))
def test_matches_reference_bitwise(backend, with_alpha):
    name, device = backend
    sizes = [(1, 1), (3, 4), (13, 17)] + ([(9, 7), (21, 33), (64, 300)] if name == "cpp" else [])
    for size in sizes:
        rgb, xyz, n, h, p, alpha = _inputs(3, *size, seed=size[0])
        a = alpha if with_alpha else None
        expected = depth_inject(rgb, xyz, n, h, p, alpha=a, backend="reference")
        got = depth_inject(*(t.to(device) for t in (rgb, xyz, n, h, p)), alpha=None if a is None else a.to(device),
                           backend=name)
        for what, e, g in zip(("rgb", "xyz", "normals", "mask_geo", "mask_rgb"), expected, got, strict=True):
            assert torch.equal(_bits(g.cpu()), _bits(e)), f"{name} {size} {what}"


@pytest.mark.parametrize("backend", [b for b in backend_params("depth_inject") if b.id == "cpp"])
def test_cpp_thread_count_invariant(backend):
    inputs = _inputs(6, 70, 90, seed=2)
    torch.set_num_threads(1)
    one = depth_inject(*inputs[:5], alpha=inputs[5], backend="cpp")
    torch.set_num_threads(2)
    two = depth_inject(*inputs[:5], alpha=inputs[5], backend="cpp")
    assert all(torch.equal(a, b) for a, b in zip(one, two, strict=True))


@pytest.mark.skipif(INTERPRETED, reason="compiles the real kernel; the interpreter replaces it")
def test_triton_kernel_compiles_for_cuda_exactly():
    from anofast._kernels import depth_inject as kd
    from anofast.testing import compile_ptx_for_cuda

    names = ("o_rgb_ptr", "o_xyz_ptr", "o_nrm_ptr", "geo_ptr", "mrgb_ptr", "rgb_ptr", "xyz_ptr", "nrm_ptr", "h_ptr",
             "alpha_ptr", "prm_ptr")
    sig = {**dict.fromkeys(names, "*fp32"), "H": "i32", "W": "i32"}
    ptx = compile_ptx_for_cuda(kd._depth_inject_kernel, sig, {"HAS_ALPHA": True, "BLOCK_W": 128})
    # div.rn.f32 / sqrt.rn.f32 are IEEE exactly rounded (what C++ computes); approximations and FMA are not.
    for op in ("fma.rn.f32", "mad.f32", "rcp.approx", "div.approx", "div.full", "sqrt.approx"):
        assert op not in ptx, op


# --- bad input -------------------------------------------------------------------------------------------


def test_rejects_bad_inputs():
    rgb, xyz, n, h, p, alpha = _inputs(2, 6, 7)
    with pytest.raises(ValueError, match="xyz"):
        depth_inject(rgb, xyz[:, :, :5], n, h, p)
    with pytest.raises(ValueError, match="normals"):
        depth_inject(rgb, xyz, n[:1], h, p)
    with pytest.raises(ValueError, match="height"):
        depth_inject(rgb, xyz, n, h[:, :, :3], p)
    with pytest.raises(ValueError, match="params"):
        depth_inject(rgb, xyz, n, h, p[:, :5])
    bad = h.clone()
    bad[0, 0, 1, 1] = float("nan")
    with pytest.raises(ValueError, match="height"):
        depth_inject(rgb, xyz, n, bad, p)
    with pytest.raises(ValueError, match="rgb"):
        depth_inject(rgb * 2, xyz, n, h, p)
    with pytest.raises(ValueError, match="alpha"):
        depth_inject(rgb, xyz, n, h, p, alpha=alpha + 1)
    q = p.clone()
    q[:, di.AMBIENT] = 0
    with pytest.raises(ValueError, match="ambient"):
        depth_inject(rgb, xyz, n, h, q)
