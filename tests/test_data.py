"""Image folders, texture pools and PNG writing (anofast.data)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from anofast.data import (
    ImageFolder,
    ImageReadError,
    list_images,
    load_texture_folder,
    read_image,
    textures_from_tensor,
    write_png,
)
from anofast.data import textures as textures_module


def _save(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path)
    return path


def _rgb(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture
def texture_dir(tmp_path: Path) -> Path:
    root = tmp_path / "tex"
    _save(root / "b.png", _rgb(20, 30, 1))
    _save(root / "a.jpg", _rgb(16, 16, 2))
    _save(root / "sub" / "c.bmp", _rgb(40, 12, 3))
    _save(root / "sub" / "grey.png", np.full((8, 8), 77, np.uint8), "L")
    _save(root / ".hidden.png", _rgb(8, 8, 4))  # e.g. a macOS resource fork: skipped
    (root / "notes.txt").write_text("not an image")
    return root


# ------------------------------------------------------------------------------------------ listing
def test_list_images_sorted_recursive_and_hidden_skipped(texture_dir: Path):
    names = [f.relative_to(texture_dir).as_posix() for f in list_images(texture_dir, recursive=True)]
    assert names == ["a.jpg", "b.png", "sub/c.bmp", "sub/grey.png"]
    assert [f.name for f in list_images(texture_dir)] == ["a.jpg", "b.png"]


def test_list_images_errors(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="not found: .*nope"):
        list_images(tmp_path / "nope")
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(NotADirectoryError, match="not a folder: .*file.png"):
        list_images(tmp_path / "file.png")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no images .* found in image folder .*empty"):
        list_images(tmp_path / "empty")


# ------------------------------------------------------------------------------------------ texture folders
def test_load_texture_folder_matches_pil(texture_dir: Path):
    pool = load_texture_folder(texture_dir, (24, 18))
    assert pool.shape == (4, 3, 24, 18) and pool.dtype == torch.uint8 and pool.is_contiguous()
    for i, name in enumerate(["a.jpg", "b.png", "sub/c.bmp", "sub/grey.png"]):
        with Image.open(texture_dir / name) as im:
            ref = np.asarray(im.convert("RGB").resize((18, 24), Image.Resampling.BILINEAR))
        assert torch.equal(pool[i], torch.from_numpy(ref.copy()).permute(2, 0, 1)), name
    assert bool((pool[3] == 77).all())  # grey -> RGB, constant stays constant


def test_load_texture_folder_cache_and_invalidation(texture_dir: Path):
    first = load_texture_folder(texture_dir, 16)
    assert load_texture_folder(str(texture_dir), (16, 16)) is first  # same folder and size: decoded once
    assert load_texture_folder(texture_dir, (16, 8)) is not first
    target = texture_dir / "b.png"
    _save(target, 255 - _rgb(20, 30, 1))
    os.utime(target, ns=(1, 1))  # a new mtime even on file systems with coarse timestamps
    again = load_texture_folder(texture_dir, 16)
    assert again is not first and not torch.equal(again[1], first[1]) and torch.equal(again[0], first[0])


def test_load_texture_folder_cache_is_bounded(tmp_path: Path):
    _save(tmp_path / "t.png", _rgb(4, 4, 0))
    for s in range(1, textures_module._CACHE_ENTRIES + 3):
        load_texture_folder(tmp_path, s)
    assert len(textures_module._cache) <= textures_module._CACHE_ENTRIES


def test_load_texture_folder_errors(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="texture folder not found: .*missing"):
        load_texture_folder(tmp_path / "missing", 8)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match="no images .* in texture folder .*empty"):
        load_texture_folder(tmp_path / "empty", 8)
    bad = tmp_path / "bad"
    _save(bad / "ok.png", _rgb(8, 8, 0))
    (bad / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    with pytest.raises(ImageReadError, match="cannot read image .*broken.jpg"):
        load_texture_folder(bad, 8)
    truncated = tmp_path / "trunc"
    png = _save(truncated / "t.png", _rgb(64, 64, 0)).read_bytes()
    (truncated / "t.png").write_bytes(png[: len(png) // 2])
    with pytest.raises(ImageReadError, match="cannot read image .*t.png"):
        load_texture_folder(truncated, 8)
    with pytest.raises(ValueError, match="size"):
        load_texture_folder(bad, (0, 4))


# ------------------------------------------------------------------------------------------ texture tensors
def test_textures_from_tensor_same_size():
    u8 = torch.randint(0, 256, (3, 3, 5, 7), dtype=torch.uint8)
    assert torch.equal(textures_from_tensor(u8, (5, 7)), u8)
    f = u8.float() / 255
    assert torch.equal(textures_from_tensor(f, (5, 7)), u8)
    grey = u8[:, :1]
    out = textures_from_tensor(grey, (5, 7))
    assert out.shape == (3, 3, 5, 7) and out.is_contiguous() and torch.equal(out, grey.expand(-1, 3, -1, -1))


def test_textures_from_tensor_resize():
    g = torch.Generator().manual_seed(0)
    u8 = torch.randint(0, 256, (20, 3, 32, 48), dtype=torch.uint8, generator=g)  # more than one resize chunk
    out = textures_from_tensor(u8, (16, 24))
    ref = torch.nn.functional.interpolate(u8.float() / 255, size=(16, 24), mode="bilinear", antialias=True)
    assert out.shape == (20, 3, 16, 24) and out.dtype == torch.uint8
    assert (out.float() - ref * 255).abs().max() <= 0.5 + 1e-3
    flat = torch.full((1, 3, 9, 9), 0.25)
    assert bool((textures_from_tensor(flat, 4) == 64).all())  # floor(0.25 * 255 + 0.5)


def test_textures_from_tensor_errors():
    with pytest.raises(TypeError, match="torch.Tensor"):
        textures_from_tensor(np.zeros((1, 3, 4, 4)), 4)
    with pytest.raises(ValueError, match=r"\(N, 3, h, w\)"):
        textures_from_tensor(torch.zeros(3, 4, 4), 4)
    with pytest.raises(ValueError, match=r"\(N, 3, h, w\)"):
        textures_from_tensor(torch.zeros(1, 2, 4, 4), 4)
    with pytest.raises(TypeError, match="uint8 or float"):
        textures_from_tensor(torch.zeros(1, 3, 4, 4, dtype=torch.int32), 4)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        textures_from_tensor(torch.full((1, 3, 4, 4), 2.0), 4)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        textures_from_tensor(torch.full((1, 3, 4, 4), float("nan")), 4)


# ------------------------------------------------------------------------------------------ image folders
def test_image_folder(texture_dir: Path):
    ds = ImageFolder(texture_dir)
    assert len(ds) == 2 and [f.name for f in ds.files] == ["a.jpg", "b.png"]
    x = ds[1]
    assert x.dtype == torch.float32 and x.shape == (3, 20, 30)
    # the same conversion as the generators' for uint8 input (x * (1/255)), so both give identical anomalies
    assert torch.equal(x, read_image(texture_dir / "b.png").float() * (1.0 / 255.0))
    deep = ImageFolder(texture_dir, size=(10, 12), recursive=True)
    assert len(deep) == 4 and all(deep[i].shape == (3, 10, 12) for i in range(4))
    assert torch.equal(deep[3], torch.full((3, 10, 12), 77.0) * (1.0 / 255.0))  # grey -> 3 channels
    with pytest.raises(FileNotFoundError):
        ImageFolder(texture_dir / "absent")


def test_read_image_modes(tmp_path: Path):
    sixteen = np.array([[0, 256, 65535, 40000]], dtype=np.uint16)
    out = read_image(_save(tmp_path / "d16.png", sixteen))
    assert out.shape == (3, 1, 4) and out[0, 0].tolist() == [0, 1, 255, 156]  # top 8 bits, not clipped at 255
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0] = 200
    assert read_image(_save(tmp_path / "a.png", rgba, "RGBA"))[0].eq(200).all()
    with pytest.raises(FileNotFoundError, match="image not found"):
        read_image(tmp_path / "none.png")


def test_write_png_roundtrip_atomic(tmp_path: Path):
    img = torch.randint(0, 256, (3, 7, 5), dtype=torch.uint8)
    write_png(tmp_path / "x.png", img)
    assert torch.equal(read_image(tmp_path / "x.png"), img)
    mask = torch.zeros(1, 7, 5)
    mask[0, 2:4, 1:3] = 1.0
    write_png(tmp_path / "m.png", mask, compress_level=1)
    with Image.open(tmp_path / "m.png") as im:
        assert im.mode == "L" and np.array_equal(np.asarray(im), mask[0].numpy().astype(np.uint8) * 255)
    write_png(tmp_path / "x.png", img.flip(-1), fsync=True)  # replaces the file
    assert torch.equal(read_image(tmp_path / "x.png"), img.flip(-1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.png", "x.png"]  # no temporary left behind
    with pytest.raises(ValueError, match="shape"):
        write_png(tmp_path / "y.png", torch.zeros(2, 4, 4))
    with pytest.raises(FileNotFoundError):
        write_png(tmp_path / "no" / "dir.png", img)
    assert not (tmp_path / "no").exists()


# ------------------------------------------------------------------------------------------ real data
def test_real_texture_folder(shared_data: Path):
    root = shared_data / "textures" / "dtd_subset"
    pool = load_texture_folder(root, (32, 32))
    assert pool.shape == (len(list_images(root, recursive=True)), 3, 32, 32) and pool.shape[0] >= 100
    assert pool.float().std() > 20  # real, varied textures
    assert load_texture_folder(root, (32, 32)) is pool


def test_real_grey_images_of_mixed_sizes(shared_data: Path):
    ds = ImageFolder(shared_data / "magnetic_tile" / "train" / "good", size=(64, 96))
    x = ds[0]
    assert x.shape == (3, 64, 96) and torch.equal(x[0], x[1]) and torch.equal(x[0], x[2])  # grey JPEG -> RGB
