"""feature_noise: reference properties (exact mask, untouched pixels, noise statistics), then every backend against
the reference bit for bit."""

from __future__ import annotations

import pytest
import torch

from anofast import _rng, sample_seeds
from anofast._backend import triton_interpreted
from anofast._rng import Stream
from anofast.ops.feature_noise import feature_noise
from anofast.testing import assert_exact_ptx, assert_verbose_equal, backend_params, compile_ptx_for_cuda

INTERPRETED = triton_interpreted()
SHAPES = [(1, 1, 1, 1), (2, 3, 7, 5), (3, 5, 13, 9)]
CPP_SHAPES = SHAPES + [(2, 4, 70, 65), (1, 2, 3, 4100), (3, 4, 70, 64)]  # several row blocks; a row wider
# than a block; whole vectors per block (the AVX2 copy streams new copies out)


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.int32)


def _inputs(shape, copies: int = 1, seed: int = 0, kind: str = "binary"):
    b, c, h, w = shape
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(shape, generator=g)
    f.view(-1)[:2] = torch.tensor([-0.0, 0.0])[: f.numel()]  # signed zeros: the bitwise "changed" test sees them
    n = b * copies
    seeds = sample_seeds(seed, n)
    std = 0.015 + torch.rand(n, generator=g)
    std[0] = 0.0  # no noise at all: untouched, empty mask
    if kind == "none":
        return f, seeds, std, None
    weight = (torch.rand(n, 1, h, w, generator=g) < 0.4).float()
    if kind == "scaled":
        weight = weight * (1.0 + torch.rand(n, 1, h, w, generator=g))
    if n > 1:
        weight[-1] = 0.0  # an empty mask
    return f, seeds, std, weight


# --- reference properties ----------------------------------------------------------------------------


@pytest.mark.parametrize("copies", [1, 2])
def test_reference_mask_is_exactly_the_changed_pixels(copies):
    f, seeds, std, weight = _inputs((3, 6, 11, 10), copies, seed=copies)
    out, mask, count = feature_noise(f, seeds, std, weight, copies=copies, backend="reference")
    assert out.shape == (3 * copies, 6, 11, 10) and mask.shape == (3 * copies, 1, 11, 10)
    src = f.repeat(copies, 1, 1, 1)
    changed = (_bits(out) != _bits(src)).any(dim=1, keepdim=True)
    assert torch.equal(mask, changed.float()) and torch.equal(count, changed.flatten(1).sum(1))
    assert (mask <= weight).all()  # noise only where the weight is non-zero
    untouched = (weight == 0).expand_as(out)
    assert torch.equal(_bits(out)[untouched], _bits(src)[untouched])
    assert count[0] == 0 and count[-1] == 0 and count[1:-1].min() > 0  # std 0 / empty weight: nothing changes
    assert torch.equal(out[0], src[0])


def test_reference_formula_and_counters():
    # out = f + n * (std * weight), n = to_normal(bits(key(seed), c*H*W + p)): the documented element order.
    f = torch.rand(2, 3, 4, 5)
    seeds = torch.tensor([11, -5], dtype=torch.int64)
    std = torch.tensor([0.5, 0.25])
    weight = torch.rand(2, 1, 4, 5) + 0.5
    out, _, _ = feature_noise(f, seeds, std, weight, backend="reference")
    n = _rng.normal(seeds, Stream.FEATURE_NOISE, 3 * 4 * 5).view(2, 3, 4, 5)
    expect = f + n * (std.view(2, 1, 1, 1) * weight)
    assert torch.equal(out, expect)


def test_noise_statistics():
    f = torch.zeros(2, 64, 32, 32)
    out, mask, _ = feature_noise(f, sample_seeds(0, 2), 0.015, backend="reference")
    assert abs(out.mean().item()) < 3e-4 and abs(out.std().item() - 0.015) < 3e-4
    assert mask.all()
    # copies are independent draws
    two, _, _ = feature_noise(f[:1], sample_seeds(1, 2), 0.015, copies=2, backend="reference")
    assert abs(torch.corrcoef(two.flatten(1))[0, 1].item()) < 0.03


