"""NaturalSynthetic (NSA): mask contract, determinism (backends, threads, batch size), sources, foreground, labels,
presets, the CLI entry and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import anofast
from anofast import cli
from anofast._validate import check_images
from anofast.ops.object_mask import object_mask
from anofast.synth.nsa import NaturalSynthetic, NSAParams
from anofast.testing import assert_verbose_equal, backend_params, make_batch


def _images(batch: int = 4, size: int = 48, channels: int = 3, seed: int = 0) -> torch.Tensor:
    return make_batch(batch, channels, size, size, seed=seed)


def _check_contract(out, images):
    changed = (out.image != images).any(1, keepdim=True).float()
    assert torch.equal(out.mask, changed)
    assert torch.equal(out.label, (changed.flatten(1).amax(1) > 0).long())
    normal = out.label == 0
    assert torch.equal(out.image[normal], images[normal])


@pytest.mark.parametrize("preset", ["nsa", "nsa_mixed", "nsa_texture", "shift"])
def test_presets_make_exact_masks(preset):
    images = _images(4, 64)
    out = getattr(NaturalSynthetic, preset)()(images, seed=5)
    _check_contract(out, images)
    assert out.image.shape == images.shape and out.label.sum() >= 3
    idx = out.params["source_index"]
    assert not (idx == torch.arange(4)).any()  # the partner is never the image itself
    boxes = out.params["box"]
    assert (out.params["patches"] >= 1).all() and (out.params["patches"] <= out.params["box"].shape[1]).all()
    assert (boxes[..., 0] + boxes[..., 2] <= 64).all() and (boxes[..., 1] + boxes[..., 3] <= 64).all()


def test_patch_statistics_follow_nsa():
    images = _images(32, 128)
    p = NaturalSynthetic.nsa().sample_params(32, 0, size=(128, 128))
    present = p.box[..., 2] > 0
    assert present[:, 0].all()  # the first patch is always attempted
    assert 0.2 < present[:, 1:].float().mean() < 0.8  # further ones with probability 1/2
    h = p.box[..., 2][present].float()
    assert h.min() >= round(0.03 * 128) and h.max() <= round(0.4 * 128)
    assert ((p.scale >= 0.7) & (p.scale <= 1.3)).all() and p.scale.std() > 0.1


def test_backends_agree_bitwise():
    images = _images(3, 40)
    gen = NaturalSynthetic.nsa_mixed(cycles=2)
    ref = NaturalSynthetic.nsa_mixed(cycles=2, backend="reference")(images, seed=11)
    got = gen(images, seed=11)
    assert_verbose_equal(got.image.view(torch.int32), ref.image.view(torch.int32), "image")
    assert torch.equal(got.mask, ref.mask)


def test_thread_count_does_not_change_output():
    images = _images(6, 64)
    gen = NaturalSynthetic.nsa()
    torch.set_num_threads(1)
    one = gen(images, seed=2)
    torch.set_num_threads(2)
    two = gen(images, seed=2)
    assert torch.equal(one.image, two.image) and torch.equal(one.mask, two.mask)


def test_batch_equals_one_sample_at_a_time_with_a_pool():
    pool = (_images(5, 48, seed=9) * 255).to(torch.uint8)
    gen = NaturalSynthetic.nsa(source=pool)
    images = _images(4, 48)
    batch = gen(images, seed=7)
    for i in range(4):
        single = gen(images[i:i + 1], seed=anofast.sample_seeds(7, 1, offset=i))
        assert torch.equal(single.image[0], batch.image[i]) and torch.equal(single.mask[0], batch.mask[i])


def test_batch_sources_depend_on_the_seed_only():
    images = _images(4, 48)
    gen = NaturalSynthetic.nsa()
    a, b = gen(images, seed=3), gen(images, seed=3)
    assert torch.equal(a.image, b.image)
    assert not torch.equal(a.image, gen(images, seed=4).image)
    replay = gen.apply(images, gen.sample_params(4, 3, size=(48, 48)))
    assert torch.equal(replay.image, a.image)


def test_foreground_restricts_the_anomalies():
    images = _images(4, 64)
    fg = torch.zeros(4, 1, 64, 64)
    fg[..., 8:56, 16:60] = 1
    out = NaturalSynthetic.nsa()(images, seed=1, foreground=fg)
    _check_contract(out, images)
    assert out.label.sum() >= 2 and not (out.mask.bool() & (fg == 0)).any()


def _objects(batch: int = 4, size: int = 64) -> torch.Tensor:
    """uint8 textured discs on a dark background (grey level 8), as MVTec hazelnut."""
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    x = torch.full((batch, 3, size, size), 8, dtype=torch.uint8)
    for b in range(batch):
        disc = (yy - size // 2 - 3 * b) ** 2 + (xx - size // 2 + 2 * b) ** 2 < (size // 3) ** 2
        x[b, :, disc] = torch.randint(60, 220, (3, int(disc.sum())), generator=g, dtype=torch.uint8)
    return x


def test_skip_background_is_nsas_object_mask_as_foreground():
    images = _objects()
    obj = object_mask(images, (20, 20), 7)
    gen = NaturalSynthetic(skip_background=(20, 20), min_object_pct=0.7)
    out = gen(images, seed=3)
    _check_contract(out, check_images(images))
    assert out.label.sum() >= 3 and not (out.mask.bool() & (obj == 0)).any()
    # the same as handing those object masks over as the foreground (sources: the partner's object mask)
    same = NaturalSynthetic(min_object_pct=0.7)(images, seed=3, foreground=obj)
    assert torch.equal(out.image, same.image) and torch.equal(out.mask, same.mask)
    for b, i in enumerate(out.params["source_index"].tolist()):
        sy, sx, sh, sw = out.params["src_box"][b, 0].tolist()
        assert obj[i, 0, sy : sy + sh, sx : sx + sw].mean() > 0.7
    # intersected with a given foreground, and replayed by apply()
    half = torch.zeros(4, 1, 64, 64)
    half[..., :, :32] = 1
    both = gen(images, seed=3, foreground=half)
    assert not (both.mask.bool() & ((obj == 0) | (half == 0))).any()
    assert torch.equal(gen.apply(images, gen.sample_params(4, 3, size=(64, 64), foreground=obj)).image, out.image)


@pytest.mark.parametrize("backend", backend_params("poisson_blend"))
def test_mvtec_preset_on_uint8_agrees_with_the_reference_bitwise(backend):
    """The whole uint8 path (object masks, integral image, Poisson with uint8 reads and diff, soft label) on every
    backend, and at 1 and 2 threads."""
    name, device = backend
    images = _objects(3, 40)
    ref = NaturalSynthetic.nsa_mvtec("hazelnut", cycles=1, min_object_pct=0.5, backend="reference")(images, seed=4)
    gen = NaturalSynthetic.nsa_mvtec("hazelnut", cycles=1, min_object_pct=0.5, backend=name)
    results = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        results.append(gen(images.to(device), seed=4))
    for got in results:
        assert_verbose_equal(got.image.cpu().view(torch.int32), ref.image.view(torch.int32), f"{name} image")
        assert torch.equal(got.mask.cpu(), ref.mask) and ref.label.sum() >= 1
        assert torch.equal(got.params["soft_label"].cpu().view(torch.int32), ref.params["soft_label"].view(torch.int32))


def test_skip_background_with_a_pool_takes_patches_from_the_pool_objects():
    pool = _objects(3, 64)
    obj = object_mask(pool, (20, 20), 7)
    gen = NaturalSynthetic(skip_background=[(20, 20)], min_object_pct=0.7, source=pool)
    out = gen(_objects(2, 64), seed=1)
    assert out.label.sum() >= 1
    for b, i in enumerate(out.params["source_index"].tolist()):
        sy, sx, sh, sw = out.params["src_box"][b, 0].tolist()
        assert obj[i, 0, sy : sy + sh, sx : sx + sw].mean() > 0.7


def test_nsa_mvtec_presets_follow_train_mvtec():
    hazelnut = NaturalSynthetic.nsa_mvtec("hazelnut")
    assert hazelnut.config() | {"source": None} == NaturalSynthetic(
        width_bounds=((0.03, 0.35), (0.03, 0.35)), min_object_pct=0.7, min_overlap_pct=0.25, num_patches=3,
        label_mode="logistic-intensity", intensity_logistic_params=(1 / 12, 24), skip_background=(20, 20)).config()
    screw = NaturalSynthetic.nsa_mvtec("screw", label_mode="binary")
    assert (screw.num_patches, screw.skip_background, screw.label_mode) == (4, ((200.0, 60.0),), "binary")
    assert screw.width_bounds == ((0.03, 0.12), (0.03, 0.12)) and screw.intensity_logistic_params == (1.0, 3.0)
    wood = NaturalSynthetic.nsa_mvtec("wood")
    assert (wood.skip_background, wood.resize_bounds, wood.num_patches) == (None, (0.5, 2.0), 4)
    assert NaturalSynthetic.nsa_mvtec("cable").width_bounds == ((0.05, 0.4), (0.05, 0.4))
    with pytest.raises(ValueError, match="category"):
        NaturalSynthetic.nsa_mvtec("banana")


@pytest.mark.parametrize("mode", ["intensity", "logistic-intensity"])
def test_soft_labels(mode):
    images = _images(3, 48)
    out = NaturalSynthetic.nsa(label_mode=mode)(images, seed=2)
    soft = out.params["soft_label"]
    assert soft.shape == out.mask.shape and (soft[out.mask == 0] == 0).all()
    if mode == "logistic-intensity":
        assert soft.max() <= 1 and soft[out.mask > 0].min() > 0
    # NSA's formula, pixel by pixel: the median over the radius-5 disk of the masked mean |change| in grey levels
    diff = F.pad((out.image - images).abs().mean(1) * 255.0 * out.mask[:, 0], (5, 5, 5, 5))
    yy, xx = torch.meshgrid(torch.arange(-5, 6), torch.arange(-5, 6), indexing="ij")
    disk = (yy * yy + xx * xx <= 25).flatten()
    for b, y, x in out.mask[:, 0].nonzero().tolist()[::7]:
        v = diff[b, y : y + 11, x : x + 11].flatten()[disk].median()
        if mode == "logistic-intensity":
            k, x0 = NaturalSynthetic.nsa().intensity_logistic_params
            v = 1.0 / (1.0 + torch.exp(-k * (v - x0)))
        assert torch.equal(soft[b, 0, y, x], v), (b, y, x)


def test_grey_and_uint8_images():
    images = (_images(3, 40, channels=1) * 255).to(torch.uint8)
    out = NaturalSynthetic.nsa()(images, seed=0)
    _check_contract(out, check_images(images))
    assert out.image.shape == (3, 1, 40, 40)


def test_bad_inputs():
    gen = NaturalSynthetic.nsa()
    images = _images(2, 32)
    with pytest.raises(ValueError, match="batch of 1 needs source="):
        gen(images[:1], seed=0)
    with pytest.raises(ValueError, match="images"):
        gen(images[:, :2], seed=0)
    with pytest.raises(ValueError, match="images"):
        gen(images[:0], seed=0)
    with pytest.raises(TypeError, match="images"):
        gen(images.numpy(), seed=0)
    with pytest.raises(ValueError, match="NaN"):
        gen(torch.full_like(images, float("nan")), seed=0)
    with pytest.raises(ValueError, match="foreground"):
        gen(images, seed=0, foreground=torch.ones(2, 1, 8, 8))
    with pytest.raises(ValueError, match="at least 8x8"):
        gen(_images(2, 6), seed=0)
    with pytest.raises(ValueError, match="blend"):
        NaturalSynthetic(blend="seamless")
    with pytest.raises(ValueError, match="num_patches"):
        NaturalSynthetic(num_patches=0)
    with pytest.raises(ValueError, match="gamma_params"):
        NaturalSynthetic(gamma_params=(2.5, 0.05, 0.03))
    with pytest.raises(ValueError, match="label_mode"):
        NaturalSynthetic(label_mode="soft")
    with pytest.raises(TypeError, match="source"):
        NaturalSynthetic(source="folder")
    for bad in ((20,), [], [(20, -1)], "dark", (float("nan"), 20)):
        with pytest.raises((TypeError, ValueError), match="skip_background"):
            NaturalSynthetic(skip_background=bad)
    with pytest.raises(ValueError, match="foreground"):
        gen.sample_params(2, 0, size=(32, 32), foreground=torch.ones(2, 1, 16, 32))
    with pytest.raises(TypeError, match="params"):
        gen.apply(images, {"box": 1})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="params"):
        gen.apply(_images(3, 32), gen.sample_params(2, 0, size=(32, 32)))
    assert isinstance(gen.sample_params(2, 0, size=(32, 32)), NSAParams)


def test_cli_generate_nsa(tmp_path):
    src = tmp_path / "normal"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        y, x = np.mgrid[0:96, 0:112]
        img = (np.sin(x / (3 + i)) * 60 + y * 2 + 90)[..., None] + rng.integers(0, 30, (96, 112, 3))
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(src / f"{i}.png")
    out = tmp_path / "out"
    args = ["generate", "--input", src, "--output", out, "--method", "nsa", "--count", 5,
            "--batch-size", 2, "--seed", 1]
    assert cli.main([str(a) for a in args]) == 0
    lines = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(lines) == 5 and sum(e["label"] for e in lines) >= 3
    assert "box" in lines[0]["params"] and json.loads((out / "run.json").read_text())["method"] == "nsa"
    mask = np.asarray(Image.open(out / lines[0]["mask"]))
    assert mask.shape[:2] == (96, 112) and set(np.unique(mask)) <= {0, 255}


def test_cli_mvtec_preset_uses_nsas_object_masks(tmp_path):
    src = tmp_path / "normal"
    src.mkdir()
    for i, img in enumerate(_objects(6, 96)):
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(src / f"{i}.png")
    out = tmp_path / "out"
    args = ["generate", "--input", src, "--output", out, "--method", "nsa:mvtec_hazelnut", "--seed", 2]
    assert cli.main([str(a) for a in args]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["generator"]["skip_background"] == [[20.0, 20.0]], run["generator"]
    lines = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert sum(e["label"] for e in lines) >= 2
    for e in lines:  # nothing changes on the dark background
        image = np.asarray(Image.open(src / e["source"]))
        mask = np.asarray(Image.open(out / e["mask"])) > 0
        assert not (mask & (image.mean(-1) < 40)).any()
