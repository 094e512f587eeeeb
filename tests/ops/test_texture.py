import colorsys
import hashlib
import math
import os

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from anofast import _rng
from anofast.ops.augment import (
    _IMAGE,
    _PUSH,
    OP_NAMES,
    RECIPES,
    TextureAugParams,
    _split,
    augment_textures,
    push_histogram,
    sample_texture_aug_params,
)
from anofast.ops.perlin import perlin_mask, sample_perlin_params
from anofast.ops.texture import (
    AFFINE,
    BRIGHTNESS,
    GRAYSCALE,
    HIST_AUTOCONTRAST,
    HIST_CONTRAST,
    HIST_EQUALIZE,
    HUESAT,
    IDENTITY,
    LUT,
    SHARPNESS,
    autocontrast_lut,
    contrast_lut,
    equalize_lut,
    texture_hist_lut,
    texture_histogram,
    texture_stage,
)
from anofast.reference.texture import box_mask, reciprocal_table, round_u8
from anofast.testing import assert_verbose_equal, backend_params

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
SIZES = [(1, 1), (7, 5), (13, 17)] if INTERPRET else [(1, 1), (7, 5), (37, 53), (64, 64)]


def _images(batch, h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (batch, 3, h, w), dtype=torch.uint8, generator=g)
    if batch > 1:  # a smooth, low-contrast sample and a grey one: histogram and hue edge cases
        yy = torch.arange(h).view(h, 1) * 3 + torch.arange(w).view(1, w) * 2
        x[0] = (100 + yy % 40).to(torch.uint8).expand(3, h, w)
        x[1] = x[1, :1].expand(3, h, w)
    return x


def _mode_params(mode, batch, seed=0):
    """Realistic per-sample fparams for a mode (as the sampler would make them)."""
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(batch, 4, generator=g)
    if mode == BRIGHTNESS:
        return torch.stack([u[:, 0] * 0.4 - 0.2, u[:, 1] * 60 - 30, 0 * u[:, 2], 0 * u[:, 3]], 1)
    if mode == HUESAT:
        return torch.stack([u[:, 0] * 6, u[:, 1] * 1.5 + 0.25, u[:, 2] * 0.4 - 0.2, 0 * u[:, 3]], 1)
    if mode == SHARPNESS:
        return torch.stack([u[:, 0] * 2, 0 * u[:, 1], 0 * u[:, 2], 0 * u[:, 3]], 1)
    if mode == AFFINE:
        th = (u[:, 0] - 0.5) * (math.pi / 2)
        m = torch.stack([th.cos(), -th.sin(), th.sin(), th.cos()], 1)
        m[0] = torch.tensor([-1.0, 0.0, 0.0, 1.0])  # exact mirrors (the C++ kernel copies those)
        m[-1] = torch.tensor([1.0, 0.0, 0.0, -1.0])
        return m
    return u


