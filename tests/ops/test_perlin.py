"""perlin_noise / perlin_mask: sampler and reference properties, then every backend against the reference."""

from __future__ import annotations

import math

import pytest
import torch

from anofast import BackendUnavailableError, sample_seeds
from anofast._backend import triton_interpreted
from anofast.ops.perlin import PerlinParams, perlin_mask, perlin_noise, sample_perlin_params
from anofast.reference.perlin import G1, perlin_frame, perlin_noise_reference, row_extents
from anofast.testing import assert_exact_ptx, compile_ptx_for_cuda, assert_verbose_equal, backend_params

INTERPRETED = triton_interpreted()
SIZES = [(1, 1), (7, 5), (37, 53), (64, 64)]
CPP_SIZES = SIZES + [(256, 192), (9, 1100)]  # 1100 > 512: several chunks per row in the C++ mask path
GLASS = {"lattices": 2, "combine_probs": (1 / 3, 1 / 3, 1 / 3)}
# Two lattices over the full circle: cos < 0 too (+-90 degrees never gives it), where columns run backwards.
TWO_FULL = {**GLASS, "rotation_range": (-180.0, 180.0)}


def _params(batch: int = 6, seed: int = 0, **kw) -> PerlinParams:
    return sample_perlin_params(sample_seeds(seed, batch), **kw)


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.int32)  # bitwise comparison: tells -0.0 from +0.0


def _bbox_of(mask: torch.Tensor) -> torch.Tensor:
    rows = []
    for m in mask[:, 0]:
        nz = m.nonzero()
        if len(nz) == 0:
            rows.append([0, 0, 0, 0])
        else:
            (y0, x0), (y1, x1) = nz.min(0).values.tolist(), nz.max(0).values.tolist()
            rows.append([y0, x0, y1 + 1, x1 + 1])
    return torch.tensor(rows, dtype=torch.int32).view(-1, 4)


def _rot_params(theta_deg: float, res=(4, 4), batch: int = 1) -> PerlinParams:
    p = _params(batch)
    th = torch.tensor(math.radians(theta_deg), dtype=torch.float32)
    rot = torch.stack((th.cos(), th.sin())).expand(batch, 1, 2).contiguous()
    r = torch.tensor(res, dtype=torch.int32).expand(batch, 1, 2).contiguous()
    return PerlinParams(res=r, grads=p.grads, rot=rot, threshold=p.threshold, combine=p.combine)


# --- sampler -----------------------------------------------------------------------------------------


def test_sampler_shapes_dtypes_and_ranges():
    p = _params(64, **GLASS, threshold=(0.2, 0.6), rotation_range=(-30.0, 30.0), res_exp_range=(1, 4))
    assert p.res.shape == (64, 2, 2) and p.res.dtype == torch.int32
    assert p.grads.shape == (64, 2, G1, G1, 2) and p.grads.dtype == torch.float32
    assert p.rot.shape == (64, 2, 2) and p.threshold.shape == (64,) and p.combine.shape == (64,)
    assert set(p.res.unique().tolist()) <= {2, 4, 8}
    torch.testing.assert_close(p.grads.norm(dim=-1), torch.ones(64, 2, G1, G1))
    angle = torch.rad2deg(torch.atan2(p.rot[..., 1], p.rot[..., 0]))
    assert angle.min() >= -30.001 and angle.max() <= 30.001
    assert p.threshold.min() >= 0.2 and p.threshold.max() < 0.6
    assert set(p.combine.tolist()) <= {0, 1, 2}


def test_sampler_is_per_sample_and_deterministic():
    seeds = sample_seeds(3, 5)
    a, b = sample_perlin_params(seeds), sample_perlin_params(seeds)
    one = sample_perlin_params(seeds[2:3])
    for f in ("res", "grads", "rot", "threshold", "combine"):
        assert torch.equal(getattr(a, f), getattr(b, f))
        assert torch.equal(getattr(a, f)[2:3], getattr(one, f))  # independent of batch size and position


def test_sampler_attempt_is_an_independent_redraw_and_lattice0_is_shared():
    seeds = sample_seeds(4, 32)
    base = sample_perlin_params(seeds)
    assert torch.equal(sample_perlin_params(seeds, attempt=0).grads, base.grads)
    again = sample_perlin_params(seeds, attempt=1)
    assert not torch.equal(again.grads, base.grads) and not torch.equal(again.rot, base.rot)
    two = sample_perlin_params(seeds, **GLASS)
    assert torch.equal(two.res[:, :1], base.res) and torch.equal(two.grads[:, :1], base.grads)
    assert torch.equal(two.rot[:, :1], base.rot)


