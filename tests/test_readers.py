"""anofast.data readers: MVTec AD, VisA (split csv), plain folders with masks; size rule and clear errors."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from anofast.data import FolderDataset, MVTecAD, VisA, read_mask


def _img(path: Path, h: int, w: int, grey: bool = False, value: int = 120) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(abs(hash(path.name)) % 2**32)
    a = rng.integers(value - 20, value + 20, (h, w) if grey else (h, w, 3), dtype=np.uint8)
    Image.fromarray(a).save(path)


def _mask(path: Path, h: int, w: int, box: tuple[int, int, int, int], high: int = 255) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    m = np.zeros((h, w), np.uint8)
    m[box[0] : box[2], box[1] : box[3]] = high
    Image.fromarray(m).save(path)


def _mvtec(root: Path) -> Path:
    """A category with images of varying size (as magnetic tile), grey and RGB."""
    cat = root / "widget"
    _img(cat / "train" / "good" / "000.png", 30, 40)
    _img(cat / "train" / "good" / "001.jpg", 25, 33, grey=True)
    _img(cat / "test" / "good" / "000.png", 30, 40)
    _img(cat / "test" / "scratch" / "000.png", 30, 40)
    _mask(cat / "ground_truth" / "scratch" / "000_mask.png", 30, 40, (5, 6, 15, 20))
    _img(cat / "test" / "dent" / "000.png", 20, 24)
    _mask(cat / "ground_truth" / "dent" / "000_mask.png", 20, 24, (0, 0, 4, 4))
    return root


def test_mvtec_layout_and_size_rule(tmp_path):
    root = _mvtec(tmp_path)
    train = MVTecAD(root, "widget", split="train")
    assert len(train) == 2 and train.labels == [0, 0]
    item = train[1]
    assert item["image"].shape == (3, 25, 33) and item["image"].dtype == torch.float32  # grey -> 3 channels
    assert item["mask"].shape == (1, 25, 33) and not item["mask"].any()
    test = MVTecAD(root / "widget", split="test", size=(16, 20))
    assert [(s.defect, s.label) for s in test.samples] == [("dent", 1), ("good", 0), ("scratch", 1)]
    scratch = test[2]
    assert scratch["image"].shape == (3, 16, 20) and scratch["mask"].shape == (1, 16, 20)
    assert set(scratch["mask"].unique().tolist()) == {0.0, 1.0}  # nearest neighbour keeps {0, 1}
    native = MVTecAD(root, "widget", split="test")[2]["mask"]
    assert native.sum() == 10 * 14 and native[0, 5:15, 6:20].all()
    assert MVTecAD(root, "widget", split="test", defects=["dent"]).labels == [1, 0]
    loader = torch.utils.data.DataLoader(test, batch_size=3)
    batch = next(iter(loader))
    assert batch["image"].shape == (3, 3, 16, 20) and batch["label"].tolist() == [1, 0, 1]


def test_mvtec_errors(tmp_path):
    root = _mvtec(tmp_path)
    with pytest.raises(FileNotFoundError, match="not an MVTec AD category folder"):
        MVTecAD(tmp_path)
    with pytest.raises(FileNotFoundError, match="category folder not found"):
        MVTecAD(tmp_path, "nothing")
    with pytest.raises(ValueError, match="split"):
        MVTecAD(root, "widget", split="val")
    with pytest.raises(ValueError, match="defects"):
        MVTecAD(root, "widget", split="test", defects=["crack"])
    (root / "widget" / "ground_truth" / "dent" / "000_mask.png").unlink()
    with pytest.raises(FileNotFoundError, match="no mask for .*dent"):
        MVTecAD(root, "widget", split="test")
    _mask(root / "widget" / "ground_truth" / "dent" / "000_mask.png", 21, 24, (0, 0, 4, 4))
    ds = MVTecAD(root, "widget", split="test")
    with pytest.raises(ValueError, match="masks must match their images"):
        ds[0]


def test_visa_split_csv(tmp_path):
    rows = [("candle", "train", "normal", "candle/Data/Images/Normal/0000.JPG", "")]
    rows.append(("candle", "test", "normal", "candle/Data/Images/Normal/0001.JPG", ""))
    rows.append(("candle", "test", "anomaly", "candle/Data/Images/Anomaly/0000.JPG",
                 "candle/Data/Masks/Anomaly/0000.png"))
    rows.append(("pcb1", "train", "normal", "pcb1/Data/Images/Normal/0000.JPG", ""))
    for r in rows:
        _img(tmp_path / r[3], 30, 36)
    _mask(tmp_path / rows[2][4], 30, 36, (2, 3, 8, 9), high=1)  # VisA-style 0/1 mask
    (tmp_path / "split_csv").mkdir()
    with open(tmp_path / "split_csv" / "1cls.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["object", "split", "label", "image", "mask"])
        w.writerows(rows)
    train = VisA(tmp_path, split="train")
    assert len(train) == 2
    test = VisA(tmp_path, "candle", split="test", size=24)
    assert test.labels == [0, 1]
    item = test[1]
    assert item["image"].shape == (3, 24, 24) and item["label"] == 1 and item["mask"].sum() > 0
    assert read_mask(tmp_path / rows[2][4]).sum() == 36  # 0/1 masks are read as {0, 1}
    with pytest.raises(ValueError, match="category 'fryum'"):
        VisA(tmp_path, "fryum")
    with pytest.raises(FileNotFoundError, match="split csv"):
        VisA(tmp_path, csv_file="split_csv/2cls.csv")
    (tmp_path / rows[2][4]).unlink()
    with pytest.raises(FileNotFoundError, match="line 4: mask not found"):
        VisA(tmp_path, "candle", split="test")
    with open(tmp_path / "split_csv" / "bad.csv", "w") as fh:
        fh.write("object,split,image\n")
    with pytest.raises(ValueError, match="lacks the columns"):
        VisA(tmp_path, csv_file="split_csv/bad.csv")


def test_plain_folder_with_masks(tmp_path):
    _img(tmp_path / "imgs" / "a.png", 20, 20)
    _img(tmp_path / "imgs" / "b.png", 20, 20)
    _img(tmp_path / "imgs" / "c.png", 20, 20)
    _mask(tmp_path / "masks" / "a_mask.png", 20, 20, (1, 1, 5, 5))
    _mask(tmp_path / "masks" / "b.png", 20, 20, (0, 0, 0, 0))  # an empty mask: normal
    ds = FolderDataset(tmp_path / "imgs", tmp_path / "masks")
    assert [ds[i]["label"] for i in range(3)] == [1, 0, 0]
    assert ds[0]["mask"].sum() == 16 and not ds[2]["mask"].any()
    assert len(FolderDataset(tmp_path / "imgs")) == 3
    with pytest.raises(FileNotFoundError, match="mask folder"):
        FolderDataset(tmp_path / "imgs", tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        FolderDataset(tmp_path / "nope")
    (tmp_path / "imgs" / "c.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot read image"):
        ds[2]


@pytest.mark.parametrize(("name", "train", "test", "defects"), [
    ("mvtec_hazelnut_mini", 50, 10, {"crack", "cut", "hole", "print"}),
    ("mvtec_leather_mini_256", 4, 15, {"color", "cut", "fold", "glue", "poke"}),
    ("magnetic_tile", 752, 592, {"blowhole", "break", "crack", "fray", "uneven"}),
])
def test_shared_data(shared_data, name, train, test, defects):
    root = shared_data / name
    if not root.is_dir():
        pytest.skip(f"{root} is absent")
    tr = MVTecAD(root, split="train", size=64)
    te = MVTecAD(root, split="test", size=64)
    assert len(tr) == train and len(te) == test
    assert {s.defect for s in te.samples} - {"good"} == defects
    # a few items of every defect type (images of varying size in magnetic tile)
    picked = {}
    for i, s in enumerate(te.samples):
        picked.setdefault(s.defect, i)
    for i in picked.values():
        item = te[i]
        assert item["image"].shape == (3, 64, 64) and item["mask"].shape == (1, 64, 64)
        assert set(item["mask"].unique().tolist()) <= {0.0, 1.0}
        if item["label"] == 0:
            assert not item["mask"].any()
    native = MVTecAD(root, split="test")
    item = native[picked[sorted(defects)[0]]]
    assert item["mask"].shape[1:] == item["image"].shape[1:] and item["mask"].any()
