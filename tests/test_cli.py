"""The ``anofast`` command line: generate (end to end, resume, errors) and demo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import anofast
from anofast import cli
from anofast.data import read_image


def _make_inputs(root: Path) -> list[Path]:
    """Three 40x48 images and one 32x32 (different sizes go through the generator in separate groups)."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    files = []
    for i, (h, w) in enumerate([(40, 48), (40, 48), (32, 32), (40, 48)]):
        y, x = np.mgrid[0:h, 0:w]
        base = (np.sin(x / (3 + i)) * 60 + y * 2 + 90)[..., None] + rng.integers(0, 30, (h, w, 3))
        path = root / f"img_{i}.{'jpg' if i == 1 else 'png'}"
        Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).save(path)
        files.append(path)
    return files


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("normal")
    _make_inputs(root)
    return root


def _run(*argv: str) -> int:
    return cli.main([str(a) for a in argv])


def _generate(inputs: Path, out: Path, *extra: str, count: int = 10, batch: int = 4) -> int:
    return _run("generate", "--input", inputs, "--output", out, "--method", "perlin", "--preset", "anomalib",
                "--count", str(count), "--seed", "5", "--batch-size", str(batch), *extra)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def reference_run(inputs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "out"
    assert _generate(inputs, out) == 0
    return out


# ------------------------------------------------------------------------------------------ generate
def test_generate_end_to_end(inputs, reference_run):
    out = reference_run
    names = sorted(p.name for p in inputs.iterdir())
    assert sorted(p.name for p in (out / "images").iterdir()) == [f"{k:06d}.png" for k in range(10)]
    assert sorted(p.name for p in (out / "masks").iterdir()) == [f"{k:06d}.png" for k in range(10)]
    run = json.loads((out / "run.json").read_text())
    assert run["method"] == "perlin" and run["preset"] == "anomalib" and run["seed"] == 5 and run["count"] == 10
    assert run["generator"] == anofast.PerlinAnomaly.anomalib().config()
    entries = _manifest(out)
    assert [e["index"] for e in entries] == list(range(10))
    gen = anofast.PerlinAnomaly.anomalib()
    for e in entries:
        k = e["index"]
        assert e["source"] == names[k % 4] and e["image"] == f"images/{k:06d}.png"
        assert e["seed"] == int(anofast.sample_seeds(5, 1, k)) == e["params"]["seed"]
        src = read_image(inputs / e["source"])
        image = read_image(out / e["image"])
        with Image.open(out / e["mask"]) as m:
            mask = torch.from_numpy(np.array(m))
        assert image.shape == src.shape and mask.shape == src.shape[1:]
        assert set(mask.unique().tolist()) <= {0, 255}
        assert e["mask_pixels"] == int((mask > 0).sum()) and e["coverage"] == e["mask_pixels"] / mask.numel()
        assert e["label"] == int(e["mask_pixels"] > 0)
        # the written sample is the generator's output for (seed, k), rounded to uint8
        ref = gen(src.unsqueeze(0), seed=anofast.sample_seeds(5, 1, k))
        assert torch.equal(image, (ref.image[0] * 255 + 0.5).floor().clamp(0, 255).to(torch.uint8))
        assert torch.equal(mask, ref.mask[0, 0].to(torch.uint8) * 255)
        if e["label"] == 0:
            assert torch.equal(image, src)
    assert {e["label"] for e in entries} == {0, 1}  # anomalib's p=0.5: both kinds among 10


def test_batch_size_does_not_change_output(inputs, reference_run, tmp_path):
    assert _generate(inputs, tmp_path / "b3", batch=3) == 0
    a, b = _files(reference_run), _files(tmp_path / "b3")
    assert a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == ["run.json"]  # only the recorded batch size differs


def test_resume_extends_a_shorter_run(inputs, reference_run, tmp_path):
    out = tmp_path / "out"
    assert _generate(inputs, out, count=6) == 0
    assert len(_manifest(out)) == 6
    assert _generate(inputs, out, "--resume") == 0
    assert _files(out) == _files(reference_run)


def test_resume_after_a_crash(inputs, reference_run, tmp_path, monkeypatch):
    out = tmp_path / "out"
    real = cli.atomic_write_bytes
    calls = []

    def crashing(path, data, **kw):  # dies in the middle of the second batch's PNGs
        calls.append(path)
        if len(calls) == 13:
            raise KeyboardInterrupt
        real(path, data, **kw)

    monkeypatch.setattr(cli, "atomic_write_bytes", crashing)
    assert _generate(inputs, out) == 130
    monkeypatch.setattr(cli, "atomic_write_bytes", real)
    assert len(_manifest(out)) == 4
    with open(out / "manifest.jsonl", "ab") as f:
        f.write(b'{"index": 4, "image": "images/0000')  # a torn append
    (out / "images" / ".000005.png.123.abc.tmp").write_bytes(b"partial")  # a temp file of a killed write
    (out / "masks" / "000002.png").unlink()  # listed, but lost (a power cut before the data reached the disk)
    assert _generate(inputs, out, "--resume") == 0
    assert _files(out) == _files(reference_run)


def test_resume_after_lost_manifest_lines(inputs, reference_run, tmp_path):
    out = tmp_path / "out"
    assert _generate(inputs, out) == 0
    lines = (out / "manifest.jsonl").read_bytes().splitlines(keepends=True)
    (out / "manifest.jsonl").write_bytes(b"".join(lines[:7]))
    (out / "images" / "000008.png").unlink()
    (out / "masks" / "000009.png").write_bytes(b"garbage")
    assert _generate(inputs, out, "--resume", batch=2) == 0
    got, ref = _files(out), _files(reference_run)
    assert [k for k in ref if got[k] != ref[k]] == ["run.json"]


def test_resume_refuses_other_settings(inputs, tmp_path, capsys):
    out = tmp_path / "out"
    assert _generate(inputs, out, count=4) == 0
    capsys.readouterr()
    assert _generate(inputs, out) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--resume" in err and "already holds a run" in err
    assert _run("generate", "--input", inputs, "--output", out, "--count", "8", "--seed", "6", "--resume") == 2
    err = capsys.readouterr().err
    assert "other settings" in err and "seed: 5 -> 6" in err and "preset: 'anomalib' -> 'draem'" in err
    assert _generate(inputs, out, "--resume", count=3) == 2
    assert "already holds 4 samples" in capsys.readouterr().err
    (out / "manifest.jsonl").write_bytes(b"not json\n" + (out / "manifest.jsonl").read_bytes())
    assert _generate(inputs, out, "--resume") == 2
    assert "line 1 is not valid JSON" in capsys.readouterr().err


def test_generate_with_size_source_and_gallery(inputs, tmp_path):
    textures = tmp_path / "tex"
    textures.mkdir()
    for i in range(2):
        Image.fromarray(np.full((16, 16, 3), 60 + 120 * i, np.uint8)).save(textures / f"t{i}.png")
    out = tmp_path / "out"
    assert _run("generate", "--input", inputs, "--output", out, "--count", "5", "--size", "24x32",
                "--source", textures, "--gallery") == 0
    assert all(read_image(p).shape == (3, 24, 32) for p in (out / "images").iterdir())
    run = json.loads((out / "run.json").read_text())
    assert run["size"] == [24, 32] and run["preset"] == "draem" and run["generator"]["source"] == str(textures)
    html = (out / "index.html").read_text()
    original = Path(os.path.relpath(inputs / "img_0.png", out)).as_posix()  # the gallery links the input file
    for ref in ("images/000000.png", "masks/000004.png", "overlays/000000.png", original):
        assert f'src="{ref}"' in html, ref
    with Image.open(out / "gallery.png") as g:
        assert g.width > 4 * 100 and g.height > 100


# ------------------------------------------------------------------------------------------ errors
def _error(capsys, *argv) -> str:
    assert _run(*argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_input_errors(tmp_path, capsys):
    out = tmp_path / "out"
    assert "image folder not found" in _error(capsys, "generate", "--input", tmp_path / "nope", "--output", out)
    (tmp_path / "empty").mkdir()
    assert "no images" in _error(capsys, "generate", "--input", tmp_path / "empty", "--output", out)
    bad = tmp_path / "bad"
    _make_inputs(bad)
    (bad / "img_2.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    err = _error(capsys, "generate", "--input", bad, "--output", out, "--count", "4")
    assert "cannot read image" in err and "img_2.png" in err
    err = _error(capsys, "generate", "--input", bad, "--output", tmp_path / "o2", "--source", tmp_path / "nope")
    assert "--source" in err
    err = _error(capsys, "generate", "--input", bad, "--output", tmp_path / "o3", "--preset", "cutpaste")
    assert "--preset 'cutpaste'" in err


@pytest.mark.parametrize("size", ["abc", "0x4", "3x4x5", "-2"])
def test_bad_size(inputs, tmp_path, capsys, size):
    with pytest.raises(SystemExit) as exc:
        _run("generate", "--input", inputs, "--output", tmp_path / "o", f"--size={size}")
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--size" in err and "HxW" in err


def test_unwritable_output(inputs, tmp_path, capsys):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    err = _error(capsys, "generate", "--input", inputs, "--output", blocker / "out")
    assert "cannot write to output folder" in err
    assert "is not a folder" in _error(capsys, "generate", "--input", inputs, "--output", blocker)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_output(inputs, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        err = _error(capsys, "generate", "--input", inputs, "--output", locked / "out")
        assert "cannot write to output folder" in err and "Permission denied" in err
    finally:
        locked.chmod(0o700)


def test_console_script_error_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "anofast.cli", "generate", "--input", str(tmp_path / "nope"),
                           "--output", str(tmp_path / "o")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "not found" in proc.stderr


# ------------------------------------------------------------------------------------------ demo
def test_demo(tmp_path, capsys):
    out = tmp_path / "demo"
    assert _run("demo", "--output", out, "--count", "5", "--size", "48", "--preset", "glass") == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and " s" in printed
    entries = _manifest(out)
    assert len(entries) == 5 and all(e["label"] == 1 for e in entries)  # the demo forces an anomaly per sample
    assert entries[0]["source"].startswith("builtin:")
    for e in entries:
        for key in ("image", "mask", "original"):
            assert read_image(out / e[key]).shape == (3, 48, 48)
    with Image.open(out / "gallery.png") as g:
        assert g.mode == "RGB" and g.width >= 2 * 4 * 48 and g.height >= 3 * 48
        assert np.asarray(g).std() > 10  # not a blank sheet
    html = (out / "index.html").read_text()
    for e in entries:
        for key in ("image", "mask", "original"):
            assert f'src="{e[key]}"' in html
        assert f'src="overlays/{e["index"]:06d}.png"' in html and (out / "overlays" / f"{e['index']:06d}.png").exists()
    # a second demo in the same folder replaces the first, leaving no stale samples
    assert _run("demo", "--output", out, "--count", "2", "--size", "48") == 0
    assert sorted(p.name for p in (out / "images").iterdir()) == ["000000.png", "000001.png"]
    assert len(_manifest(out)) == 2


def test_demo_refuses_a_generate_folder(reference_run, capsys):
    assert "holds another run" in _error(capsys, "demo", "--output", reference_run, "--count", "1")


def test_generate_on_real_grey_images(shared_data, tmp_path, capsys):
    """MTD tiles: grey JPEGs of many sizes; kept at their own size, so each batch splits into size groups."""
    root = shared_data / "magnetic_tile" / "train" / "good"
    out = tmp_path / "mtd"
    assert _run("generate", "--input", root, "--output", out, "--count", "6", "--batch-size", "3",
                "--preset", "glass") == 0
    for e in _manifest(out):
        src = read_image(root / e["source"])
        assert read_image(out / e["image"]).shape == src.shape and e["label"] == 1


def test_write_gallery_rejects_mismatched_lists(tmp_path):
    from anofast.gallery import write_gallery

    with pytest.raises(ValueError, match="one length"):
        write_gallery(tmp_path, ["a.png"], ["b.png"], [], ["x"])
