"""PerlinAnomaly: the product promises (determinism, exact masks, preset statistics, clear errors)."""

import pytest
import torch
from PIL import Image

import anofast
from anofast import PerlinAnomaly
from anofast._dispatch import usable
from anofast.testing import assert_verbose_equal, make_batch

PRESETS = {"draem": PerlinAnomaly.draem, "anomalib": PerlinAnomaly.anomalib, "glass": PerlinAnomaly.glass}


def _backends():
    out = []
    for name in ("reference", "cpp", "triton"):
        ok, why = usable(name, torch.device("cpu"))
        out.append(pytest.param(name, id=name, marks=pytest.mark.skipif(not ok, reason=why or "n/a")))
    return out


@pytest.fixture(scope="module")
def textures() -> torch.Tensor:
    return (make_batch(5, 3, 40, 52, seed=11) * 255).round().to(torch.uint8)


def _check_contract(images: torch.Tensor, out: anofast.AnomalyBatch) -> None:
    b, c, h, w = images.shape
    assert out.image.shape == (b, c, h, w) and out.image.dtype == torch.float32
    assert out.mask.shape == (b, 1, h, w) and out.mask.dtype == torch.float32
    assert out.label.shape == (b,) and out.label.dtype == torch.int64
    assert set(out.mask.unique().tolist()) <= {0.0, 1.0}
    assert out.image.min() >= 0 and out.image.max() <= 1
    changed = (out.image != images).any(dim=1, keepdim=True)
    # mask precision: mask == exactly the pixels that changed
    assert torch.equal(changed, out.mask.bool())
    assert torch.equal(out.label, out.mask.flatten(1).any(1).long())
    normal = out.label == 0
    assert torch.equal(out.image[normal], images[normal])


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("source", ["procedural", "tensor", "self"])
def test_contract_and_mask_precision(preset, source, textures):
    src = {"procedural": None, "tensor": textures, "self": "self"}[source]
    images = make_batch(16, 3, 48, 64, seed=1)
    out = PRESETS[preset](source=src)(images, seed=3)
    _check_contract(images, out)
    assert out.label.sum() > 0


@pytest.mark.parametrize("backend", _backends())
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_backends_bit_identical(backend, preset, textures):
    images = make_batch(6, 3, 37, 45, seed=2)
    ref = PRESETS[preset](source=textures, p_anomaly=1.0, backend="reference")(images, seed=99)
    out = PRESETS[preset](source=textures, p_anomaly=1.0, backend=backend)(images, seed=99)
    assert_verbose_equal(out.mask, ref.mask, f"mask[{backend}]")
    assert_verbose_equal(out.image, ref.image, f"image[{backend}]")
    assert torch.equal(out.label, ref.label)


def test_procedural_source_bit_identical_across_backends():
    images = make_batch(4, 3, 33, 29, seed=4)
    small = dict(p_anomaly=1.0, texture_size=(24, 40), procedural_bank=6)  # the interpreter renders the bank too
    ref = PerlinAnomaly.draem(backend="reference", **small)(images, seed=5)
    for name in ("cpp", "triton"):
        if not usable(name, torch.device("cpu"))[0]:
            continue
        out = PerlinAnomaly.draem(backend=name, **small)(images, seed=5)
        assert_verbose_equal(out.image, ref.image, name)
        assert_verbose_equal(out.mask, ref.mask, name)


def test_thread_count_invariant(textures):
    images = make_batch(8, 3, 96, 80, seed=5)
    gen = PerlinAnomaly.glass(source=textures)
    torch.set_num_threads(1)
    one = gen(images, seed=7)
    torch.set_num_threads(2)
    two = gen(images, seed=7)
    assert torch.equal(one.mask, two.mask) and torch.equal(one.image, two.image)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_batch_of_32_equals_one_at_a_time(preset, textures):
    images = make_batch(32, 3, 64, 64, seed=6)
    gen = PRESETS[preset](source=textures)
    batch = gen(images, seed=2024)
    seeds = anofast.sample_seeds(2024, 32)
    for i in range(32):
        single = gen(images[i : i + 1], seed=seeds[i : i + 1])
        assert torch.equal(single.mask[0], batch.mask[i]), i
        assert torch.equal(single.image[0], batch.image[i]), i
    # per-sample seeds: a sample does not depend on the rest of the batch (reversed order, same seeds)
    rev = gen(images.flip(0), seed=seeds.flip(0))
    assert torch.equal(rev.mask.flip(0), batch.mask) and torch.equal(rev.image.flip(0), batch.image)


