"""The protocol end to end on a tiny MVTec-layout folder the test writes, and its input errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from anofast.cli import main
from anofast.eval import EvalConfig, run_eval
from anofast.eval.dataset import LayoutError, discover
from anofast.eval.downstream import GeneratorOutputError, resolve_generator

TINY = EvalConfig(seeds=1, size=32, n_synthetic=8, steps=4, batch_size=8, bank_size=128)


def _surface(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[:h, :w]
    base = 120 + 40 * np.sin(x / 3.0 + rng.uniform(0, 6)) + rng.normal(0, 6, (h, w))
    return np.clip(base, 0, 255).astype(np.uint8)


def write_mvtec(root: Path, *, grey_defect: bool = True) -> Path:
    """train/good (RGB 40x48), test/good, test/scratch (RGB), test/spot (grey, another size) + masks."""
    rng = np.random.default_rng(0)
    for split, n in (("train/good", 10), ("test/good", 4)):
        (root / split).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.stack([_surface(rng, 40, 48)] * 3, -1)).save(root / split / f"{i:03d}.png")
    for defect, (h, w), grey in (("scratch", (40, 48), False), ("spot", (36, 52), grey_defect)):
        (root / "test" / defect).mkdir(parents=True)
        (root / "ground_truth" / defect).mkdir(parents=True)
        for i in range(6):
            im = _surface(rng, h, w)
            mask = np.zeros((h, w), np.uint8)
            r, c = 5 + 3 * i, 6 + 4 * i
            mask[r : r + 6, c : c + 8] = 255
            im[mask > 0] = 20
            img = Image.fromarray(im) if grey else Image.fromarray(np.stack([im] * 3, -1))
            img.save(root / "test" / defect / f"{i:03d}.png")
            Image.fromarray(mask).save(root / "ground_truth" / defect / f"{i:03d}_mask.png")
    return root


def test_end_to_end_cli(tmp_path):
    data = write_mvtec(tmp_path / "data")
    out = tmp_path / "out"
    rc = main(["eval", "--data", str(data), "--generators", "perlin:draem", "--seeds", "2", "--out", str(out),
               "--size", "32", "--synthetic", "8", "--steps", "4", "--batch-size", "8", "--bank-size", "128"])
    assert rc == 0
    for name in ("results.json", "report.md", "bars.png", "curves.png", "gallery/index.html"):
        assert (out / name).is_file(), name
    res = json.loads((out / "results.json").read_text())
    assert res["data"]["few_shot_reserved"] == 4  # 6 // 3 per defect type
    assert res["data"]["evaluation_images"] == 4 + 8
    g = res["generators"]["perlin:draem"]
    assert len(g["per_seed"]) == 2 and len(res["baseline"]["per_seed"]) == 2
    for row in g["per_seed"] + res["baseline"]["per_seed"]:
        assert all(0.0 <= row[k] <= 1.0 for k in ("image_auroc", "pixel_ap", "aupro"))
    assert g["fidelity"]["visible_fraction"] == 1.0 and g["fidelity"]["leakage"] == 0.0  # anofast's mask contract
    assert g["realism"]["kid"] is not None and g["realism"]["diversity"] > 0
    assert g["per_seed"][0]["anomalous_fraction"] == 1.0  # built with p_anomaly=1
    assert "perlin:draem" in (out / "report.md").read_text()
    # the baseline here is easy (dark spots), it must beat chance
    assert res["baseline"]["mean"]["image_auroc"] > 0.7


def test_reproducible_and_callable_generator(tmp_path):
    data = write_mvtec(tmp_path / "data")

    def darken(images, seed):  # any (images, seed) -> (images, masks) callable
        masks = torch.zeros(images.shape[0], 1, *images.shape[-2:])
        masks[..., 10:20, 12:24] = 1
        return images * (1 - 0.5 * masks), masks

    r1, _ = run_eval(data, [darken], TINY, progress=False)
    r2, _ = run_eval(data, [darken], TINY, progress=False)
    for k in ("image_auroc", "pixel_ap", "aupro"):
        assert r1["generators"]["darken"]["mean"][k] == pytest.approx(r2["generators"]["darken"]["mean"][k], abs=1e-6)
        assert r1["baseline"]["mean"][k] == pytest.approx(r2["baseline"]["mean"][k], abs=1e-6)
    assert r1["generators"]["darken"]["fidelity"]["visible_fraction"] == 1.0


def test_not_mvtec_layout(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(LayoutError, match="not in MVTec layout"):
        discover(tmp_path)
    with pytest.raises(LayoutError, match="does not exist"):
        discover(tmp_path / "missing")
    rc = main(["eval", "--data", str(tmp_path), "--out", str(tmp_path / "o")])
    assert rc == 2


def test_missing_and_mismatched_masks(tmp_path):
    data = write_mvtec(tmp_path / "a")
    (data / "ground_truth" / "scratch" / "002_mask.png").unlink()
    with pytest.raises(LayoutError, match="no mask for .*002.png"):
        discover(data)
    data = write_mvtec(tmp_path / "b")
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(data / "ground_truth" / "spot" / "004_mask.png")
    with pytest.raises(LayoutError, match="mask .*004_mask.png is 10x10 but its image is 36x52"):
        run_eval(data, ["perlin"], TINY, progress=False)


def test_bad_generators(tmp_path):
    data = write_mvtec(tmp_path / "data")
    with pytest.raises(GeneratorOutputError, match="returned images of shape"):
        run_eval(data, [lambda x, s: (x[:, :, :-1], torch.zeros_like(x[:, :1]))], TINY, progress=False)
    with pytest.raises(GeneratorOutputError, match="returned masks of shape"):
        run_eval(data, [lambda x, s: (x, torch.zeros_like(x))], TINY, progress=False)
    with pytest.raises(GeneratorOutputError, match="must return"):
        run_eval(data, [lambda x, s: x], TINY, progress=False)
    with pytest.raises(ValueError, match="unknown generator 'nope'"):
        resolve_generator("nope")
    with pytest.raises(ValueError, match="no preset 'x'"):
        resolve_generator("perlin:x")


def test_magnetic_tile_layout(shared_data):
    """The real data set is read as it is staged (MVTec layout, no adapter); the split follows METHODS.md 8.4."""
    root = shared_data / "magnetic_tile"
    if not root.is_dir():
        pytest.skip(f"{root} is absent")
    layout = discover(root)
    counts = json.loads((root / "manifest.json").read_text())["counts"]
    assert len(layout.train) == counts["train/good"]
    assert layout.defects == ["blowhole", "break", "crack", "fray", "uneven"]
    few = layout.few_shot()
    assert len(few) == sum(counts[f"test/{d}"] // 3 for d in layout.defects)
    assert len(layout.evaluation()) == len(layout.test) - len(few)
    blowholes = [t.image.name for t in layout.test if t.defect == "blowhole"]
    assert [t.image.name for t in few if t.defect == "blowhole"] == blowholes[: len(blowholes) // 3]