def test_sampler_combine_and_exponent_frequencies():
    p = _params(3000, lattices=2, combine_probs=(0.5, 0.5, 0.0))
    freq = torch.bincount(p.combine, minlength=3).float() / 3000
    assert abs(freq[0] - 0.5) < 0.04 and freq[2] == 0
    exps = torch.log2(p.res.float()).long().flatten()
    assert exps.min() == 0 and exps.max() == 5
    assert (torch.bincount(exps).float() / exps.numel() - 1 / 6).abs().max() < 0.02
    assert (_params(50).combine == 0).all()  # one lattice: always code 0


def test_params_index_and_to():
    p = _params(5, **GLASS)
    q = p.index(torch.tensor([3, 1]))
    assert torch.equal(q.grads, p.grads[[3, 1]]) and q.batch_size == 2
    assert p.to("cpu") is p


@pytest.mark.parametrize(
    "kw",
    [
        {"res_exp_range": (0, 7)},
        {"res_exp_range": (3, 3)},
        {"lattices": 3},
        {"combine_probs": (0.5, 0.6, 0.0)},
        {"combine_probs": (1.0, 0.0)},
        {"attempt": -1},
        {"threshold": (0.6, 0.2)},
    ],
)
def test_sampler_rejects_bad_arguments(kw):
    with pytest.raises(ValueError):
        _params(2, **kw)


def test_sampler_rejects_bad_seeds():
    with pytest.raises(TypeError):
        sample_perlin_params(torch.zeros(3, dtype=torch.int32))


# --- reference properties ----------------------------------------------------------------------------


def test_reference_noise_is_zero_at_lattice_nodes_without_rotation():
    p = _rot_params(0.0, res=(4, 8))
    noise = perlin_noise(p, (64, 64), backend="reference")[0, 0]
    assert noise.shape == (64, 64) and noise.abs().max() <= 1.5
    nodes = noise[::16, ::8]  # v = y*4/64, u = x*8/64 are integers there: every corner offset is 0
    assert torch.equal(nodes, torch.zeros_like(nodes))
    assert noise.abs().max() > 0.1


def test_reference_rotation_zero_fills_corners():
    p = _rot_params(45.0, res=(2, 2), batch=1)
    p = PerlinParams(res=p.res, grads=p.grads, rot=p.rot, threshold=torch.tensor([-0.5]), combine=p.combine)
    noise = perlin_noise(p, (32, 32), backend="reference")[0, 0]
    for y, x in ((0, 0), (0, 31), (31, 0), (31, 31)):
        assert noise[y, x] == 0
    assert noise[16, 16] != 0
    mask, _ = perlin_mask(_rot_params(45.0, res=(2, 2)), (32, 32), backend="reference")
    assert mask[0, 0, [0, 0, 31, 31], [0, 31, 0, 31]].sum() == 0


def test_reference_mask_semantics_combine_foreground_apply_bbox():
    p = _params(12, seed=5, **GLASS)
    size = (40, 48)
    noise = perlin_noise(p, size, backend="reference")
    m = noise > p.threshold.view(-1, 1, 1, 1)
    fg = (torch.rand(12, 1, *size, generator=torch.Generator().manual_seed(0)) > 0.3).float()
    apply = torch.arange(12) % 4 != 3
    mask, bbox = perlin_mask(p, size, foreground=fg, apply=apply, backend="reference")
    for b in range(12):
        code = int(p.combine[b])
        expect = m[b, 0] if code == 0 else (m[b, 0] | m[b, 1]) if code == 1 else (m[b, 0] & m[b, 1])
        expect = expect & (fg[b, 0] > 0.5) & bool(apply[b])
        assert torch.equal(mask[b, 0], expect.float()), b
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(bbox, _bbox_of(mask))
    assert (mask[~apply] == 0).all() and (bbox[~apply] == 0).all()


def test_row_extents_empty_and_full_rows():
    mask = torch.zeros(1, 1, 3, 5)
    mask[0, 0, 1, 1:4] = 1
    mask[0, 0, 2] = 1
    assert row_extents(mask).tolist() == [[[5, 0], [1, 4], [0, 5]]]


def test_draem_like_statistics():
    # METHODS.md 0.1: DRAEM at 256², tau 0.5, rotated: mean coverage 4.9 %, empty 4.5 % (N = 2000).
    p = _params(300, seed=11)
    mask, bbox = perlin_mask(p, (256, 256))
    cover = mask.mean(dim=(1, 2, 3))
    assert 0.040 < cover.mean() < 0.060
    assert ((bbox[:, 2] > bbox[:, 0]) == (cover > 0)).all()


# --- every backend vs the reference ------------------------------------------------------------------


def _sizes(name: str) -> list[tuple[int, int]]:
    return CPP_SIZES if name == "cpp" else SIZES


