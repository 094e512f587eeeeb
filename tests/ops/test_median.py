"""masked_median: the reference against a brute-force sort, then every backend against the reference, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anofast._backend import triton_interpreted
from anofast.ops.median import MAX_RADIUS, masked_median
from anofast.reference.median import disk_offsets
from anofast.testing import assert_exact_ptx, assert_verbose_equal, backend_params, compile_ptx_for_cuda

INTERPRETED = triton_interpreted()
KINDS = ("normal", "ties", "thirds", "negative", "signed_zeros")


def _values(batch: int, size: tuple[int, int], kind: str, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    shape = (batch, 1, *size)
    if kind == "normal":
        return torch.randn(shape, generator=g)
    if kind == "ties":  # few distinct values: many ties, and ties with the zero padding
        return torch.randint(0, 3, shape, generator=g).float()
    if kind == "thirds":  # quantised k/3 (inexact binary fractions), both signs
        return torch.randint(-4, 5, shape, generator=g) / 3.0
    if kind == "negative":  # all negative: the zero padding is the largest value
        return -(torch.rand(shape, generator=g) + 0.25)
    if kind == "signed_zeros":  # -0.0 and +0.0 mixed with a few values: the output never holds -0.0
        v = torch.where(torch.rand(shape, generator=g) < 0.5, -0.0, 0.0)
        return torch.where(torch.rand(shape, generator=g) < 0.2, torch.randn(shape, generator=g), v)
    raise ValueError(kind)


def _mask(batch: int, size: tuple[int, int], kind: str, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed + 1)
    h, w = size
    if kind == "empty":
        return torch.zeros(batch, 1, h, w)
    if kind == "full":
        return torch.ones(batch, 1, h, w)
    if kind == "random":
        return (torch.rand(batch, 1, h, w, generator=g) < 0.3).float()
    if kind == "boxes":  # NSA-like rectangles, some touching the border
        m = torch.zeros(batch, 1, h, w)
        for b in range(batch):
            for _ in range(2):
                y0, x0 = (int(torch.randint(0, s, (1,), generator=g)) for s in (h, w))
                y1 = min(h, y0 + 1 + int(torch.randint(0, max(1, h // 2), (1,), generator=g)))
                x1 = min(w, x0 + 1 + int(torch.randint(0, max(1, w // 2), (1,), generator=g)))
                m[b, 0, y0:y1, x0:x1] = 1.0
        m[0, 0, -1, -1] = 1.0  # the last pixel (a vector past the row's end)
        return m
    raise ValueError(kind)


def _brute_force(values: torch.Tensor, mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Sort the disk values of every mask pixel (zero padding), take index (n - 1) // 2; +0.0 for a zero."""
    v = values.numpy()
    b_, _, h, w = v.shape
    dy, dx = (t.numpy() for t in disk_offsets(radius))
    out = np.zeros_like(v)
    for b, y, x in zip(*np.nonzero(mask.numpy()[:, 0] > 0.5), strict=True):
        yy, xx = y + dy, x + dx
        inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        vals = np.where(inside, v[b, 0, yy.clip(0, h - 1), xx.clip(0, w - 1)], np.float32(0.0))
        out[b, 0, y, x] = np.sort(vals)[(len(vals) - 1) // 2] + np.float32(0.0)
    return torch.from_numpy(out)


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.int32)


# --- the reference --------------------------------------------------------------------------------------


def test_disk_sizes():
    assert [len(disk_offsets(r)[0]) for r in range(7)] == [1, 5, 13, 29, 49, 81, 113]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("radius", [0, 1, 2, 5])
def test_reference_is_the_sorted_disk_value(kind, radius):
    values = _values(3, (9, 13), kind, seed=radius)
    mask = _mask(3, (9, 13), "random", seed=radius)
    got = masked_median(values, mask, radius, backend="reference")
    assert_verbose_equal(_bits(got), _bits(_brute_force(values, mask, radius)), f"{kind} r={radius}")
    assert not torch.signbit(got).logical_and(got == 0).any()  # never -0.0
    assert torch.equal(got[mask == 0], torch.zeros(int((mask == 0).sum())))