# --- every backend vs the reference ------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["binary", "scaled", "none"])
@pytest.mark.parametrize("backend", backend_params("feature_noise"))
def test_matches_reference_bitwise(backend, kind):
    name, device = backend
    for shape in CPP_SHAPES if name == "cpp" else SHAPES:
        for copies in (1, 2):
            f, seeds, std, weight = _inputs(shape, copies, seed=shape[2])
            expected = feature_noise(f, seeds, std, weight, copies=copies, backend="reference")
            dev_w = None if weight is None else weight.to(device)
            got = feature_noise(f.to(device), seeds.to(device), std.to(device), dev_w, copies=copies, backend=name)
            what = f"{name} {kind} {shape} copies={copies}"
            assert_verbose_equal(_bits(got[0].cpu()), _bits(expected[0]), f"{what} out")
            assert_verbose_equal(got[1].cpu(), expected[1], f"{what} mask")
            assert_verbose_equal(got[2].cpu(), expected[2], f"{what} count")


@pytest.mark.parametrize("backend", backend_params("feature_noise", include_reference=True))
def test_inplace_matches_out_of_place(backend):
    name, device = backend
    f, seeds, std, weight = _inputs((3, 4, 9, 70), seed=5)
    expected = feature_noise(f, seeds, std, weight, backend="reference")
    x = f.clone().to(device)
    out, mask, count = feature_noise(x, seeds.to(device), std.to(device), weight.to(device), inplace=True, backend=name)
    assert out.data_ptr() == x.data_ptr()
    assert torch.equal(_bits(x.cpu()), _bits(expected[0]))
    assert torch.equal(mask.cpu(), expected[1]) and torch.equal(count.cpu(), expected[2])


@pytest.mark.parametrize("backend", backend_params("feature_noise", include_reference=True))
def test_out_buffer(backend):
    name, device = backend
    f, seeds, std, weight = _inputs((2, 3, 8, 66), copies=2, seed=6)
    expected = feature_noise(f, seeds, std, weight, copies=2, backend="reference")
    buf = torch.full((4, 3, 8, 66), 7.0, device=device)
    got = feature_noise(f.to(device), seeds.to(device), std.to(device), weight.to(device), copies=2, out=buf,
                        backend=name)
    assert got[0].data_ptr() == buf.data_ptr() and torch.equal(_bits(buf.cpu()), _bits(expected[0]))
    assert torch.equal(got[1].cpu(), expected[1])
    with pytest.raises(ValueError, match="out"):
        feature_noise(f, seeds, std, weight, copies=2, out=buf[:2].cpu())
    big = torch.zeros(3, 3, 8, 66)
    with pytest.raises(ValueError, match="overlaps features"):  # overlapping, but not as out[:B]
        feature_noise(big[1:3], seeds[:2], std[:2], weight[:2], out=big[:2])
    whole = torch.zeros(6, 3, 8, 66)  # features and out side by side in one storage: no overlap
    whole[:2] = f
    got = feature_noise(whole[:2], seeds, std, weight, copies=2, out=whole[2:], backend="reference")
    assert torch.equal(_bits(whole[2:]), _bits(expected[0])) and torch.equal(whole[:2], f)


@pytest.mark.parametrize("backend", backend_params("feature_noise", include_reference=True))
@pytest.mark.parametrize("copies", [1, 2, 3])
def test_out_starting_with_the_features(backend, copies):
    # features = out[:B]: the duplicated batch in one buffer, copy 0 written in place, bit for bit the same result
    name, device = backend
    f, seeds, std, weight = _inputs((2, 3, 9, 37), copies=copies, seed=8, kind="scaled")
    expected = feature_noise(f, seeds, std, weight, copies=copies, backend="reference")
    buf = torch.full((2 * copies, 3, 9, 37), 5.0, device=device)
    buf[:2] = f.to(device)
    got = feature_noise(buf[:2], seeds.to(device), std.to(device), weight.to(device), copies=copies, out=buf,
                        backend=name)
    assert got[0].data_ptr() == buf.data_ptr() and torch.equal(_bits(buf.cpu()), _bits(expected[0]))
    assert torch.equal(got[1].cpu(), expected[1]) and torch.equal(got[2].cpu(), expected[2])


