import numpy as np
import pytest
import torch

import anofast
from anofast import _rng
from anofast.ops.rng import rng_normal, rng_uniform
from anofast.testing import assert_verbose_equal, backend_params

SEEDS = torch.tensor([0, 1, -1, 2**63 - 1, -(2**63), 123456789012345], dtype=torch.int64)


def _hash32_numpy(x: np.ndarray) -> np.ndarray:
    """An independent uint32 implementation of lowbias32 (numpy wraps uint32 products natively)."""
    x = x.astype(np.uint32)
    with np.errstate(over="ignore"):
        x ^= x >> np.uint32(16)
        x *= np.uint32(0x7FEB352D)
        x ^= x >> np.uint32(15)
        x *= np.uint32(0x846CA68B)
        x ^= x >> np.uint32(16)
    return x


def test_hash32_matches_uint32_arithmetic():
    x = np.concatenate([np.arange(1000, dtype=np.uint64), np.array([2**32 - 1, 2**31, 0xDEADBEEF], dtype=np.uint64)])
    expected = _hash32_numpy(x).astype(np.int64)
    actual = _rng.hash32(torch.from_numpy(x.astype(np.int64))).numpy()
    np.testing.assert_array_equal(actual, expected)


def test_uniform_range_and_moments():
    u = _rng.uniform(SEEDS, 3, 20000)
    assert u.dtype == torch.float32 and u.min() >= 0 and u.max() < 1
    assert abs(u.mean().item() - 0.5) < 0.01
    assert abs(u.var().item() - 1 / 12) < 0.005
    # streams and seeds decorrelated
    assert abs(torch.corrcoef(torch.stack([u[0], u[1]]))[0, 1].item()) < 0.03
    v = _rng.uniform(SEEDS, 4, 20000)
    assert abs(torch.corrcoef(torch.stack([u[0], v[0]]))[0, 1].item()) < 0.03


def test_sample_seeds_index_keyed():
    a = anofast.sample_seeds(7, 10)
    b = anofast.sample_seeds(7, 3, offset=4)
    assert torch.equal(a[4:7], b)
    assert len(set(a.tolist())) == 10 and (a >= 0).all()
    assert not torch.equal(anofast.sample_seeds(8, 10), a)
    # any Python int is read as int64 two's complement
    assert torch.equal(anofast.sample_seeds(-1, 2), anofast.sample_seeds(2**64 - 1, 2))


def test_resolve_seeds_errors():
    with pytest.raises(TypeError, match="seed"):
        _rng.resolve_seeds(1.5, 3)
    with pytest.raises(ValueError, match=r"\(3,\)"):
        _rng.resolve_seeds(torch.zeros(2, dtype=torch.int64), 3)
    with pytest.raises(TypeError, match="int64"):
        _rng.resolve_seeds(torch.zeros(3), 3)


def test_rng_uniform_bad_input():
    with pytest.raises(TypeError, match="seeds"):
        rng_uniform(torch.zeros(3), 0, 4)
    with pytest.raises(ValueError, match="n must"):
        rng_uniform(SEEDS, 0, -1)


@pytest.mark.parametrize("n", [0, 1, 7, 1025])
@pytest.mark.parametrize("backend", backend_params("rng_uniform"))
def test_backend_matches_reference_bitwise(backend, n):
    name, device = backend
    expected = rng_uniform(SEEDS, 5, n, backend="reference")
    actual = rng_uniform(SEEDS.to(device), 5, n, backend=name).cpu()
    assert_verbose_equal(actual, expected, f"rng_uniform[{name}]")


@pytest.mark.parametrize("backend", [p for p in backend_params("rng_uniform") if p.id == "cpp"])
def test_cpp_thread_invariant(backend):
    torch.set_num_threads(1)
    one = rng_uniform(SEEDS, 9, 5000, backend="cpp")
    torch.set_num_threads(2)
    two = rng_uniform(SEEDS, 9, 5000, backend="cpp")
    assert torch.equal(one, two)