def test_reference_small_cases():
    values = torch.arange(1.0, 10.0).view(1, 1, 3, 3)
    mask = torch.ones(1, 1, 3, 3)
    assert torch.equal(masked_median(values, mask, 0, backend="reference"), values)  # the value itself
    got = masked_median(values, mask, 1, backend="reference")[0, 0]
    # centre: median of 2, 4, 5, 6, 8; corners: of 0, 0, 1, 2, 4 and 0, 0, 6, 8, 9 (two zeros of padding)
    assert got[1, 1] == 5.0 and got[0, 0] == 1.0 and got[2, 2] == 6.0
    far = masked_median(values, mask, 3, backend="reference")  # 29 values, at most 9 of them non-zero
    assert torch.equal(far, torch.zeros_like(far))


# --- every backend against the reference ----------------------------------------------------------------


def _check(name, device, values, mask, radius, what, **kw):
    expected = masked_median(values, mask, radius, backend="reference")
    got = masked_median(values.to(device), mask.to(device), radius, backend=name, **kw).cpu()
    assert_verbose_equal(_bits(got), _bits(expected), what)


@pytest.mark.parametrize("backend", backend_params("masked_median"))
def test_matches_reference_bitwise(backend):
    name, device = backend
    if name == "triton":
        sizes, radii, batch = [(1, 1), (7, 5), (12, 17)], [0, 1, 2, 3], 2
    else:
        sizes, radii, batch = [(1, 1), (7, 5), (12, 17), (37, 53), (64, 64)], [0, 1, 2, 3, 5, 6], 3
    for size in sizes:
        for radius in radii:
            for kind in KINDS:
                for mkind in ("random", "boxes"):
                    values = _values(batch, size, kind, seed=size[0] + radius)
                    mask = _mask(batch, size, mkind, seed=size[1] + radius)
                    _check(name, device, values, mask, radius, f"{name} {size} r={radius} {kind} {mkind}")


@pytest.mark.parametrize("backend", backend_params("masked_median"))
@pytest.mark.parametrize("mkind", ["empty", "full"])
def test_empty_and_full_masks(backend, mkind):
    name, device = backend
    radius = 2 if name == "triton" else 5
    values = _values(2, (11, 16), "thirds", seed=3)
    mask = _mask(2, (11, 16), mkind)
    _check(name, device, values, mask, radius, f"{name} {mkind}")
    got = masked_median(values.to(device), mask.to(device), radius, backend=name)
    if mkind == "empty":
        assert not got.any()


@pytest.mark.parametrize("backend", backend_params("masked_median"))
def test_radius_5_nsa_like(backend):
    """NSA's case: radius 5, rectangles, non-negative values with zeros outside the mask (diff * mask)."""
    name, device = backend
    size = (16, 16) if name == "triton" else (48, 70)
    mask = _mask(2, size, "boxes", seed=5)
    values = torch.rand(2, 1, *size, generator=torch.Generator().manual_seed(5)) * 255.0 * mask
    _check(name, device, values, mask, 5, f"{name} nsa-like")


@pytest.mark.parametrize("backend", backend_params("masked_median"))
def test_batch_size_independence_and_bool_mask(backend):
    name, device = backend
    values = _values(4, (10, 12), "thirds", seed=8)
    mask = _mask(4, (10, 12), "boxes", seed=8)
    whole = masked_median(values.to(device), (mask > 0.5).to(device), 2, backend=name).cpu()
    for b in range(4):
        one = masked_median(values[b : b + 1].to(device), mask[b : b + 1].to(device), 2, backend=name).cpu()
        assert torch.equal(_bits(one), _bits(whole[b : b + 1]))


@pytest.mark.parametrize("backend", backend_params("masked_median"))
def test_non_contiguous_inputs(backend):
    name, device = backend
    values = _values(2, (9, 22), "normal", seed=4)[..., ::2]  # a strided view
    mask = _mask(2, (9, 22), "random", seed=4)[..., 1::2]
    expected = masked_median(values.contiguous(), mask.contiguous(), 2, backend="reference")
    got = masked_median(values.to(device), mask.to(device), 2, backend=name).cpu()
    assert torch.equal(_bits(got), _bits(expected))


@pytest.mark.parametrize("backend", [b for b in backend_params("masked_median") if b.id == "cpp"])
def test_cpp_both_simd_copies_match_reference(backend, monkeypatch):
    """x86-64 builds carry a 4-wide (SSE2) and an 8-wide (AVX2) copy, each with the compile-time network of radius 5
    and the run-time one of every other radius; rows wider than a window tile (128 columns), mask runs that end
    anywhere, and every value kind."""
    for size in ((5, 3), (23, 41), (17, 301)):
        for radius in (1, 4, 5, 7):
            for kind in KINDS:
                values = _values(3, size, kind, seed=radius + size[1])
                mask = _mask(3, size, "full" if kind == "normal" else "boxes", seed=radius)
                expected = masked_median(values, mask, radius, backend="reference")
                for no_avx2 in ("1", "0"):
                    monkeypatch.setenv("ANOFAST_NO_AVX2", no_avx2)
                    got = masked_median(values, mask, radius, backend="cpp")
                    assert_verbose_equal(_bits(got), _bits(expected), f"NO_AVX2={no_avx2} {size} r={radius} {kind}")


