"""anofast.OneOf (per-sample choice, p_normal, provenance, foreground) and `anofast generate` mixes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import anofast
from anofast import cli
from anofast.synth.compose import OneOf, OneOfParams
from anofast.testing import assert_verbose_equal, make_batch
from anofast.types import AnomalyBatch


class Square:
    """A tiny generator: paints a seed-dependent grey square (exact mask), to tell generators apart."""

    def __init__(self, value: float):
        self.value = value

    def __call__(self, images, seed=None, *, foreground=None):
        seeds = anofast._rng.resolve_seeds(seed, images.shape[0])
        out = images.clone()
        mask = torch.zeros_like(images[:, :1])
        for i, s in enumerate(seeds.tolist()):
            y, x = s % 5, (s >> 8) % 5
            mask[i, :, y : y + 4, x : x + 4] = 1.0
        if foreground is not None:
            mask *= foreground
        out = torch.where(mask.bool(), torch.full_like(out, self.value), out)
        changed = (out != images).any(1, keepdim=True).float()
        return AnomalyBatch(out, changed, (changed.flatten(1).amax(1) > 0).long(), {"seed": seeds, "value":
                            torch.full((images.shape[0],), self.value)})

    def config(self):
        return {"value": self.value}


def _mix(p_normal: float = 0.25) -> OneOf:
    return OneOf([anofast.PerlinAnomaly.draem(p_anomaly=1.0), anofast.PerlinAnomaly.glass(source="self"),
                  Square(0.0)], weights=[2, 1, 1], p_normal=p_normal)


def test_sample_is_the_chosen_generator_alone_with_its_own_seed():
    images = make_batch(12, 3, 21, 19, seed=2)
    mix = _mix()
    out = mix(images, seed=0)
    assert set(out.params["generator"].tolist()) >= {-1, 0, 1, 2}, out.params["generator"]
    for i in range(12):
        k = int(out.params["generator"][i])
        one = anofast.sample_seeds(0, 1, i)
        single = mix(images[i : i + 1], seed=one)
        assert_verbose_equal(single.image, out.image[i : i + 1], f"sample {i} via OneOf")
        if k < 0:
            assert torch.equal(out.image[i], images[i]) and out.label[i] == 0 and out.mask[i].sum() == 0
            continue
        alone = mix.generators[k](images[i : i + 1], seed=one)
        assert_verbose_equal(out.image[i : i + 1], alone.image, f"sample {i}")
        assert_verbose_equal(out.mask[i : i + 1], alone.mask, f"mask {i}")
        assert out.label[i] == alone.label[0]
        assert out.params["generator_name"][i] == mix.names[k]


def test_mask_contract_and_threads():
    images = make_batch(8, 3, 24, 24, seed=3)
    out = _mix(p_normal=0.3)(images, seed=5)
    changed = (out.image != images).any(1, keepdim=True).float()
    assert torch.equal(out.mask, changed)
    assert torch.equal(out.label, (changed.flatten(1).amax(1) > 0).long())
    torch.set_num_threads(1)
    again = _mix(p_normal=0.3)(images, seed=5)
    assert torch.equal(again.image, out.image) and torch.equal(again.mask, out.mask)


def test_choice_frequencies_follow_weights_and_p_normal():
    params = OneOf([Square(0.0), Square(1.0), Square(0.5)], weights=[3, 1, 0], p_normal=0.2).sample_params(20000, 0)
    freq = torch.bincount(params.choice + 1, minlength=4).double() / 20000
    expected = torch.tensor([0.2, 0.8 * 0.75, 0.8 * 0.25, 0.0], dtype=torch.float64)
    assert torch.allclose(freq, expected, atol=0.015), freq
    assert torch.equal(params.normal, params.choice < 0)


def test_uint8_input_and_foreground_pass_through():
    images = (make_batch(6, 3, 20, 20, seed=4) * 255).round().to(torch.uint8)
    fg = torch.zeros(6, 1, 20, 20)
    fg[..., 2:12, 3:15] = 1
    mix = OneOf([anofast.PerlinAnomaly.draem(p_anomaly=1.0), Square(0.0)])
    out = mix(images, seed=1, foreground=fg)
    assert bool((out.mask <= fg).all()) and out.label.sum() > 0
    assert out.image.dtype == torch.float32
    ref = mix(images.float() * (1.0 / 255.0), seed=1, foreground=fg)  # the documented uint8 conversion
    assert torch.equal(out.image, ref.image)


def test_provenance_params_and_replay():
    images = make_batch(7, 3, 16, 16, seed=5)
    mix = OneOf([Square(0.0), Square(1.0)], names=["dark", "bright"], p_normal=0.2)
    params = mix.sample_params(7, 9)
    out = mix.apply(images, params)
    assert torch.equal(out.params["generator"], params.choice)
    for i, k in enumerate(params.choice.tolist()):
        name = out.params["generator_name"][i]
        assert name == ("normal" if k < 0 else ["dark", "bright"][k])
        if k >= 0:
            assert out.params[f"{name}.value"][i] == (0.0 if k == 0 else 1.0)
    assert torch.equal(mix(images, seed=9).image, out.image)
    assert json.dumps(mix.config())


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(generators=[]), ValueError, "generators"),
        (dict(generators=[Square(0), 3]), TypeError, r"generators\[1\]"),
        (dict(generators=[Square(0)], weights=[1, 2]), ValueError, "weights"),
        (dict(generators=[Square(0), Square(1)], weights=[0, 0]), ValueError, "weights"),
        (dict(generators=[Square(0)], weights=[float("nan")]), ValueError, "weights"),
        (dict(generators=[Square(0)], p_normal=1.5), ValueError, "p_normal"),
        (dict(generators=[Square(0), Square(1)], names=["a", "a"]), ValueError, "names"),
    ],
)
def test_bad_construction(kwargs, error, match):
    with pytest.raises(error, match=match):
        OneOf(**kwargs)


def test_bad_call():
    mix = OneOf([Square(0.0)])
    with pytest.raises(ValueError, match="images"):
        mix(torch.rand(3, 8, 8), seed=0)
    with pytest.raises(ValueError, match="foreground"):
        mix(torch.rand(2, 3, 8, 8), seed=0, foreground=torch.ones(2, 1, 4, 4))
    with pytest.raises(ValueError, match="batch size"):
        mix.apply(torch.rand(2, 3, 8, 8), mix.sample_params(3, 0))
    with pytest.raises(TypeError, match="OneOfParams"):
        mix.apply(torch.rand(2, 3, 8, 8), {"choice": 0})
    with pytest.raises(ValueError, match="batch_size"):
        mix.sample_params(0)
    assert isinstance(mix.sample_params(2, 0), OneOfParams)


# ------------------------------------------------------------------------------------------------ CLI
def _inputs(root: Path, n: int = 4, size: int = 40) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:size, 0:size]
    disk = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2) < (size / 3) ** 2
    for i in range(n):
        img = np.where(disk[..., None], [180, 120 + 10 * i, 60], [15, 15, 20]).astype(np.uint8)
        Image.fromarray(img).save(root / f"im{i}.png")
    return root


def _manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def test_cli_mix_with_weights_p_normal_and_auto_foreground(tmp_path):
    inputs = _inputs(tmp_path / "in")
    out = tmp_path / "out"
    rc = cli.main(["generate", "--input", str(inputs), "--output", str(out), "--method", "perlin:glass,perlin:draem",
                   "--weights", "2,1", "--p-normal", "0.3", "--foreground", "auto", "--count", "12", "--seed", "3"])
    assert rc == 0
    entries = _manifest(out)
    assert len(entries) == 12
    names = {e["params"]["generator_name"] for e in entries}
    assert "normal" in names and names <= {"normal", "perlin:glass", "perlin:draem"}
    run = json.loads((out / "run.json").read_text())
    assert run["method"] == "perlin:glass,perlin:draem" and run["foreground"] == "auto"
    assert run["generator"]["weights"] == [2.0, 1.0] and run["generator"]["p_normal"] == 0.3
    yy, xx = np.mgrid[0:40, 0:40]
    disk = ((yy - 20) ** 2 + (xx - 20) ** 2) < (40 / 3) ** 2
    for e in entries:
        mask = np.asarray(Image.open(out / e["mask"])) > 127
        assert not (mask & ~disk).any(), e["index"]  # anomalies stay on the object
        if e["params"]["generator_name"] == "normal":
            assert e["label"] == 0


def test_cli_foreground_folder(tmp_path):
    inputs = _inputs(tmp_path / "in", n=2)
    fgdir = tmp_path / "fg"
    fgdir.mkdir()
    half = np.zeros((40, 40), np.uint8)
    half[:, :20] = 255
    for i in range(2):
        Image.fromarray(half).save(fgdir / f"im{i}_mask.png")
    out = tmp_path / "out"
    rc = cli.main(["generate", "--input", str(inputs), "--output", str(out), "--method", "perlin",
                   "--preset", "glass", "--foreground", str(fgdir), "--count", "4", "--seed", "1"])
    assert rc == 0
    for e in _manifest(out):
        mask = np.asarray(Image.open(out / e["mask"])) > 127
        assert not mask[:, 20:].any()


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--method", "perlin,nope"], "nope"),
        (["--method", "perlin:nopreset"], "preset"),
        (["--method", "perlin,perlin:glass", "--weights", "1"], "--weights"),
        (["--method", "perlin", "--weights", "a,b"], "--weights"),
        (["--method", "perlin", "--p-normal", "2"], "--p-normal"),
        (["--foreground", "/nonexistent/masks"], "--foreground"),
    ],
)
def test_cli_mix_errors(tmp_path, capsys, extra, match):
    inputs = _inputs(tmp_path / "in", n=1)
    argv = ["generate", "--input", str(inputs), "--output", str(tmp_path / "out"), "--count", "1", *extra]
    try:
        rc = cli.main(argv)
    except SystemExit as e:  # argparse type errors
        rc = e.code
    assert rc == 2
    assert match in capsys.readouterr().err


def test_cli_foreground_folder_missing_mask(tmp_path, capsys):
    inputs = _inputs(tmp_path / "in", n=2)
    fgdir = tmp_path / "fg"
    fgdir.mkdir()
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(fgdir / "im0.png")
    rc = cli.main(["generate", "--input", str(inputs), "--output", str(tmp_path / "out"), "--foreground", str(fgdir),
                   "--count", "2"])
    assert rc == 2
    assert "im1" in capsys.readouterr().err