@pytest.mark.parametrize("lattices", [1, 2])
@pytest.mark.parametrize("backend", backend_params("perlin_noise"))
def test_noise_matches_reference_bitwise(backend, lattices):
    name, device = backend
    p = _params(3 if name == "triton" else 8, seed=lattices, **(TWO_FULL if lattices == 2 else {}))
    for size in _sizes(name):
        expected = perlin_noise(p, size, backend="reference")
        got = perlin_noise(p.to(device), size, backend=name).cpu()
        assert_verbose_equal(_bits(got), _bits(expected), f"{name} noise {size}")


@pytest.mark.parametrize("lattices", [1, 2])
@pytest.mark.parametrize("backend", backend_params("perlin_mask"))
def test_mask_matches_reference(backend, lattices):
    name, device = backend
    batch = 3 if name == "triton" else 8
    p = _params(batch, seed=7 + lattices, **(TWO_FULL if lattices == 2 else {}))
    apply = torch.arange(batch) % 3 != 1
    for size in _sizes(name):
        fg = (torch.rand(batch, 1, *size, generator=torch.Generator().manual_seed(1)) > 0.2).float()
        for kw in ({}, {"foreground": fg, "apply": apply}):
            m_ref, b_ref = perlin_mask(p, size, backend="reference", **kw)
            dev_kw = {k: v.to(device) for k, v in kw.items()}
            m, b = perlin_mask(p, size, device=device, backend=name, **dev_kw)
            assert_verbose_equal(m.cpu(), m_ref, f"{name} mask {size} {sorted(kw)}")
            assert_verbose_equal(b.cpu(), b_ref, f"{name} bbox {size} {sorted(kw)}")


@pytest.mark.parametrize("backend", backend_params("perlin_mask"))
def test_negative_threshold_masks_the_zero_fill(backend):
    # noise is 0 outside the rotated frame, so a negative threshold marks it: the backends must agree there too.
    name, device = backend
    p = _rot_params(30.0, res=(2, 4), batch=2)
    p = PerlinParams(res=p.res, grads=p.grads, rot=p.rot, threshold=torch.tensor([-0.2, 0.3]), combine=p.combine)
    m_ref, b_ref = perlin_mask(p, (21, 30), backend="reference")
    m, b = perlin_mask(p, (21, 30), device=device, backend=name)
    assert m_ref[0, 0, 0, 0] == 1
    assert_verbose_equal(m.cpu(), m_ref, name)
    assert_verbose_equal(b.cpu(), b_ref, name)


@pytest.mark.parametrize("backend", backend_params("perlin_noise"))
def test_any_integer_resolution(backend):
    # The sampler draws powers of two (DRAEM); the kernels take any resolution in [1, G1 - 1].
    name, device = backend
    p = _params(3, seed=2)
    res = torch.tensor([[[3, 5]], [[32, 7]], [[1, 31]]], dtype=torch.int32)
    p = PerlinParams(res=res, grads=p.grads, rot=p.rot, threshold=p.threshold, combine=p.combine)
    expected = perlin_noise(p, (23, 41), backend="reference")
    assert_verbose_equal(_bits(perlin_noise(p.to(device), (23, 41), backend=name).cpu()), _bits(expected), name)


@pytest.mark.parametrize("backend", backend_params("perlin_mask", include_reference=True))
def test_empty_batch(backend):
    name, device = backend
    p = _params(0, **GLASS)
    assert p.grads.shape == (0, 2, G1, G1, 2)
    assert perlin_noise(p.to(device), (8, 9), backend=name).shape == (0, 2, 8, 9)
    mask, bbox = perlin_mask(p, (8, 9), device=device, backend=name)
    assert mask.shape == (0, 1, 8, 9) and bbox.shape == (0, 4)


@pytest.mark.parametrize("backend", [b for b in backend_params("perlin_mask") if b.id == "cpp"])
def test_cpp_thread_count_invariant(backend):
    p = _params(8, seed=3, **GLASS)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = perlin_noise(p, (96, 80), backend="cpp"), perlin_mask(p, (96, 80), backend="cpp")
        torch.set_num_threads(2)
        two = perlin_noise(p, (96, 80), backend="cpp"), perlin_mask(p, (96, 80), backend="cpp")
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(_bits(one[0]), _bits(two[0]))
    assert torch.equal(one[1][0], two[1][0]) and torch.equal(one[1][1], two[1][1])