@pytest.mark.parametrize("backend", [b for b in backend_params("masked_median") if b.id == "cpp"])
def test_cpp_thread_count_invariant(backend):
    values = _values(6, (40, 70), "thirds", seed=2)
    mask = _mask(6, (40, 70), "boxes", seed=2)
    torch.set_num_threads(1)
    one = masked_median(values, mask, 5, backend="cpp")
    torch.set_num_threads(2)
    two = masked_median(values, mask, 5, backend="cpp")
    assert torch.equal(_bits(one), _bits(two))


@pytest.mark.skipif(not INTERPRETED, reason="the interpreter's block-size variants; CUDA runs the default")
def test_triton_small_blocks_match_reference():
    """32 pixels per program, as on CUDA: blocks without a mask pixel, blocks across rows and samples; and a radius
    whose disk square spans several chunks (R = 6: 169 > 128)."""
    pytest.importorskip("triton")
    from anofast._kernels.median import masked_median_triton

    for radius, size in ((2, (9, 13)), (6, (5, 7))):
        values = _values(2, size, "thirds", seed=radius)
        mask = _mask(2, size, "boxes", seed=radius)
        expected = masked_median(values, mask, radius, backend="reference")
        got = masked_median_triton(values, mask, radius, block=32)
        assert_verbose_equal(_bits(got), _bits(expected), f"block 32 r={radius}")


@pytest.mark.skipif(INTERPRETED, reason="compiles the real kernel; the interpreter replaces it")
def test_triton_kernel_compiles_for_cuda():
    from anofast._kernels import median as km

    sig = {"out_ptr": "*fp32", "val_ptr": "*fp32", "mask_ptr": "*fp32", "total": "i64", "H": "i32", "W": "i32"}
    for radius, k, chunk, nchunk in ((5, 40, 128, 1), (6, 56, 128, 2)):
        const = {"R": radius, "K": k, "CHUNK": chunk, "NCHUNK": nchunk, "BLOCK": 32}
        assert_exact_ptx(compile_ptx_for_cuda(km._masked_median_kernel, sig, const))


# --- bad input ------------------------------------------------------------------------------------------


def test_rejects_bad_inputs():
    values = _values(2, (6, 7), "normal")
    mask = _mask(2, (6, 7), "random")
    with pytest.raises(TypeError, match="values"):
        masked_median(values.double(), mask)
    with pytest.raises(TypeError, match="values"):
        masked_median(values.numpy(), mask)
    with pytest.raises(ValueError, match="values"):
        masked_median(values[:, 0], mask)  # 3-D
    with pytest.raises(ValueError, match="values"):
        masked_median(values.expand(2, 3, 6, 7), mask)  # 3 channels
    with pytest.raises(ValueError, match="empty batch"):
        masked_median(values[:0], mask[:0])
    for bad in (float("nan"), float("inf"), -float("inf")):
        v = values.clone()
        v[1, 0, 5, 6] = bad
        with pytest.raises(ValueError, match="values contains NaN or infinite"):
            masked_median(v, mask)
    with pytest.raises(TypeError, match="mask"):
        masked_median(values, mask.long())
    with pytest.raises(ValueError, match="mask"):
        masked_median(values, mask[:, :, :5])
    with pytest.raises(ValueError, match="mask"):
        masked_median(values, mask[:1])
    with pytest.raises(TypeError, match="radius"):
        masked_median(values, mask, 2.0)
    with pytest.raises(TypeError, match="radius"):
        masked_median(values, mask, True)
    with pytest.raises(ValueError, match="radius"):
        masked_median(values, mask, -1)
    with pytest.raises(ValueError, match="radius"):
        masked_median(values, mask, MAX_RADIUS + 1)
    with pytest.raises(ValueError, match="backend must be one of"):
        masked_median(values, mask, backend="gpu")


def test_mask_on_another_device_is_refused():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    with pytest.raises(ValueError, match="mask"):
        masked_median(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4, device="cuda"))