def _random_boxes(batch, h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.sort(torch.randint(0, h + 1, (batch, 2), generator=g), dim=1).values
    x = torch.sort(torch.randint(0, w + 1, (batch, 2), generator=g), dim=1).values
    box = torch.stack([y[:, 0], x[:, 0], y[:, 1], x[:, 1]], 1)
    box[0] = torch.tensor([0, 0, h, w])
    return box.to(torch.int32)


def _stage(src, mode, fp, lut=None, box=None, backend="reference", fill=0):
    b, _, h, w = src.shape
    if isinstance(mode, int):
        mode = torch.full((b,), mode, dtype=torch.int32)
    lut = torch.arange(256, dtype=torch.uint8).expand(b, 3, 256).contiguous() if lut is None else lut
    box = torch.tensor([[0, 0, h, w]] * b, dtype=torch.int32) if box is None else box
    out = torch.full_like(src, fill)
    return texture_stage(src, mode, fp, lut, box, out, backend=backend)


# --- reference properties ------------------------------------------------------------------------------------------


def test_round_u8_is_floor_half_up_clamped():
    x = torch.tensor([-3.0, -0.51, -0.5, 0.49, 0.5, 1.5, 2.5, 254.49, 254.5, 255.4, 300.0])
    assert round_u8(x).tolist() == [0, 0, 0, 0, 1, 2, 3, 254, 255, 255, 255]


def test_reciprocal_table():
    rec = reciprocal_table()
    assert rec.dtype == torch.float32 and rec[0] == 0
    assert torch.equal(rec[1:], torch.ones(255) / torch.arange(1, 256, dtype=torch.float32))


def test_sharpness_integer_rounding_equals_float_formula():
    # deg = (2 S + 13) // 26 is exactly floor(S * float32(1/13) + 0.5) for every possible 3x3 sum S.
    s = torch.arange(13 * 255 + 1)
    assert torch.equal((2 * s + 13) // 26, torch.floor(s.float() * reciprocal_table()[13] + 0.5).long())


def test_lut_mode_is_a_table_lookup():
    src = _images(3, 9, 11)
    lut = torch.randint(0, 256, (3, 3, 256), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    out = _stage(src, LUT, torch.zeros(3, 4), lut)
    expected = torch.stack([torch.stack([lut[b, c][src[b, c].long()] for c in range(3)]) for b in range(3)])
    assert_verbose_equal(out, expected, "lut")


def test_identity_parameters_leave_images_unchanged():
    src = _images(4, 16, 20)
    z = torch.zeros(4, 4)
    assert torch.equal(_stage(src, IDENTITY, z), src)
    assert torch.equal(_stage(src, BRIGHTNESS, z), src)
    assert torch.equal(_stage(src, SHARPNESS, z + torch.tensor([1.0, 0, 0, 0])), src)
    assert torch.equal(_stage(src, AFFINE, z + torch.tensor([1.0, 0, 0, 1.0])), src)
    assert torch.equal(_stage(src, HUESAT, z + torch.tensor([0.0, 1.0, 0.0, 0.0])), src)  # exact HSV round trip


def test_brightness_adds_luma_shift():
    src = torch.full((1, 3, 2, 2), 100, dtype=torch.uint8)
    out = _stage(src, BRIGHTNESS, torch.tensor([[0.1, 5.0, 0, 0]]))  # delta = 100 * 0.1 + 5
    assert (out == 115).all()


def test_grayscale_is_rounded_luma():
    src = _images(2, 5, 6)
    f = src.double()
    y = torch.floor(0.299 * f[:, 0] + 0.587 * f[:, 1] + 0.114 * f[:, 2] + 0.5)
    out = _stage(src, GRAYSCALE, torch.zeros(2, 4))
    assert (out[:, 0] == out[:, 1]).all() and (out[:, 0] == out[:, 2]).all()
    assert (out[:, 0].double() - y).abs().max() <= 1  # float32 vs float64 luma


def test_huesat_matches_colorsys():
    src = _images(1, 12, 12, seed=3)
    shift, smul, sadd = 1.3, 0.8, 0.1
    out = _stage(src, HUESAT, torch.tensor([[shift, smul, sadd, 0.0]]))
    px = src[0].permute(1, 2, 0).reshape(-1, 3).tolist()
    expected = []
    for r, g, b in px:
        h, s, v = colorsys.rgb_to_hsv(r / 255, g / 255, b / 255)
        h = (h + shift / 6) % 1.0
        s = min(max(s * smul + sadd, 0.0), 1.0)
        expected.append([round(c * 255) for c in colorsys.hsv_to_rgb(h, s, v)])
    diff = (out[0].permute(1, 2, 0).reshape(-1, 3) - torch.tensor(expected)).abs()
    assert diff.max() <= 1


def test_huesat_full_turn_and_primaries():
    red = torch.tensor([255, 0, 0], dtype=torch.uint8).view(1, 3, 1, 1)
    green = _stage(red, HUESAT, torch.tensor([[2.0, 1.0, 0.0, 0.0]]))
    assert green.flatten().tolist() == [0, 255, 0]
    grey = _stage(red, HUESAT, torch.tensor([[0.0, 0.0, 0.0, 0.0]]))  # saturation 0
    assert grey.flatten().tolist() == [255, 255, 255]


def test_sharpness_matches_pil():
    src = _images(1, 23, 31, seed=5)
    pil = Image.fromarray(src[0].permute(1, 2, 0).numpy())
    smooth = torch.from_numpy(np.array(pil.filter(ImageFilter.SMOOTH))).permute(2, 0, 1)
    assert torch.equal(_stage(src, SHARPNESS, torch.zeros(1, 4))[0], smooth)  # the degenerate image is PIL's
    for factor in (0.4, 1.6):
        ref = torch.from_numpy(np.array(ImageEnhance.Sharpness(pil).enhance(factor))).permute(2, 0, 1)
        out = _stage(src, SHARPNESS, torch.tensor([[factor, 0, 0, 0]]))[0]
        diff = out.int() - ref.int()
        assert diff.min() >= 0 and diff.max() <= 1  # PIL truncates the blend, anofast rounds


def test_affine_mirrors_and_quarter_turn_are_exact():
    src = _images(2, 9, 9, seed=2)
    z = torch.zeros(2, 4)
    assert torch.equal(_stage(src, AFFINE, z + torch.tensor([-1.0, 0, 0, 1])), src.flip(3))
    assert torch.equal(_stage(src, AFFINE, z + torch.tensor([1.0, 0, 0, -1])), src.flip(2))
    assert torch.equal(_stage(src, AFFINE, z + torch.tensor([0.0, -1, 1, 0])), src.rot90(1, dims=(2, 3)))


def test_affine_zero_fill_outside():
    src = torch.full((1, 3, 8, 8), 200, dtype=torch.uint8)
    out = _stage(src, AFFINE, torch.tensor([[1.0, 0.0, 0.0, 1.0]]) * 2)  # 2x zoom-out: the border reads outside
    assert out[0, :, 0, 0].tolist() == [0, 0, 0] and out[0, :, 4, 4].tolist() == [200] * 3


def test_stage_writes_only_inside_box():
    src = _images(5, 16, 18)
    box = _random_boxes(5, 16, 18, seed=4)
    for mode in (LUT, BRIGHTNESS, HUESAT, SHARPNESS, AFFINE, GRAYSCALE):
        fp = _mode_params(mode, 5)
        full = _stage(src, mode, fp)
        boxed = _stage(src, mode, fp, box=box, fill=7)
        inside = box_mask(box, 16, 18).expand(-1, 3, -1, -1)
        assert torch.equal(boxed[inside], full[inside])
        assert (boxed[~inside] == 7).all()


# --- every backend vs the reference -----------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES, ids=str)
@pytest.mark.parametrize("backend", backend_params("texture_stage"))
def test_stage_backend_matches_reference(backend, size):
    name, device = backend
    h, w = size
    batch = 7
    src = _images(batch, h, w)
    mode = torch.tensor([0, 1, 2, 3, 4, 5, 6], dtype=torch.int32)
    fp = torch.stack([_mode_params(int(m), batch, seed=int(m))[i] for i, m in enumerate(mode)])
    lut = torch.randint(0, 256, (batch, 3, 256), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    for box in (torch.tensor([[0, 0, h, w]] * batch, dtype=torch.int32), _random_boxes(batch, h, w, seed=9)):
        expected = _stage(src, mode, fp, lut, box, fill=3)
        out = torch.full_like(src, 3).to(device)
        args = (src.to(device), mode.to(device), fp.to(device), lut.to(device), box.to(device), out)
        actual = texture_stage(*args, backend=name).cpu()
        assert_verbose_equal(actual, expected, f"texture_stage[{name}] {size}")


@pytest.mark.parametrize("mode", [HUESAT, SHARPNESS, AFFINE])
@pytest.mark.parametrize("backend", backend_params("texture_stage"))
def test_stage_backend_matches_reference_per_mode(backend, mode):
    name, device = backend
    h, w = (11, 14) if INTERPRET else (40, 48)
    src = _images(6, h, w, seed=mode)
    fp = _mode_params(mode, 6, seed=mode)
    expected = _stage(src, mode, fp)
    actual = _stage(src.to(device), mode, fp.to(device), backend=name).cpu()
    assert_verbose_equal(actual, expected, f"mode {mode} [{name}]")


@pytest.mark.parametrize("backend", [p for p in backend_params("texture_stage") if p.id == "cpp"])
def test_cpp_stage_is_thread_count_invariant(backend):
    src = _images(8, 64, 48)
    mode = torch.tensor([1, 2, 3, 4, 5, 6, 5, 3], dtype=torch.int32)
    fp = torch.stack([_mode_params(int(m), 8)[i] for i, m in enumerate(mode)])
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _stage(src, mode, fp, backend="cpp")
        torch.set_num_threads(max(2, threads))
        many = _stage(src, mode, fp, backend="cpp")
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, many)


@pytest.mark.parametrize("backend", backend_params("texture_stage", include_reference=True))
def test_stage_empty_batch(backend):
    name, device = backend
    src = torch.zeros(0, 3, 4, 4, dtype=torch.uint8, device=device)
    out = _stage(src, torch.zeros(0, dtype=torch.int32, device=device), torch.zeros(0, 4, device=device),
                 torch.zeros(0, 3, 256, dtype=torch.uint8, device=device),
                 torch.zeros(0, 4, dtype=torch.int32, device=device), backend=name)  # fmt: skip
    assert out.shape == (0, 3, 4, 4)


def test_stage_bad_input():
    src = _images(2, 4, 4)
    ok = {
        "mode": torch.ones(2, dtype=torch.int32),
        "fparams": torch.zeros(2, 4),
        "lut": torch.zeros(2, 3, 256, dtype=torch.uint8),
        "box": torch.tensor([[0, 0, 4, 4]] * 2, dtype=torch.int32),
    }

    def call(src=src, out=None, **kw):
        args = {**ok, **kw}
        out = torch.zeros_like(src) if out is None else out
        return texture_stage(src, args["mode"], args["fparams"], args["lut"], args["box"], out)

    with pytest.raises(TypeError, match="src must be uint8"):
        call(src=src.float())
    with pytest.raises(ValueError, match="src must have shape"):
        call(src=src[:, :1])
    with pytest.raises(TypeError, match="mode must have dtype torch.int32"):
        call(mode=torch.ones(2, dtype=torch.int64))
    with pytest.raises(ValueError, match="mode ids"):
        call(mode=torch.tensor([1, 9], dtype=torch.int32))
    with pytest.raises(ValueError, match="fparams must have shape"):
        call(fparams=torch.zeros(2, 3))
    with pytest.raises(ValueError, match="box must lie inside"):
        call(box=torch.tensor([[0, 0, 5, 4]] * 2, dtype=torch.int32))
    with pytest.raises(ValueError, match="not be the same buffer"):
        call(out=src)
    with pytest.raises(ValueError, match="NaN"):
        call(fparams=torch.full((2, 4), float("nan")))


# --- chains, sparse pixels and pooled sources ------------------------------------------------------------------


def _chain_params(batch, count, seed=0):
    """(B, K) chains as the driver makes them: pointwise stages after a first stage of each mode (samples 0-6), and
    from sample 7 on, sharpness or affine behind one or two tables; realistic fparams, random tables."""
    g = torch.Generator().manual_seed(seed)
    pointwise = torch.tensor([IDENTITY, LUT, BRIGHTNESS, HUESAT, GRAYSCALE], dtype=torch.int32)
    mode = pointwise[torch.randint(0, 5, (batch, count), generator=g)]
    mode[:, 0] = torch.arange(batch, dtype=torch.int32) % 7
    for b in range(7, batch if count > 1 else 0):
        lead = [LUT, SHARPNESS] if b % 2 else [IDENTITY, LUT, AFFINE][-count:]
        mode[b, : len(lead)] = torch.tensor(lead, dtype=torch.int32)
    fp = torch.stack([torch.stack([_mode_params(int(m), 1, seed=seed + 7 * b + k)[0] for k, m in enumerate(row)])
                      for b, row in enumerate(mode.tolist())])  # fmt: skip
    lut = torch.randint(0, 256, (batch, count, 3, 256), dtype=torch.uint8, generator=g)
    return mode, fp, lut


def _masks(batch, h, w, seed=0):
    """Perlin placement masks (scattered blobs, ~20 % of the image, a few empty) and their boxes."""
    params = sample_perlin_params(_rng.sample_seeds(seed, batch), threshold=0.2)
    return perlin_mask(params, (h, w), backend="reference")


def test_stage_chain_equals_separate_stages():
    src = _images(9, 13, 17, seed=4)
    mode, fp, lut = _chain_params(9, 3)
    box = _random_boxes(9, 13, 17, seed=2)
    chained = torch.full_like(src, 9)
    texture_stage(src, mode, fp, lut, box, chained, backend="reference")
    image = src
    for k in range(3):
        image = _stage(image, mode[:, k].contiguous(), fp[:, k].contiguous(), lut[:, k].contiguous())
    inside = box_mask(box, 13, 17).expand(-1, 3, -1, -1)
    assert torch.equal(chained[inside], image[inside]) and (chained[~inside] == 9).all()


def test_stage_where_sparse_and_src_index_reference():
    pool = _images(5, 12, 14, seed=6)
    index = torch.tensor([3, 0, 3, 4], dtype=torch.int64)
    mode, fp, lut = _chain_params(4, 2, seed=1)
    where, box = _masks(4, 12, 14, seed=7)
    box[1] = torch.tensor([0, 0, 12, 14])
    sparse = torch.tensor([True, True, False, True])
    out = texture_stage(pool, mode, fp, lut, box, torch.full((4, 3, 12, 14), 9, dtype=torch.uint8), where=where,
                        sparse=sparse, src_index=index, backend="reference")  # fmt: skip
    dense = texture_stage(pool[index], mode, fp, lut, box, torch.full((4, 3, 12, 14), 9, dtype=torch.uint8),
                          backend="reference")  # fmt: skip
    write = box_mask(box, 12, 14) & ((where > 0.5) | ~sparse.view(4, 1, 1, 1))
    write = write.expand(-1, 3, -1, -1)
    assert torch.equal(out[write], dense[write]) and (out[~write] == 9).all()
    assert (where[1] > 0.5).any() and not (where[1] > 0.5).all()  # the mask does restrict sample 1


@pytest.mark.parametrize("size", SIZES[1:], ids=str)
@pytest.mark.parametrize("backend", backend_params("texture_stage"))
def test_stage_chain_where_backend_matches_reference(backend, size):
    name, device = backend
    h, w = size
    batch = 10
    pool = _images(11, h, w, seed=5)
    index = torch.tensor([8, 0, 2, 2, 5, 1, 7, 10, 3, 3], dtype=torch.int64)
    mode, fp, lut = _chain_params(batch, 3, seed=2)
    where, _ = _masks(batch, h, w, seed=1)
    box = _random_boxes(batch, h, w, seed=3)
    sparse = torch.tensor([True, False, True, True, False, True, True, True, False, True])
    variants = [{"where": where, "sparse": sparse}, {"src_index": index}]
    for kw in variants if INTERPRET else [{}, {"where": where}, *variants]:
        src = pool if "src_index" in kw or "where" in kw else pool[:batch]
        if "where" in kw:
            kw = {**kw, "src_index": index}
        expected = texture_stage(src, mode, fp, lut, box, torch.full((batch, 3, h, w), 3, dtype=torch.uint8),
                                 backend="reference", **kw)  # fmt: skip
        args = [t.to(device) for t in (src, mode, fp, lut, box)]
        out = torch.full((batch, 3, h, w), 3, dtype=torch.uint8, device=device)
        actual = texture_stage(*args, out, backend=name, **{k: v.to(device) for k, v in kw.items()}).cpu()
        assert_verbose_equal(actual, expected, f"texture_stage[{name}] {size} {sorted(kw)}")  # also untouched pixels


@pytest.mark.parametrize("backend", [p for p in backend_params("texture_stage") if p.id == "cpp"])
def test_cpp_sparse_long_runs_and_wide_rows(backend):
    # Dense masks fill the C++ kernel's pixel pack (1024) mid-row and rows wider than its 1024-column scan chunk.
    for h, w in ((40, 64), (3, 1100)):
        src = _images(9, h, w, seed=8)
        mode, fp, lut = _chain_params(9, 3, seed=4)
        where = (torch.rand(9, 1, h, w, generator=torch.Generator().manual_seed(1)) < 0.97).float()
        box = torch.tensor([[0, 0, h, w]] * 9, dtype=torch.int32)
        expected = texture_stage(src, mode, fp, lut, box, torch.zeros_like(src), where=where, backend="reference")
        actual = texture_stage(src, mode, fp, lut, box, torch.zeros_like(src), where=where, backend="cpp")
        assert_verbose_equal(actual, expected, f"cpp sparse {h}x{w}")


@pytest.mark.parametrize("backend", [p for p in backend_params("texture_stage") if p.id == "cpp"])
def test_cpp_chain_where_is_thread_count_invariant(backend):
    src = _images(9, 64, 48, seed=2)
    mode, fp, lut = _chain_params(9, 3, seed=6)
    where, box = _masks(9, 64, 48, seed=2)
    threads = torch.get_num_threads()
    outs = []
    try:
        for t in (1, max(2, threads)):
            torch.set_num_threads(t)
            outs.append(texture_stage(src, mode, fp, lut, box, torch.zeros_like(src), where=where, backend="cpp"))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(outs[0], outs[1])


def test_stage_chain_bad_input():
    src = _images(2, 4, 4)
    mode, fp, lut = _chain_params(2, 2)
    box = torch.tensor([[0, 0, 4, 4]] * 2, dtype=torch.int32)
    out = torch.zeros_like(src)
    with pytest.raises(ValueError, match="may follow only LUT / IDENTITY"):
        texture_stage(src, torch.tensor([[BRIGHTNESS, AFFINE]] * 2, dtype=torch.int32), fp, lut, box, out)
    with pytest.raises(ValueError, match="may follow only LUT / IDENTITY"):
        texture_stage(src, torch.tensor([[SHARPNESS, AFFINE]] * 2, dtype=torch.int32), fp, lut, box, out)
    with pytest.raises(ValueError, match="fparams must have shape"):
        texture_stage(src, mode, fp[:, 0], lut, box, out)
    with pytest.raises(ValueError, match="src_index must lie"):
        texture_stage(src, mode, fp, lut, box, out, src_index=torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="src has 2 images but out has 1"):
        texture_stage(src, mode[:1], fp[:1], lut[:1], box[:1], out[:1])
    with pytest.raises(ValueError, match="sparse needs where"):
        texture_stage(src, mode, fp, lut, box, out, sparse=torch.ones(2, dtype=torch.bool))
    with pytest.raises(ValueError, match="where must have shape"):
        texture_stage(src, mode, fp, lut, box, out, where=torch.ones(2, 1, 4, 3))
    with pytest.raises(TypeError, match="sparse must have dtype torch.bool"):
        texture_stage(src, mode, fp, lut, box, out, where=torch.ones(2, 1, 4, 4), sparse=torch.ones(2))


# --- histograms and tables ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", backend_params("texture_histogram", include_reference=True))
def test_histogram_matches_bincount(backend):
    name, device = backend
    src = _images(4, 13, 17)
    index = torch.tensor([3, 0, 3], dtype=torch.int64)
    hist = texture_histogram(src.to(device), index.to(device), backend=name).cpu()
    assert hist.dtype == torch.int32 and hist.shape == (3, 3, 256)
    for n, b in enumerate(index.tolist()):
        for c in range(3):
            assert torch.equal(hist[n, c], torch.bincount(src[b, c].flatten().long(), minlength=256).int())
    assert texture_histogram(src.to(device), torch.zeros(0, dtype=torch.int64, device=device), backend=name).shape == (
        0, 3, 256)  # fmt: skip


def test_histogram_bad_input():
    with pytest.raises(ValueError, match="index must lie"):
        texture_histogram(_images(2, 3, 3), torch.tensor([2]))
    with pytest.raises(TypeError, match="index must be"):
        texture_histogram(_images(2, 3, 3), torch.tensor([0], dtype=torch.int32))


def _pil_apply(img: torch.Tensor, fn) -> torch.Tensor:
    out = fn(Image.fromarray(img.permute(1, 2, 0).numpy()))
    return torch.from_numpy(np.array(out)).permute(2, 0, 1)


def _apply_lut(img: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    return torch.stack([lut[c][img[c].long()] for c in range(3)])


def _table_images():
    g = torch.Generator().manual_seed(11)
    imgs = [
        torch.randint(0, 256, (3, 20, 30), dtype=torch.uint8, generator=g),
        (torch.randint(0, 256, (3, 20, 30), generator=g) // 8 + 90).to(torch.uint8),  # narrow range
        torch.full((3, 6, 6), 77, dtype=torch.uint8),  # constant
        torch.tensor([10, 200], dtype=torch.uint8).repeat(3, 5, 4),  # two values
        (torch.randint(0, 4, (3, 9, 7), generator=g) * 60).to(torch.uint8),  # few values, big gaps
        torch.randint(0, 256, (3, 1, 3), dtype=torch.uint8, generator=g),  # tiny
    ]
    imgs[0][0, :3] = 0  # a heavy low tail
    return imgs


@pytest.mark.parametrize("cutoff", [0, 1, 7, 20, 49])
def test_autocontrast_lut_equals_pil(cutoff):
    for img in _table_images():
        hist = texture_histogram(img.unsqueeze(0), backend="reference")
        lut = autocontrast_lut(hist, torch.tensor([cutoff]))[0]
        assert_verbose_equal(_apply_lut(img, lut), _pil_apply(img, lambda p: ImageOps.autocontrast(p, cutoff=cutoff)))


def test_equalize_lut_equals_pil():
    for img in _table_images():
        lut = equalize_lut(texture_histogram(img.unsqueeze(0), backend="reference"))[0]
        assert_verbose_equal(_apply_lut(img, lut), _pil_apply(img, ImageOps.equalize))


def test_contrast_lut_is_a_blend_with_the_grey_mean():
    img = _table_images()[0]
    f = 1.7
    lut = contrast_lut(texture_histogram(img.unsqueeze(0), backend="reference"), torch.tensor([f]))[0]
    m = sum(w * img[c].double().mean().item() for c, w in enumerate((0.299, 0.587, 0.114)))
    expected = [min(max(math.floor(v * f + m * (1 - f) + 0.5), 0), 255) for v in range(256)]
    assert all(lut[c].tolist() == expected for c in range(3))


@pytest.mark.parametrize("backend", backend_params("texture_hist_lut"))
def test_hist_lut_backend_matches_reference(backend):
    name, device = backend
    imgs = [torch.nn.functional.pad(i, (0, 30 - i.shape[2], 0, 20 - i.shape[1]), value=5) for i in _table_images()]
    hist = texture_histogram(torch.stack(imgs), backend="reference").repeat(4, 1, 1)
    n = hist.shape[0]
    kind = torch.arange(n, dtype=torch.int32) % 4
    param = torch.where(kind == HIST_CONTRAST, torch.linspace(0.4, 2.1, n), torch.arange(n) % 21.0).float()
    expected = texture_hist_lut(hist, kind, param, backend="reference")
    assert torch.equal(expected[kind == 0], torch.arange(256, dtype=torch.uint8).expand(int((kind == 0).sum()), 3, 256))
    actual = texture_hist_lut(hist.to(device), kind.to(device), param.to(device), backend=name).cpu()
    assert_verbose_equal(actual, expected, f"texture_hist_lut[{name}]")
    assert HIST_AUTOCONTRAST in kind.tolist() and HIST_EQUALIZE in kind.tolist()


def test_push_histogram_equals_histogram_of_mapped_image():
    img = _images(3, 15, 16)
    lut = torch.randint(0, 256, (3, 3, 256), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    mapped = torch.stack([_apply_lut(img[b], lut[b]) for b in range(3)])
    hist = texture_histogram(img, backend="reference")
    assert torch.equal(push_histogram(hist, lut), texture_histogram(mapped, backend="reference"))


# --- sampler -------------------------------------------------------------------------------------------------------

SEEDS = _rng.sample_seeds(2024, 40)


@pytest.mark.parametrize("recipe", RECIPES)
def test_sampler_is_reproducible_and_batch_independent(recipe):
    state = torch.get_rng_state()
    p = sample_texture_aug_params(SEEDS, augmentations=recipe)
    assert torch.equal(torch.get_rng_state(), state)
    q = sample_texture_aug_params(SEEDS, augmentations=recipe)
    for i in (0, 17, 39):
        one = sample_texture_aug_params(SEEDS[i : i + 1], augmentations=recipe)
        for name in ("op_ids", "modes", "hist", "fparams", "luts"):
            assert torch.equal(getattr(one, name)[0], getattr(p, name)[i]), name
    assert all(torch.equal(getattr(p, k), getattr(q, k)) for k in ("op_ids", "fparams", "luts"))


# Recorded before the sampler's numpy rewrite (anofast.sample_seeds(0, 8), count 3): every drawn value must stay.
_GOLDEN = {
    "draem": ([[7, 0, 5], [8, 10, 9], [9, 6, 1], [8, 11, 0], [7, 9, 5], [8, 4, 0], [0, 8, 7], [1, 11, 4]],
              "ce80d18195609e2ac0437feb9eaab4fc173d72ed5ab1685ecc5f09309c51e70f"),
    "anomalib": ([[7, 3, 5], [8, 10, 9], [9, 6, 2], [8, 11, 3], [7, 9, 5], [8, 4, 3], [3, 8, 7], [2, 11, 4]],
                 "73f5f1b443d3fe4c1988e384fda396c5f7895bb9a61a90e14859c742d3f5d386"),
    "glass": ([[14, 3, 12], [9, 11, 10], [10, 13, 2], [9, 3, 14], [14, 10, 12], [9, 5, 3], [3, 9, 14], [2, 5, 10]],
              "e2cc87a713ffd22af9b7659e55ef47c64e10e82845f80430034875738255c81e"),
}  # fmt: skip


@pytest.mark.parametrize("recipe", RECIPES)
def test_sampler_golden_values(recipe):
    p = sample_texture_aug_params(_rng.sample_seeds(0, 8), augmentations=recipe)
    digest = hashlib.sha256()
    for name in ("op_ids", "modes", "hist", "fparams", "luts"):
        t = getattr(p, name)
        assert t.is_contiguous() and t.dtype == {"fparams": torch.float32, "luts": torch.uint8}.get(name, torch.int32)
        digest.update(t.numpy().tobytes())
    ids, expected = _GOLDEN[recipe]
    assert p.op_ids.tolist() == ids
    assert digest.hexdigest() == expected  # op ids, modes, histogram kinds, magnitudes and tables, bit for bit
    if recipe == "draem":
        assert p.fparams[0].tolist() == [[5.0, 0.0, 0.0, 0.0], [0.7201799154281616, 0.6845700740814209,
                                          1.3495166301727295, 0.0], [5.8292107582092285, 1.0, -0.10404322296380997,
                                                                     0.0]]  # fmt: skip


def test_sampler_draws_distinct_ops_from_the_recipe():
    p = sample_texture_aug_params(SEEDS, augmentations="draem", count=3)
    assert p.op_ids.shape == (40, 3) and p.luts.shape == (40, 3, 3, 256)
    names = p.to_dict()["op_names"]
    draem = {"gamma", "brightness_add", "sharpness", "hue_saturation", "solarize", "posterize", "invert",
             "autocontrast", "equalize", "rotate"}  # fmt: skip
    assert all(len(set(row)) == 3 and set(row) <= draem for row in names)
    assert len({n for row in names for n in row}) == 10  # 40 samples use every op
    firsts = {row[0] for row in names}
    assert len(firsts) >= 6  # the order is random too


def test_sampler_magnitudes_in_range():
    p = sample_texture_aug_params(_rng.sample_seeds(5, 400), augmentations="draem", count=10)
    ids, fp = p.op_ids, p.fparams

    def mag(name):
        return fp[ids == OP_NAMES.index(name)]

    assert ((mag("gamma")[:, :3] >= 0.5) & (mag("gamma")[:, :3] <= 2)).all()
    b = mag("brightness_add")
    assert ((b[:, 0] >= -0.2) & (b[:, 0] <= 0.2) & (b[:, 1].abs() <= 30)).all()
    hs = mag("hue_saturation")
    assert ((hs[:, 0] >= 0) & (hs[:, 0] < 6) & (hs[:, 1] == 1) & (hs[:, 2].abs() <= 50 / 255 + 1e-6)).all()
    assert set(mag("posterize")[:, 0].tolist()) == set(range(1, 9))
    assert set(mag("autocontrast")[:, 0].tolist()) == set(range(21))
    sol = mag("solarize")
    assert 0.4 < sol[:, 1].mean() < 0.6 and ((sol[:, 0] >= 32) & (sol[:, 0] <= 128)).all()
    rot = mag("rotate")
    angle = torch.atan2(rot[:, 2], rot[:, 0]) * 180 / math.pi
    assert angle.abs().max() <= 45 + 1e-3 and angle.abs().max() > 40
    # static tables: gamma is 255 (v / 255) ^ g rounded; posterize keeps the top bits
    g0 = ids == OP_NAMES.index("gamma")
    v = torch.arange(256, dtype=torch.float64)
    gam = mag("gamma")[0, 0].double()
    assert p.luts[g0][0, 0].tolist() == torch.floor(255 * (v / 255) ** gam + 0.5).clamp(0, 255).long().tolist()


def test_sampler_recipes_and_custom_ops():
    a = sample_texture_aug_params(SEEDS, augmentations="anomalib", solarize_threshold=100.0)
    sol = a.fparams[a.op_ids == OP_NAMES.index("solarize")]
    assert (sol[:, 0] == 100).all() and (sol[:, 1] == 1).all()
    post = a.fparams[a.op_ids == OP_NAMES.index("posterize")]
    assert (post[:, 0] == 4).all()
    g = sample_texture_aug_params(SEEDS, augmentations="glass")
    assert {n for row in g.to_dict()["op_names"] for n in row} <= {"contrast", "brightness", "hue_saturation", "hflip",
                                                                   "vflip", "grayscale", "autocontrast", "equalize",
                                                                   "rotate"}  # fmt: skip
    c = sample_texture_aug_params(SEEDS, augmentations=["invert", ("contrast", {"factor": (0.9, 0.9)})], count=2)
    assert (c.fparams[c.op_ids == OP_NAMES.index("contrast")][:, 0] == 0.9).all()
    assert sample_texture_aug_params(SEEDS, count=0).op_ids.shape == (40, 0)


def test_sampler_bad_input():
    with pytest.raises(ValueError, match="augmentations must be one of"):
        sample_texture_aug_params(SEEDS, augmentations="nope")
    with pytest.raises(ValueError, match="unknown texture augmentation"):
        sample_texture_aug_params(SEEDS, augmentations=["gamma", "blur"])
    with pytest.raises(ValueError, match="unknown settings"):
        sample_texture_aug_params(SEEDS, augmentations=[("gamma", {"gama": (1, 2)})])
    with pytest.raises(ValueError, match="repeat"):
        sample_texture_aug_params(SEEDS, augmentations=["gamma", "gamma"])
    with pytest.raises(ValueError, match="count"):
        sample_texture_aug_params(SEEDS, count=11)
    with pytest.raises(TypeError, match="seeds"):
        sample_texture_aug_params(SEEDS.int())


def test_params_index_to_and_dict_round_trip():
    p = sample_texture_aug_params(SEEDS[:6])
    sub = p.index(torch.tensor([4, 1]))
    assert torch.equal(sub.fparams, p.fparams[[4, 1]]) and sub.batch_size == 2 and sub.count == 3
    back = TextureAugParams.from_dict(p.to_dict())
    assert all(torch.equal(getattr(back, k), getattr(p, k)) for k in ("op_ids", "modes", "hist", "fparams", "luts"))
    assert p.to("cpu").luts.device.type == "cpu"


# --- the driver ----------------------------------------------------------------------------------------------------


def _slow_chain(textures: torch.Tensor, p: TextureAugParams) -> torch.Tensor:
    """The obvious implementation: every slot on the full image, tables from the intermediate image's histogram."""
    image = textures.clone()
    for b in range(textures.shape[0]):
        for k in range(p.count):
            lut = p.luts[b, k].clone()
            kind = int(p.hist[b, k])
            if kind:
                hist = torch.stack([torch.bincount(image[b, c].flatten().long(), minlength=256) for c in range(3)])
                lut = texture_hist_lut(hist.unsqueeze(0).int(), torch.tensor([kind], dtype=torch.int32),
                                       p.fparams[b, k, :1], backend="reference")[0]  # fmt: skip
            image[b : b + 1] = _stage(image[b : b + 1], int(p.modes[b, k]), p.fparams[b, k : k + 1], lut.unsqueeze(0))
    return image


@pytest.mark.parametrize("recipe", RECIPES)
def test_augment_equals_slow_chain(recipe):
    tex = _images(10, 21, 26, seed=8)
    p = sample_texture_aug_params(SEEDS[:10], augmentations=recipe)
    assert_verbose_equal(augment_textures(tex, p, backend="reference"), _slow_chain(tex, p), recipe)


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("backend", backend_params("texture_stage", include_reference=True))
def test_augment_box_equals_full_chain_inside(backend, recipe):
    name, device = backend
    h, w = (11, 13) if INTERPRET else (40, 44)
    batch = 6 if INTERPRET else 24
    tex = _images(batch, h, w, seed=12)
    p = sample_texture_aug_params(_rng.sample_seeds(3, batch), augmentations=recipe)
    full = augment_textures(tex, p, backend="reference")
    box = _random_boxes(batch, h, w, seed=5)
    box[1] = torch.tensor([3, 4, 3, 9])  # empty
    out = augment_textures(tex.to(device), p.to(device), box.to(device), backend=name).cpu()
    inside = box_mask(box, h, w).expand(-1, 3, -1, -1)
    assert_verbose_equal(out[inside], full[inside], f"augment[{name}] box")
    assert_verbose_equal(augment_textures(tex.to(device), p.to(device), backend=name).cpu(), full, f"augment[{name}]")


def test_augment_source_hist_and_counts():
    tex = _images(12, 20, 20, seed=13)
    p = sample_texture_aug_params(SEEDS[:12], augmentations="draem")
    hist = texture_histogram(tex)
    assert torch.equal(augment_textures(tex, p, source_hist=hist), augment_textures(tex, p))
    none = sample_texture_aug_params(SEEDS[:12], count=0)
    out = augment_textures(tex, none)
    assert torch.equal(out, tex) and out.data_ptr() != tex.data_ptr()
    all10 = sample_texture_aug_params(SEEDS[:12], count=10)
    assert_verbose_equal(augment_textures(tex, all10), _slow_chain(tex, all10), "count=10")
    assert augment_textures(tex[:0], p.index(slice(0, 0))).shape == (0, 3, 20, 20)


def test_augment_bad_input():
    tex = _images(2, 8, 8)
    p = sample_texture_aug_params(SEEDS[:2])
    with pytest.raises(TypeError, match="textures"):
        augment_textures(tex.float(), p)
    with pytest.raises(ValueError, match="params are for"):
        augment_textures(tex, sample_texture_aug_params(SEEDS[:3]))
    with pytest.raises(ValueError, match="box must lie inside"):
        augment_textures(tex, p, torch.tensor([[0, 0, 9, 8]] * 2, dtype=torch.int32))
    with pytest.raises(ValueError, match="source_hist"):
        augment_textures(tex, p, source_hist=torch.zeros(2, 3, 255, dtype=torch.int32))


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("backend", backend_params("texture_stage", include_reference=True))
def test_augment_where_and_pool_equal_full_chain_at_mask(backend, recipe):
    # The generator's call: textures read from a pool, the last pass only at the placement mask's pixels.
    name, device = backend
    h, w = (11, 10) if INTERPRET else (48, 40)
    batch = 5 if INTERPRET else 24
    pool = _images(batch + 3, h, w, seed=14)
    index = torch.randint(0, batch + 3, (batch,), generator=torch.Generator().manual_seed(2))
    where, box = _masks(batch, h, w, seed=7)
    sparse = torch.arange(batch) % 4 != 1
    hist = texture_histogram(pool, backend="reference")
    need = (box_mask(box, h, w) & ((where > 0.5) | ~sparse.view(-1, 1, 1, 1))).expand(-1, 3, -1, -1)
    cases = [(3, hist), (5, None)] + ([] if INTERPRET else [(0, hist), (3, None), (5, hist), (0, None)])
    for count, source_hist in cases:
        p = sample_texture_aug_params(_rng.sample_seeds(9, batch), augmentations=recipe, count=count)
        full = augment_textures(pool[index], p, backend="reference")
        args = {"where": where, "sparse": sparse, "src_index": index, "source_hist": source_hist}
        args = {k: None if v is None else v.to(device) for k, v in args.items()}
        out = augment_textures(pool.to(device), p.to(device), box.to(device), backend=name, **args).cpu()
        assert_verbose_equal(out[need], full[need], f"augment[{name}] {recipe} count={count}")
    assert (where > 0.5).float().mean() < 0.6 and bool(sparse.any())  # the masks do restrict


def test_augment_src_index_equals_gathered_textures():
    pool = _images(5, 16, 18, seed=15)
    index = torch.tensor([4, 4, 0, 2, 1, 3, 0], dtype=torch.int64)
    p = sample_texture_aug_params(SEEDS[:7], augmentations="glass", count=4)
    hist = texture_histogram(pool)
    assert torch.equal(augment_textures(pool, p, source_hist=hist, src_index=index), augment_textures(pool[index], p))
    empty = sample_texture_aug_params(SEEDS[:7], count=0)
    assert torch.equal(augment_textures(pool, empty, src_index=index), pool[index])  # no ops: the texture itself


def test_augment_mirrors_push_histograms():
    # Flips only permute pixels: a histogram op behind them needs no image pass, so the chain stays one pass.
    hflip, equalize, rotate = (OP_NAMES.index(n) for n in ("hflip", "equalize", "rotate"))
    passes, source = _split((AFFINE, LUT, LUT), (0, 2, 1), (True, False, False))
    assert passes == ((0, 3),) and source == (0, _PUSH, _PUSH)
    passes, source = _split((AFFINE, LUT), (0, 2), (False, False))  # a rotation changes the histogram
    assert passes == ((0, 1), (1, 2)) and source == (0, _IMAGE)
    # Tables before a stencil stage ride in its pass (read through); anything else ends the pass.
    assert _split((LUT, LUT, AFFINE, HUESAT), (0, 1, 0, 0), (False,) * 4)[0] == ((0, 4),)
    assert _split((BRIGHTNESS, LUT, SHARPNESS), (0, 0, 0), (False,) * 3)[0] == ((0, 2), (2, 3))
    assert _split((SHARPNESS, LUT, AFFINE), (0, 0, 0), (False,) * 3)[0] == ((0, 2), (2, 3))
    tex = _images(12, 19, 23, seed=16)
    p = sample_texture_aug_params(SEEDS[:12], augmentations=["hflip", "vflip", "equalize", "autocontrast", "rotate"],
                                  count=4)  # fmt: skip
    assert {hflip, equalize, rotate} <= set(p.op_ids.flatten().tolist())
    assert_verbose_equal(augment_textures(tex, p), _slow_chain(tex, p), "flips + histograms")


def test_augment_out_buffer_and_thread_count():
    pool = _images(4, 40, 36, seed=17)
    index = torch.tensor([1, 3, 3, 0, 2, 1], dtype=torch.int64)
    p = sample_texture_aug_params(SEEDS[:6], count=3)
    where, box = _masks(6, 40, 36, seed=4)
    buf = torch.empty(6, 3, 40, 36, dtype=torch.uint8)
    threads = torch.get_num_threads()
    outs = []
    try:
        for t in (1, max(2, threads)):
            torch.set_num_threads(t)
            buf.fill_(0)
            res = augment_textures(pool, p, box, where=where, src_index=index, out=buf)
            assert res is buf
            outs.append(res.clone())
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(outs[0], outs[1])
    with pytest.raises(ValueError, match="out must be"):
        augment_textures(pool, p, box, src_index=index, out=buf[:, :, :, :35])
    with pytest.raises(ValueError, match="src_index must lie"):
        augment_textures(pool, p, src_index=torch.tensor([0, 1, 2, 3, 4, 0]))
    with pytest.raises(ValueError, match="where must be"):
        augment_textures(pool, p, src_index=index, where=where[:, :, :39])
    with pytest.raises(ValueError, match="sparse needs where"):
        augment_textures(pool, p, src_index=index, sparse=torch.ones(6, dtype=torch.bool))
    with pytest.raises(ValueError, match="source_hist"):
        augment_textures(pool, p, src_index=index, source_hist=torch.zeros(6, 3, 256, dtype=torch.int32))