def test_same_seed_same_output_new_seed_new_output(textures):
    images = make_batch(8, 3, 64, 64, seed=8)
    gen = PerlinAnomaly.draem(source=textures, p_anomaly=1.0)
    a, b, c = gen(images, seed=1), gen(images, seed=1), gen(images, seed=2)
    assert torch.equal(a.image, b.image) and torch.equal(a.mask, b.mask)
    assert not torch.equal(a.mask, c.mask)


def test_global_rng_when_seed_is_none(textures):
    images = make_batch(4, 3, 32, 32, seed=8)
    gen = PerlinAnomaly.draem(source=textures, p_anomaly=1.0)
    torch.manual_seed(5)
    a = gen(images)
    torch.manual_seed(5)
    b = gen(images)
    assert torch.equal(a.image, b.image)


def test_sample_params_apply_split_replays(textures):
    images = make_batch(6, 3, 40, 40, seed=9)
    gen = PerlinAnomaly.anomalib(source=textures, dual_mask=True)
    params = gen.sample_params(6, seed=11)
    assert torch.equal(gen.apply(images, params).image, gen(images, seed=11).image)


def test_uint8_input_equals_float_input(textures):
    u8 = (make_batch(4, 3, 32, 48, seed=10) * 255).round().to(torch.uint8)
    gen = PerlinAnomaly.draem(source=textures, p_anomaly=1.0)
    a = gen(u8, seed=3)
    b = gen(u8.float() * (1.0 / 255.0), seed=3)  # anofast's documented uint8 conversion
    assert torch.equal(a.image, b.image) and torch.equal(a.mask, b.mask)


def test_grey_images(textures):
    images = make_batch(8, 1, 40, 40, seed=12)
    out = PerlinAnomaly.draem(source=textures, p_anomaly=1.0)(images, seed=0)
    _check_contract(images, out)


def test_p_anomaly_zero_is_identity():
    images = make_batch(4, 3, 32, 32, seed=13)
    out = PerlinAnomaly.draem(p_anomaly=0.0)(images, seed=0)
    assert torch.equal(out.image, images) and out.mask.sum() == 0 and out.label.sum() == 0


def test_foreground_restricts_anomalies(textures):
    images = make_batch(16, 3, 64, 64, seed=14)
    fg = torch.zeros(16, 1, 64, 64)
    fg[..., 16:48, 8:40] = 1
    out = PerlinAnomaly.glass(source=textures)(images, seed=1, foreground=fg)
    _check_contract(images, out)
    assert out.mask[fg == 0].sum() == 0 and out.label.sum() > 0


def test_empty_foreground_terminates_with_label_zero(textures):
    images = make_batch(2, 3, 32, 32, seed=15)
    out = PerlinAnomaly.glass(source=textures)(images, seed=1, foreground=torch.zeros(2, 1, 32, 32))
    assert out.label.sum() == 0 and torch.equal(out.image, images)


def test_params_record(textures):
    out = PerlinAnomaly.glass(source=textures)(make_batch(4, 3, 32, 32), seed=0)
    p = out.params
    assert p["seed"].shape == (4,) and p["opacity"].shape == (4,) and p["perlin_res"].shape[:2] == (4, 2)
    assert ((p["opacity"] >= 0.2) & (p["opacity"] <= 0.8)).all()
    assert torch.equal(p["seed"], anofast.sample_seeds(0, 4))