@pytest.mark.parametrize("backend", [b for b in backend_params("perlin_mask") if b.id == "cpp"])
def test_cpp_baseline_copy_matches(backend, monkeypatch):
    # x86-64 builds carry a 4-wide (SSE2) and an 8-wide (AVX2) copy of the row loops; check the one not picked.
    p = _params(6, seed=9, **GLASS)
    for size in ((37, 53), (64, 300)):
        monkeypatch.setenv("ANOFAST_NO_AVX2", "1")
        n4, m4 = perlin_noise(p, size, backend="cpp"), perlin_mask(p, size, backend="cpp")
        monkeypatch.delenv("ANOFAST_NO_AVX2")
        assert torch.equal(_bits(n4), _bits(perlin_noise(p, size, backend="reference")))
        ref = perlin_mask(p, size, backend="reference")
        assert torch.equal(m4[0], ref[0]) and torch.equal(m4[1], ref[1])


@pytest.mark.skipif(INTERPRETED, reason="compiles the real kernels; the interpreter replaces them")
def test_triton_kernels_compile_for_cuda_without_fma():
    from anofast._kernels import perlin as kp

    frame = {"H": "i32", "W": "i32", "cx": "fp32", "cy": "fp32", "xmax": "fp32", "ymax": "fp32"}
    ptrs = {"res_ptr": "*i32", "grads_ptr": "*fp32", "frame_ptr": "*fp32"}
    noise = {"out_ptr": "*fp32", **ptrs, **frame}
    assert_exact_ptx(compile_ptx_for_cuda(kp._perlin_noise_kernel, noise, {"G1": G1, "BLOCK_W": 256}))
    mask = {"mask_ptr": "*fp32", "ext_ptr": "*i32", **ptrs, "thr_ptr": "*fp32", "comb_ptr": "*i32",
            "fg_ptr": "*fp32", "apply_ptr": "*u8", "H": "i32", "W": "i32", "L": "i32",
            "cx": "fp32", "cy": "fp32", "xmax": "fp32", "ymax": "fp32"}  # fmt: skip
    for has_fg in (False, True):
        ptx = compile_ptx_for_cuda(kp._perlin_mask_kernel, mask, {"G1": G1, "HAS_FG": has_fg, "BLOCK_W": 256})
        assert_exact_ptx(ptx)


# --- bad input -------------------------------------------------------------------------------------------


def test_apply_rejects_bad_inputs():
    p = _params(2)
    with pytest.raises(ValueError):
        perlin_mask(p, (0, 8))
    with pytest.raises(TypeError):
        perlin_mask(p, 8)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="foreground"):
        perlin_mask(p, (8, 8), foreground=torch.ones(2, 1, 8, 7))
    with pytest.raises(ValueError, match="foreground"):
        perlin_mask(p, (8, 8), foreground=torch.full((2, 1, 8, 8), float("nan")))
    with pytest.raises(TypeError, match="foreground"):
        perlin_mask(p, (8, 8), foreground=torch.ones(2, 1, 8, 8, dtype=torch.int64))
    with pytest.raises(ValueError, match="apply"):
        perlin_mask(p, (8, 8), apply=torch.ones(2))
    bad = PerlinParams(res=p.res * 0 + G1, grads=p.grads, rot=p.rot, threshold=p.threshold, combine=p.combine)
    with pytest.raises(ValueError, match="res"):
        perlin_noise(bad, (8, 8))
    nan = p.rot.clone()
    nan[1, 0, 0] = float("nan")
    bad = PerlinParams(res=p.res, grads=p.grads, rot=nan, threshold=p.threshold, combine=p.combine)
    with pytest.raises(ValueError, match="rot"):
        perlin_noise(bad, (8, 8))
    bad = PerlinParams(res=p.res, grads=p.grads, rot=p.rot, threshold=p.threshold, combine=p.combine + 1)
    with pytest.raises(ValueError, match="combine"):
        perlin_mask(bad, (8, 8))
    bad = PerlinParams(res=p.res, grads=p.grads[:, :, :5], rot=p.rot, threshold=p.threshold, combine=p.combine)
    with pytest.raises(ValueError, match="grads"):
        perlin_noise(bad, (8, 8))
    with pytest.raises(TypeError):
        perlin_noise("params", (8, 8))  # type: ignore[arg-type]


@pytest.mark.skipif(INTERPRETED, reason="triton runs on CPU tensors under TRITON_INTERPRET=1")
def test_explicit_triton_on_cpu_raises():
    with pytest.raises(BackendUnavailableError):
        perlin_mask(_params(1), (8, 8), backend="triton")


def test_frame_is_float32_division():
    res = torch.tensor([[[4, 8]]], dtype=torch.int32)
    frame = perlin_frame(res, torch.tensor([[[1.0, 0.0]]]), 7, 3)
    assert frame.dtype == torch.float32
    assert frame[0, 0, 2] == torch.tensor(8.0) / torch.tensor(3.0)
    assert frame[0, 0, 3] == torch.tensor(4.0) / torch.tensor(7.0)
    assert perlin_noise_reference(res, torch.zeros(1, 1, G1, G1, 2), frame, 7, 3).abs().max() == 0