@pytest.mark.parametrize("backend", backend_params("feature_noise", include_reference=True))
def test_empty_batch(backend):
    name, device = backend
    f = torch.zeros(0, 3, 5, 6, device=device)
    seeds = torch.zeros(0, dtype=torch.int64, device=device)
    out, mask, count = feature_noise(f, seeds, 0.1, copies=2, backend=name)
    assert out.shape == (0, 3, 5, 6) and mask.shape == (0, 1, 5, 6) and count.shape == (0,)


@pytest.mark.parametrize("backend", backend_params("feature_noise", include_reference=True))
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_features_where_noise_goes_raise(backend, bad):
    name, device = backend
    f, seeds, std, weight = _inputs((2, 3, 6, 9))
    weight[1] = 0.0
    weight[1, 0, 2, 3] = 1.0
    f[1, 2, 2, 3] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        feature_noise(f.to(device), seeds.to(device), std.to(device), weight.to(device), backend=name)
    weight[1, 0, 2, 3] = 0.0  # no noise there: the value is copied as it is
    out, _, _ = feature_noise(f.to(device), seeds.to(device), std.to(device), weight.to(device), backend=name)
    assert torch.equal(_bits(out[1, 2, 2, 3].cpu()), _bits(f[1, 2, 2, 3]))


@pytest.mark.parametrize("backend", [b for b in backend_params("feature_noise") if b.id == "cpp"])
def test_cpp_thread_count_invariant(backend):
    f, seeds, std, weight = _inputs((4, 6, 70, 90), copies=2, seed=2)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = feature_noise(f, seeds, std, weight, copies=2, backend="cpp")
        torch.set_num_threads(2)
        two = feature_noise(f, seeds, std, weight, copies=2, backend="cpp")
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(one, two, strict=True):
        assert torch.equal(_bits(a) if a.is_floating_point() else a, _bits(b) if b.is_floating_point() else b)


@pytest.mark.parametrize("backend", [b for b in backend_params("feature_noise") if b.id == "cpp"])
def test_cpp_baseline_copy_matches(backend, monkeypatch):
    # x86-64 builds carry a baseline and an AVX2 copy of the span loop; check the one not picked.
    for inplace in (False, True):
        f, seeds, std, weight = _inputs((3, 4, 17, 301), seed=7, kind="scaled")
        expected = feature_noise(f, seeds, std, weight, backend="reference")
        monkeypatch.setenv("ANOFAST_NO_AVX2", "1")
        got = feature_noise(f.clone(), seeds, std, weight, inplace=inplace, backend="cpp")
        monkeypatch.delenv("ANOFAST_NO_AVX2")
        assert torch.equal(_bits(got[0]), _bits(expected[0]))
        assert torch.equal(got[1], expected[1]) and torch.equal(got[2], expected[2])
    f, seeds, std, weight = _inputs((3, 4, 17, 301), copies=2, seed=9, kind="none")  # every pixel, long runs
    expected = feature_noise(f, seeds, std, weight, copies=2, backend="reference")
    for off in ("1", "0"):
        monkeypatch.setenv("ANOFAST_NO_AVX2", off)
        buf = torch.cat((f, f))
        got = feature_noise(buf[:3], seeds, std, weight, copies=2, out=buf, backend="cpp")
        assert torch.equal(_bits(buf), _bits(expected[0])) and torch.equal(got[2], expected[2])


