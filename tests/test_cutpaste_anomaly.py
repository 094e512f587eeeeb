"""anofast.CutPaste: presets and the paper's ranges, exact masks, determinism, foreground, CLI, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import anofast
import anofast.ops.cutpaste  # noqa: F401  (registers the op's backends for backend_params)
from anofast import cli, sample_seeds
from anofast.testing import backend_params, make_batch

PRESETS = ("normal", "scar", "union", "three_way")


def _images(batch: int = 12, channels: int = 3, size: tuple[int, int] = (64, 72), seed: int = 0) -> torch.Tensor:
    return make_batch(batch, channels, *size, seed=seed)


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("channels", [1, 3])
def test_mask_is_exactly_the_changed_pixels(preset, channels):
    images = _images(channels=channels)
    out = getattr(anofast.CutPaste, preset)()(images, seed=3)
    assert out.image.shape == images.shape and out.mask.shape == (12, 1, 64, 72)
    changed = (out.image != images).any(1, keepdim=True)
    assert torch.equal(out.mask, changed.float())
    assert torch.equal(out.label, changed.flatten(1).any(1).long())
    normal = out.params["variant"] == 0
    assert torch.equal(out.image[normal], images[normal])  # label-0 samples untouched, bit for bit
    assert (out.label[normal] == 0).all() and out.label[~normal].sum() >= 1


def test_paper_ranges():
    """Normal: area 2-15 %, aspect in [0.3, 3.33]; scar: 2-16 x 10-25 px, +-45 deg; jitter 0.1; 3-way thirds."""
    n, size = 400, (256, 256)
    normal = anofast.CutPaste.normal(p_anomaly=1.0).sample_params((n, *size), 0)
    h, w = normal.crop.double().unbind(1)
    area = h * w / (256 * 256)
    assert area.min() > 0.018 and area.max() < 0.155 and 0.07 < area.mean() < 0.10
    assert (w / h).min() > 0.28 and (w / h).max() < 3.5
    assert (normal.angle == 0).all() and torch.equal(normal.variant, torch.ones(n, dtype=torch.int64))
    jit = normal.jitter
    assert (jit[:, :3] >= 0.9).all() and (jit[:, :3] <= 1.1).all() and (jit[:, 3].abs() <= 0.1).all()
    assert (normal.order.sort(1).values == torch.arange(4)).all()
    scar = anofast.CutPaste.scar(p_anomaly=1.0).sample_params((n, *size), 0)
    assert scar.crop[:, 1].min() >= 2 and scar.crop[:, 1].max() <= 16
    assert scar.crop[:, 0].min() >= 10 and scar.crop[:, 0].max() <= 25
    assert scar.angle.abs().max() <= 45 and scar.angle.abs().max() > 40
    assert (scar.variant == 2).all()
    three = anofast.CutPaste.three_way().sample_params((3000, *size), 0)
    counts = torch.bincount(three.variant, minlength=3).double() / 3000
    assert torch.allclose(counts, torch.full((3,), 1 / 3, dtype=torch.float64), atol=0.03)
    for p in (normal, scar):  # boxes and crops inside the image
        assert (p.src >= 0).all() and (p.src + p.crop <= 256).all() and (p.dst >= 0).all()


@pytest.mark.parametrize("backend", backend_params("cutpaste"))
def test_same_seed_same_anomaly_on_every_backend(backend):
    name, device = backend
    images = _images(batch=2, size=(13, 17)) if name == "triton" and device.type == "cpu" else _images()
    gen = anofast.CutPaste.union(p_anomaly=0.9)
    expected = anofast.CutPaste.union(p_anomaly=0.9, backend="reference")(images, seed=7)
    got = anofast.CutPaste.union(p_anomaly=0.9, backend=name)(images.to(device), seed=7)
    assert torch.equal(got.image.cpu().view(torch.int32), expected.image.view(torch.int32))
    assert torch.equal(got.mask.cpu(), expected.mask) and torch.equal(got.label.cpu(), expected.label)
    assert gen.config() == anofast.CutPaste.union(p_anomaly=0.9, backend=name).config()


def test_batch_and_thread_invariance():
    images = _images(batch=6)
    gen = anofast.CutPaste.three_way()
    torch.set_num_threads(2)
    batch = gen(images, seed=11)
    torch.set_num_threads(1)
    for i in range(6):
        one = gen(images[i : i + 1], seed=sample_seeds(11, 1, offset=i))
        assert torch.equal(one.image[0], batch.image[i]) and torch.equal(one.mask[0], batch.mask[i])
        assert one.params["variant"][0] == batch.params["variant"][i]


def test_apply_replays_sample_params_and_uint8_input():
    images = _images(batch=5)
    u8 = (images * 255).round().to(torch.uint8)
    gen = anofast.CutPaste.scar(p_anomaly=1.0)
    params = gen.sample_params(u8, 4)
    a = gen.apply(u8, params)
    b = gen(u8, seed=4)
    assert torch.equal(a.image, b.image) and torch.equal(a.mask, b.mask)
    assert a.image.dtype == torch.float32 and torch.equal(a.params["dst_box"], b.params["dst_box"])
    assert (a.label == 1).all()
    # the mask lies inside the recorded paste box
    for i, (y, x, h, w) in enumerate(a.params["dst_box"].tolist()):
        assert a.mask[i, 0, y : y + h, x : x + w].sum() == a.mask[i].sum()


def test_no_jitter_pastes_an_exact_copy():
    images = _images(batch=4)
    out = anofast.CutPaste.normal(p_anomaly=1.0, jitter=0.0)(images, seed=2)
    for i in range(4):
        sy, sx, h, w = out.params["src_box"][i].tolist()
        dy, dx, _, _ = out.params["dst_box"][i].tolist()
        assert torch.equal(out.image[i, :, dy : dy + h, dx : dx + w], images[i, :, sy : sy + h, sx : sx + w])


def test_foreground_restricts_the_anomaly():
    images = _images(batch=8)
    fg = torch.zeros(8, 1, 64, 72)
    fg[:, :, 20:50, 10:40] = 1
    fg[3] = 0  # an empty foreground: that sample stays normal
    out = anofast.CutPaste.union(p_anomaly=1.0)(images, seed=5, foreground=fg)
    assert (out.mask <= fg).all()
    assert out.params["variant"][3] == 0 and out.label[3] == 0 and torch.equal(out.image[3], images[3])
    assert out.label.sum() >= 6
    src = out.params["src_box"]  # crops centred on the object
    centre_y, centre_x = src[:, 0] + src[:, 2] // 2, src[:, 1] + src[:, 3] // 2
    ok = (centre_y >= 20) & (centre_y < 50) & (centre_x >= 10) & (centre_x < 40)
    assert ok[torch.arange(8) != 3].float().mean() > 0.6  # a crop larger than the object is moved to fit


def test_foreground_crop_lies_inside_the_object_when_it_fits():
    """On a disc, every crop that fits wholly inside the disc is taken from inside it (checked pixel by pixel), so
    no background is pasted onto the object; a crop too large for the object falls back to a centred one."""
    images = _images(batch=16)
    ys, xs = torch.meshgrid(torch.arange(64), torch.arange(72), indexing="ij")
    fg = (((ys - 32) ** 2 + (xs - 36) ** 2) < 26**2).float().expand(16, 1, 64, 72).clone()
    out = anofast.CutPaste.normal(p_anomaly=1.0, area_ratio=(0.02, 0.06))(images, seed=3, foreground=fg)
    inside = 0
    for i in range(16):
        sy, sx, h, w = out.params["src_box"][i].tolist()
        assert 0 <= sy and sy + h <= 64 and 0 <= sx and sx + w <= 72
        inside += bool(fg[i, 0, sy : sy + h, sx : sx + w].all())
    assert inside == 16  # at most 6 % of the image: such boxes always fit in this disc
    again = anofast.CutPaste.normal(p_anomaly=1.0, area_ratio=(0.02, 0.06))(images[5:6], seed=sample_seeds(3, 1, 5),
                                                                          foreground=fg[5:6])
    assert torch.equal(again.image[0], out.image[5]) and torch.equal(again.mask[0], out.mask[5])


def test_non_square_and_tiny_images():
    for size in ((30, 200), (200, 30), (8, 9), (1, 1)):
        images = _images(batch=4, size=size)
        for preset in ("normal", "scar"):
            out = getattr(anofast.CutPaste, preset)(p_anomaly=1.0)(images, seed=1)
            assert torch.equal(out.mask, (out.image != images).any(1, keepdim=True).float())


def test_bad_inputs():
    gen = anofast.CutPaste.normal()
    images = _images(batch=2)
    with pytest.raises(ValueError, match="empty batch"):
        gen(images[:0], seed=0)
    with pytest.raises(TypeError, match="images"):
        gen(images.numpy(), seed=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="channels"):
        gen(images[:, :2], seed=0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        gen(images * 2, seed=0)
    nan = images.clone()
    nan[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        gen(nan, seed=0)
    with pytest.raises(ValueError, match="foreground"):
        gen(images, seed=0, foreground=torch.ones(2, 1, 5, 5))
    with pytest.raises(TypeError, match="seed"):
        gen(images, seed="x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="params"):
        gen.apply(images[:1], gen.sample_params(images, 0))
    with pytest.raises(TypeError, match="params"):
        gen.apply(images, {"seed": 0})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="p_anomaly"):
        anofast.CutPaste(p_anomaly=2)
    with pytest.raises(ValueError, match="area_ratio"):
        anofast.CutPaste(area_ratio=(0.2, 0.1))
    with pytest.raises(ValueError, match="jitter"):
        anofast.CutPaste(jitter=(0.1, 0.1, 0.1, 0.7))
    with pytest.raises(TypeError, match="jitter"):
        anofast.CutPaste(jitter="strong")  # type: ignore[arg-type]


@pytest.mark.parametrize("preset", ["normal", "scar", "three_way"])
def test_cli_generate(tmp_path: Path, preset):
    root = tmp_path / "in"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(root / f"{i}.png")
    out = tmp_path / "out"
    argv = ["generate", "--input", str(root), "--output", str(out), "--method", "cutpaste", "--preset", preset,
            "--count", "6", "--seed", "1"]  # fmt: skip
    assert cli.main(argv) == 0
    lines = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(lines) == 6 and json.loads((out / "run.json").read_text())["method"] == "cutpaste"
    for e in lines:
        mask = np.asarray(Image.open(out / e["mask"]))
        assert (mask > 0).sum() == e["mask_pixels"] and e["label"] == int(e["mask_pixels"] > 0)
        assert e["params"]["variant"] in (0, 1, 2) and len(e["params"]["jitter"]) == 4
        if preset == "scar":
            assert e["params"]["variant"] in (0, 2) and abs(e["params"]["rotation_deg"]) <= 45
    assert cli.main([*argv[:4], str(tmp_path / "out2"), *argv[5:], "--source", str(root)]) == 2