def test_default_collate_of_dataset_items(textures):
    out = PerlinAnomaly.draem(source=textures)(make_batch(3, 3, 16, 16), seed=0)
    items = [anofast.AnomalyBatch(out.image[i], out.mask[i], out.label[i], {k: v[i] for k, v in out.params.items()})
             for i in range(3)]
    batch = torch.utils.data.default_collate(items)
    assert isinstance(batch, anofast.AnomalyBatch) and torch.equal(batch.image, out.image)


def test_draem_mask_statistics_match_reference():
    """METHODS.md 0.1: DRAEM 256², τ 0.5, rotated: mean coverage 4.9 %, empty masks 4.5 % (an N = 2000 simulation,
    standard error about 0.46 points on the empty rate). The original DRAEM numpy code re-run here with N = 8000 gave
    4.88 % and 5.04 %, so the bounds are centred on the pair of figures, not on 4.5 % alone."""
    from anofast.ops.perlin import perlin_mask

    gen = PerlinAnomaly.draem(p_anomaly=1.0)
    n, batch = 4000, 400
    cover, empty = [], []
    for k in range(n // batch):
        params = gen.sample_params(batch, anofast.sample_seeds(0, batch, offset=k * batch))
        mask, bbox = perlin_mask(params.perlin, (256, 256))  # the preset's placement masks
        cover.append(mask.mean(dim=(1, 2, 3)))
        empty.append(mask.flatten(1).amax(1) == 0)
    cover, empty = torch.cat(cover), torch.cat(empty).float()
    assert 4.4 < cover.mean().item() * 100 < 5.5, cover.mean()
    assert 3.5 < empty.mean().item() * 100 < 7.0, empty.mean()


# ---------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("images", "match"),
    [
        (torch.rand(3, 32, 32), "rank 3"),
        (torch.rand(2, 4, 32, 32), "channels"),
        (torch.zeros(0, 3, 32, 32), "empty batch"),
        (torch.randint(0, 5, (2, 3, 8, 8), dtype=torch.int32), "float32 in \\[0, 1\\] or uint8"),
        (torch.full((2, 3, 8, 8), float("nan")), "NaN"),
        (torch.full((2, 3, 8, 8), -1.5), "normalisation"),
        ([[0.5]], "torch.Tensor"),
    ],
)
def test_bad_images(images, match):
    with pytest.raises((TypeError, ValueError), match=match):
        PerlinAnomaly.draem()(images, seed=0)


def test_bad_options():
    with pytest.raises(ValueError, match="p_anomaly"):
        PerlinAnomaly(p_anomaly=1.5)
    with pytest.raises(ValueError, match="opacity"):
        PerlinAnomaly(opacity=(0.9, 0.1))
    with pytest.raises(ValueError, match="dual_mask"):
        PerlinAnomaly(dual_mask="both")
    with pytest.raises(ValueError, match="foreground"):
        PerlinAnomaly.draem()(torch.rand(2, 3, 8, 8), seed=0, foreground=torch.ones(2, 1, 4, 4))


def test_source_folder_errors(tmp_path):
    with pytest.raises((FileNotFoundError, ValueError), match="missing"):
        PerlinAnomaly.draem(source=tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises((FileNotFoundError, ValueError), match="no image"):
        PerlinAnomaly.draem(source=empty)
    bad = tmp_path / "bad"
    bad.mkdir()
    Image.new("RGB", (8, 8)).save(bad / "ok.png")
    (bad / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="broken.jpg"):
        PerlinAnomaly.draem(source=bad)


def test_source_folder_works(tmp_path):
    for i in range(3):
        Image.fromarray((make_batch(1, 3, 30 + i, 50, seed=i)[0].permute(1, 2, 0) * 255).byte().numpy()).save(
            tmp_path / f"t{i}.png"
        )
    gen = PerlinAnomaly.draem(source=tmp_path, p_anomaly=1.0)
    assert gen.n_textures == 3
    images = make_batch(8, 3, 64, 64)
    out = gen(images, seed=0)
    _check_contract(images, out)
    assert set(out.params["texture_index"].tolist()) <= {0, 1, 2}
