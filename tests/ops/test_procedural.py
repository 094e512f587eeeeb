import os

import pytest
import torch

from anofast import _rng
from anofast.ops.procedural import KIND_NAMES, procedural_texture, sample_procedural_params
from anofast.reference.procedural import F_AMPS, MAX_OCTAVES, procedural_texture_reference
from anofast.testing import assert_verbose_equal, backend_params

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
SIZES = [(1, 1), (7, 5), (9, 12)] if INTERPRET else [(1, 1), (7, 5), (37, 53), (64, 64)]
SEEDS = _rng.sample_seeds(11, 18)


def _one_seed_per_kind() -> torch.Tensor:
    pool = _rng.sample_seeds(12, 64)
    kinds = sample_procedural_params(pool, 64, 64).kinds
    return pool[[kinds.index(k) for k in KIND_NAMES]]


def test_reproducible_and_batch_independent():
    a = procedural_texture(SEEDS, 24, 20, backend="reference")
    assert a.shape == (18, 3, 24, 20) and a.dtype == torch.uint8
    assert torch.equal(a, procedural_texture(SEEDS, 24, 20, backend="reference"))
    for i in (0, 9, 17):
        assert torch.equal(procedural_texture(SEEDS[i : i + 1], 24, 20, backend="reference")[0], a[i])
    assert not torch.equal(a[0], a[1])


def test_params_cover_every_kind_and_are_sane():
    p = sample_procedural_params(_rng.sample_seeds(4, 120), 256, 256)
    assert set(p.kinds) == set(KIND_NAMES)
    octaves = p.iparams[:, 1]
    assert ((octaves >= 1) & (octaves <= MAX_OCTAVES)).all()
    amps = p.fparams[:, F_AMPS : F_AMPS + MAX_OCTAVES]
    assert (
        torch.allclose(amps.sum(1), torch.ones(120))
        and (amps[torch.arange(MAX_OCTAVES) >= octaves.view(-1, 1)] == 0).all()
    )
    assert (p.keys >= 0).all() and (p.keys < 2**32).all()
    same = sample_procedural_params(_rng.sample_seeds(4, 120)[7:8], 256, 256)
    assert torch.equal(same.fparams[0], p.fparams[7]) and torch.equal(same.iparams[0], p.iparams[7])


def test_textures_are_spatially_coherent_and_varied():
    seeds = _rng.sample_seeds(5, 48)
    tex = procedural_texture(seeds, 96, 96).float()
    std = tex.std(dim=(1, 2, 3))
    assert (std > 4).all()  # no flat images
    # Structure, not noise: for white noise the mean neighbour difference is ~1.15 standard deviations.
    neighbour = (tex[..., 1:] - tex[..., :-1]).abs().mean(dim=(1, 2, 3))
    assert (neighbour < 0.8 * std).all() and (neighbour / std).median() < 0.4
    assert tex.mean(dim=(2, 3)).std(dim=0).min() > 10  # palettes differ between samples


@pytest.mark.parametrize("size", SIZES, ids=str)
@pytest.mark.parametrize("backend", backend_params("procedural_texture"))
def test_backend_matches_reference(backend, size):
    name, device = backend
    seeds = _one_seed_per_kind() if INTERPRET else torch.cat([_one_seed_per_kind(), SEEDS])
    expected = procedural_texture(seeds, *size, backend="reference")
    actual = procedural_texture(seeds.to(device), *size, backend=name).cpu()
    assert_verbose_equal(actual, expected, f"procedural_texture[{name}] {size}")


@pytest.mark.parametrize("backend", [p for p in backend_params("procedural_texture") if p.id == "cpp"])
def test_cpp_thread_count_invariant(backend):
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = procedural_texture(SEEDS, 70, 50, backend="cpp")
        torch.set_num_threads(max(2, threads))
        many = procedural_texture(SEEDS, 70, 50, backend="cpp")
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, many)


@pytest.mark.parametrize("backend", backend_params("procedural_texture", include_reference=True))
def test_empty_batch(backend):
    name, device = backend
    out = procedural_texture(torch.zeros(0, dtype=torch.int64, device=device), 8, 8, backend=name)
    assert out.shape == (0, 3, 8, 8)


def test_reference_is_the_function_of_its_params():
    p = sample_procedural_params(SEEDS, 16, 16)
    direct = procedural_texture_reference(p.keys, p.iparams, p.fparams, 16, 16)
    assert torch.equal(direct, procedural_texture(SEEDS, 16, 16, backend="reference"))


def test_bad_input():
    with pytest.raises(ValueError, match="height"):
        procedural_texture(SEEDS, 0, 8)
    with pytest.raises(ValueError, match="width"):
        procedural_texture(SEEDS, 8, 2.5)
    with pytest.raises(TypeError, match="seeds"):
        procedural_texture(SEEDS.float(), 8, 8)
    with pytest.raises(ValueError, match="2\\*\\*30"):
        procedural_texture(SEEDS, 2**16, 2**15)