@pytest.mark.skipif(INTERPRETED, reason="compiles the real kernel; the interpreter replaces it")
def test_triton_kernel_compiles_for_cuda_without_fma():
    from anofast._kernels import feature_noise as kf

    sig = {"out_ptr": "*fp32", "mask_ptr": "*fp32", "blocks_ptr": "*i32", "f_ptr": "*fp32", "seeds_ptr": "*i64",
           "std_ptr": "*fp32", "weight_ptr": "*fp32", "table_ptr": "*fp32", "salt": "i32", "B": "i32", "C": "i32",
           "HW": "i32", "NBLK": "i32", "J0": "i32"}  # fmt: skip
    for has_weight in (False, True):
        for inplace in (False, True):
            const = {"HAS_WEIGHT": has_weight, "INPLACE": inplace, "BLOCK": 256}
            assert_exact_ptx(compile_ptx_for_cuda(kf._feature_noise_kernel, sig, const))


# --- bad input -------------------------------------------------------------------------------------------


def test_rejects_bad_inputs():
    f, seeds, std, weight = _inputs((2, 3, 6, 9))
    with pytest.raises(TypeError, match="features"):
        feature_noise(f.double(), seeds, std, weight)
    with pytest.raises(TypeError, match="features"):
        feature_noise(f.numpy(), seeds, std, weight)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="features"):
        feature_noise(f[0], seeds, std, weight)
    with pytest.raises(ValueError, match="seeds"):
        feature_noise(f, seeds[:1], std, weight)
    with pytest.raises(TypeError, match="seeds"):
        feature_noise(f, seeds.int(), std, weight)
    with pytest.raises(ValueError, match="seeds"):
        feature_noise(f, seeds, std, weight, copies=2)  # needs 4 seeds
    with pytest.raises(ValueError, match="std"):
        feature_noise(f, seeds, torch.tensor([0.1, float("nan")]), weight)
    with pytest.raises(ValueError, match="std"):
        feature_noise(f, seeds, std[:1], weight)
    with pytest.raises(ValueError, match="weight"):
        feature_noise(f, seeds, std, weight[..., :4])
    with pytest.raises(TypeError, match="weight"):
        feature_noise(f, seeds, std, weight.bool())
    weight[0, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="weight"):
        feature_noise(f, seeds, std, weight)
    with pytest.raises(ValueError, match="copies"):
        feature_noise(f, seeds, std, copies=0)
    with pytest.raises(ValueError, match="inplace"):
        feature_noise(f, sample_seeds(0, 4), 0.1, copies=2, inplace=True)
    with pytest.raises(ValueError, match="contiguous"):
        feature_noise(f.transpose(2, 3), seeds, std, inplace=True)


@pytest.mark.parametrize("backend", backend_params("feature_noise", include_reference=True))
def test_differentiable_in_the_features(backend):
    # SimpleNet / SuperSimpleNet train their adaptor through the noisy features: d out / d f = 1 per copy
    name, device = backend
    f, seeds, std, weight = _inputs((2, 3, 5, 6), copies=2, seed=3)
    x = f.to(device).requires_grad_(True)
    out, mask, count = feature_noise(x, seeds.to(device), std.to(device), weight.to(device), copies=2, backend=name)
    expected = feature_noise(f, seeds, std, weight, copies=2, backend="reference")
    assert out.requires_grad and not mask.requires_grad
    assert torch.equal(_bits(out.detach().cpu()), _bits(expected[0]))
    coef = torch.arange(out.numel(), dtype=torch.float32).view(out.shape)
    (out * coef.to(device)).sum().backward()
    assert torch.equal(x.grad.cpu(), coef[:2] + coef[2:])
    buf = torch.empty(4, 3, 5, 6, device=device)
    y = feature_noise(x, seeds.to(device), std.to(device), weight.to(device), copies=2, out=buf, backend=name)[0]
    assert y.data_ptr() == buf.data_ptr() and y.requires_grad
    with pytest.raises(ValueError, match="require grad"):
        feature_noise(x[:1], seeds[:1].to(device), std[:1].to(device), inplace=True, backend=name)
    with torch.no_grad():
        feature_noise(x.detach().clone(), seeds[:2].to(device), std[:2].to(device), inplace=True, backend=name)