def test_empty_batch():
    out = rng_uniform(torch.zeros(0, dtype=torch.int64), 1, 5)
    assert out.shape == (0, 5)


def test_golden_values():
    """Pins the RNG spec: changing any of these changes every anomaly anofast has ever generated for a seed."""
    assert anofast.sample_seeds(123, 4).tolist() == [
        2924979404412351094, 8513186242691432595, 2241719101211558051, 1627310893522340557
    ]
    bits = _rng.uniform_bits(torch.tensor([0, 123456789]), 1, 3).tolist()
    assert bits == [[870610294, 368117577, 4074995693], [632731020, 158478629, 4234349068]]
    u = _rng.uniform(torch.tensor([0, 123456789]), 1, 3)
    assert torch.equal(u, ((torch.tensor(bits) >> 8).float() * 2.0**-24))


# ------------------------------------------------------------------------------------------------ normal
def test_normal_table_shape_and_symmetry():
    t = _rng.normal_table()
    assert t.shape == (2**14 + 1,) and t.dtype == torch.float32
    assert torch.equal(t, -t.flip(0)) and (t[1:] > t[:-1]).all()
    assert 3.7 < t[-1].item() < 4.1


def test_normal_matches_the_gaussian():
    """Moments and the CDF at a few points against the standard normal's (N = 600k draws)."""
    z = _rng.normal(SEEDS, 9, 100_000).double().flatten()
    assert abs(z.mean().item()) < 0.006
    assert abs(z.var().item() - 1) < 0.01
    assert abs((z**4).mean().item() - 3) < 0.06  # kurtosis of a normal
    for x in (-2.5, -1.0, 0.3, 1.96):
        expected = torch.special.ndtr(torch.tensor(x, dtype=torch.float64)).item()
        assert abs((z <= x).double().mean().item() - expected) < 0.003, x


def test_normal_interpolates_its_table():
    """A hand-made case: the top 14 bits pick the knot, the low 18 bits the fraction."""
    t = _rng.normal_table()
    b = torch.tensor([0, 5 << 18, (5 << 18) | (1 << 17), 2**32 - 1])
    z = _rng.to_normal(b, t)
    assert z[0] == t[0] and z[1] == t[5]
    assert z[2] == t[5] + (t[6] - t[5]) * 0.5
    assert t[-2] <= z[3] < t[-1]


def test_rng_normal_bad_input():
    with pytest.raises(TypeError, match="seeds"):
        rng_normal(torch.zeros(3), 0, 4)
    with pytest.raises(ValueError, match="stream"):
        rng_normal(SEEDS, -1, 4)


@pytest.mark.parametrize("n", [0, 1, 7, 1025])
@pytest.mark.parametrize("backend", backend_params("rng_normal"))
def test_normal_backend_matches_reference_bitwise(backend, n):
    name, device = backend
    expected = rng_normal(SEEDS, 5, n, backend="reference")
    actual = rng_normal(SEEDS.to(device), 5, n, backend=name).cpu()
    assert_verbose_equal(actual, expected, f"rng_normal[{name}]")


@pytest.mark.parametrize("backend", [b for b in backend_params("rng_normal") if b.id == "cpp"])
def test_normal_cpp_baseline_copy_matches(backend, monkeypatch):
    # x86-64 builds draw normals 8 at a time with AVX2 gathers; the baseline copy must give the same bits
    expected = rng_normal(SEEDS, 5, 1029, backend="reference")
    for off in ("0", "1"):
        monkeypatch.setenv("ANOFAST_NO_AVX2", off)
        assert_verbose_equal(rng_normal(SEEDS, 5, 1029, backend="cpp"), expected, f"ANOFAST_NO_AVX2={off}")


def test_normal_golden_values():
    """Pins the normal sampler (table and interpolation) for two seeds."""
    z = _rng.normal(torch.tensor([0, 123456789]), 1, 3)
    assert z.tolist() == [
        [-0.8323522210121155, -1.368186116218567, 1.6337337493896484],
        [-1.0484330654144287, -1.788414716720581, 2.1943860054016113],
    ]
