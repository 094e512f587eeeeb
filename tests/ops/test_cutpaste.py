"""cutpaste op: reference properties (exact mask, untouched pixels, jitter maths), then every backend against it."""

from __future__ import annotations

import colorsys

import pytest
import torch

import anofast.reference.cutpaste as ref
from anofast._backend import triton_interpreted
from anofast.ops.cutpaste import cutpaste, pack_params
from anofast.testing import assert_exact_ptx, assert_verbose_equal, backend_params, compile_ptx_for_cuda, make_batch

INTERPRETED = triton_interpreted()
SIZES = [(1, 1), (7, 5), (23, 31), (40, 33)]


def _params(batch: int, size: tuple[int, int], seed: int = 0, jitter: float = 0.1):
    """Random crops (some rotated, some boxes sticking out of the image), jitter factors and orders."""
    g = torch.Generator().manual_seed(seed)
    h, w = size
    crop = torch.stack((torch.randint(1, h + 1, (batch,), generator=g), torch.randint(1, w + 1, (batch,), generator=g)), 1)
    src = (torch.rand(batch, 2, generator=g) * (torch.tensor([h, w]) - crop + 1)).long()
    dst = torch.randint(-3, max(h, w), (batch, 2), generator=g)
    angle = torch.where(torch.rand(batch, generator=g) < 0.5, (torch.rand(batch, generator=g) - 0.5) * 120, 0.0)
    f = [1 + jitter * (2 * torch.rand(batch, generator=g) - 1) for _ in range(3)]
    hue = jitter * (2 * torch.rand(batch, generator=g) - 1)
    order = torch.argsort(torch.rand(batch, 4, generator=g), 1)
    apply = torch.rand(batch, generator=g) < 0.85
    return pack_params(src, crop, dst, angle, *f, hue, order, apply=apply)


def _inputs(batch: int, channels: int, size: tuple[int, int], seed: int = 0):
    images = make_batch(batch, channels, *size, seed=seed)
    images[0, :, :1] = 0.0  # exact 0 and 1: the clamps get exercised
    images[-1, :, -1:] = 1.0
    if channels == 3 and size[0] > 2:
        images[:, :, 1] = images[:, :1, 1]  # grey pixels (zero chroma) for the hue rotation
    return images


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.int32)


# --- reference properties ----------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3])
def test_reference_mask_is_exactly_the_changed_pixels(channels):
    images = _inputs(6, channels, (33, 41), seed=channels)
    ints, floats = _params(6, (33, 41), seed=channels)
    out, mask, count = cutpaste(images, ints, floats, backend="reference")
    changed = (out != images).any(dim=1, keepdim=True)
    assert torch.equal(mask, changed.float())
    assert torch.equal(_bits(torch.where(changed, 0.0, out)), _bits(torch.where(changed, 0.0, images)))
    assert torch.equal(count, mask.sum(dim=(1, 2, 3)).long())
    assert out.min() >= 0 and out.max() <= 1
    for b in range(6):  # nothing outside the paste box
        _, _, _, _, dy, dx, bh, bw = ints[b, :8].tolist()
        outside = torch.ones(33, 41, dtype=torch.bool)
        outside[max(dy, 0) : max(dy + bh, 0), max(dx, 0) : max(dx + bw, 0)] = False
        assert not mask[b, 0][outside].any()


def test_reference_plain_copy_and_footprint():
    """Factors 1 and hue 0: the crop is copied exactly; a rotated crop covers about its own area."""
    images = make_batch(2, 3, 40, 50)
    src = torch.tensor([[3, 4], [10, 10]])
    crop = torch.tensor([[9, 13], [20, 6]])
    dst = torch.tensor([[25, 30], [5, 20]])
    one = torch.ones(2)
    ints, floats = pack_params(src, crop, dst, torch.tensor([0.0, 30.0]), one, one, one, torch.zeros(2),
                               torch.arange(4).repeat(2, 1))  # fmt: skip
    out, mask, count = cutpaste(images, ints, floats, backend="reference")
    assert torch.equal(out[0, :, 25:34, 30:43], images[0, :, 3:12, 4:17])
    assert count[0] == (images[0, :, 25:34, 30:43] != images[0, :, 3:12, 4:17]).any(0).sum()
    box_h, box_w = ints[1, 6:8].tolist()
    assert (box_h, box_w) == (22, 16)  # PIL: Image.new("RGBA", (6, 20)).rotate(30, expand=True).size == (16, 22)
    assert abs(int(count[1]) - 120) <= 12  # nearest rotation keeps the area up to the border pixels
    assert mask[1, 0, 5 : 5 + box_h, 20 : 20 + box_w].sum() == count[1]


def test_reference_jitter_matches_torchvision_formulas():
    """Each op alone against an independent formula (torchvision ColorJitter on float tensors)."""
    g = torch.Generator().manual_seed(3)
    px = torch.rand(3, 1, 200, generator=g)
    px[:, 0, :10] = 0.5  # grey pixels
    crop = px.view(1, 3, 1, 200)
    factor, hue = 1.07, 0.08
    for op in range(4):
        order = torch.tensor([[op] + [k for k in range(4) if k != op]])
        f = [torch.tensor([factor if k == op else 1.0]) for k in range(3)]
        ints, floats = pack_params(torch.zeros(1, 2), torch.tensor([[1, 200]]), torch.zeros(1, 2), torch.zeros(1),
                                   *f, torch.tensor([hue if op == 3 else 0.0]), order)  # fmt: skip
        out = cutpaste(crop, ints, floats, backend="reference")[0][0, :, 0]
        r, gg, b = px[:, 0]
        grey = 0.2989 * r + 0.587 * gg + 0.114 * b
        if op == 0:
            expect = (factor * px[:, 0]).clamp(0, 1)
        elif op == 1:
            expect = (factor * px[:, 0] + (1 - factor) * grey.mean()).clamp(0, 1)
        elif op == 2:
            expect = (factor * px[:, 0] + (1 - factor) * grey).clamp(0, 1)
        else:
            rows = [colorsys.hsv_to_rgb(*((lambda h, s, v: ((h + hue) % 1.0, s, v))(*colorsys.rgb_to_hsv(*p))))
                    for p in px[:, 0].T.tolist()]  # fmt: skip
            expect = torch.tensor(rows).T
        torch.testing.assert_close(out, expect.float(), rtol=0, atol=2e-6, msg=f"op {op}")


# --- every backend vs the reference ------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("backend", backend_params("cutpaste"))
def test_matches_reference_bitwise(backend, channels):
    name, device = backend
    interpreted = name == "triton" and device.type == "cpu"  # the interpreter is slow: fewer rows
    batch = 2 if interpreted else 6
    sizes = SIZES[:3] if interpreted else SIZES + [(96, 140)]
    for size in sizes:
        images = _inputs(batch, channels, size, seed=size[0])
        ints, floats = _params(batch, size, seed=size[1])
        fg = (torch.rand(batch, 1, *size, generator=torch.Generator().manual_seed(1)) < 0.7).float()
        for foreground in (None, fg) if size == sizes[-1] else (None,):
            expected = cutpaste(images, ints, floats, foreground=foreground, backend="reference")
            dev_fg = None if foreground is None else foreground.to(device)
            got = cutpaste(images.to(device), ints.to(device), floats.to(device), foreground=dev_fg, backend=name)
            what = f"{name} C={channels} {size} fg={foreground is not None}"
            assert_verbose_equal(_bits(got[0].cpu()), _bits(expected[0]), f"{what} out")
            assert_verbose_equal(got[1].cpu(), expected[1], f"{what} mask")
            assert_verbose_equal(got[2].cpu(), expected[2], f"{what} count")


@pytest.mark.parametrize("backend", [b for b in backend_params("cutpaste") if b.id == "cpp"])
def test_cpp_both_simd_copies_match_reference(backend, monkeypatch):
    """x86-64 builds carry a 4-wide (SSE2) and an 8-wide (AVX2) copy of the row and contrast-mean loops; both against
    the reference on rotated and straight crops with every jitter op (hue, saturation, contrast, brightness), with
    and without a foreground, on rows narrower than a vector, boxes of any width and crops over 64 vectors wide."""
    for channels in (1, 3):
        for size in ((5, 6), (37, 61), (64, 203)):
            images = _inputs(8, channels, size, seed=size[1] + channels)
            ints, floats = _params(8, size, seed=size[0] + channels, jitter=0.3)
            assert (floats[:, ref.ROT_B] != 0).any() and (floats[:, ref.ROT_B] == 0).any()  # rotated and straight
            assert (floats[:, ref.HUE6] != 0).all() and (floats[:, ref.SAT] != 1).all()
            fg = (torch.rand(8, 1, *size, generator=torch.Generator().manual_seed(size[0])) < 0.7).float()
            for foreground in (None, fg):
                expected = cutpaste(images, ints, floats, foreground=foreground, backend="reference")
                for no_avx2 in ("1", "0"):
                    monkeypatch.setenv("ANOFAST_NO_AVX2", no_avx2)
                    got = cutpaste(images, ints, floats, foreground=foreground, backend="cpp")
                    what = f"ANOFAST_NO_AVX2={no_avx2} C={channels} {size} fg={foreground is not None}"
                    assert_verbose_equal(_bits(got[0]), _bits(expected[0]), f"{what} out")
                    assert_verbose_equal(got[1], expected[1], f"{what} mask")
                    assert_verbose_equal(got[2], expected[2], f"{what} count")
                    assert int(got[2].sum()) > 0


@pytest.mark.parametrize("backend", [b for b in backend_params("cutpaste") if b.id == "cpp"])
def test_cpp_thread_count_invariant(backend):
    images = _inputs(8, 3, (70, 90), seed=2)
    ints, floats = _params(8, (70, 90), seed=5)
    one = cutpaste(images, ints, floats, backend="cpp")
    torch.set_num_threads(2)
    two = cutpaste(images, ints, floats, backend="cpp")
    torch.set_num_threads(1)
    for a, b in zip(one, two, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("backend", backend_params("cutpaste", include_reference=True))
@pytest.mark.parametrize("bad", [float("nan"), 1.5, -0.25])
def test_image_values_outside_unit_range_raise(backend, bad):
    name, device = backend
    images = _inputs(2, 3, (6, 9))
    images[1, 2, 5, 8] = bad
    ints, floats = _params(2, (6, 9))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        cutpaste(images.to(device), ints.to(device), floats.to(device), backend=name)


@pytest.mark.skipif(INTERPRETED, reason="compiles the real kernel; the interpreter replaces it")
def test_triton_kernels_compile_for_cuda_without_fma():
    from anofast._kernels import cutpaste as kc

    sig = {"out_ptr": "*fp32", "mask_ptr": "*fp32", "rows_ptr": "*i32", "img_ptr": "*fp32", "ints_ptr": "*i32",
           "floats_ptr": "*fp32", "cadd_ptr": "*fp32", "fg_ptr": "*fp32", "H": "i32", "W": "i32"}  # fmt: skip
    sig_mean = {"cadd_ptr": "*fp32", "img_ptr": "*fp32", "ints_ptr": "*i32", "floats_ptr": "*fp32", "H": "i32",
                "W": "i32"}  # fmt: skip
    for channels in (1, 3):
        assert_exact_ptx(compile_ptx_for_cuda(kc._contrast_kernel, sig_mean, {"C": channels, "BLOCK": 256}))
        for has_fg in (False, True):
            const = {"C": channels, "HAS_FG": has_fg, "BLOCK_W": 256}
            assert_exact_ptx(compile_ptx_for_cuda(kc._cutpaste_kernel, sig, const))


# --- bad input -------------------------------------------------------------------------------------------


def test_rejects_bad_inputs():
    images = _inputs(2, 3, (6, 9))
    ints, floats = _params(2, (6, 9))
    with pytest.raises(TypeError, match="images"):
        cutpaste(images.double(), ints, floats)
    with pytest.raises(ValueError, match="images"):
        cutpaste(images[:, :2], ints, floats)
    with pytest.raises(TypeError, match="ints"):
        cutpaste(images, ints.long(), floats)
    with pytest.raises(ValueError, match="ints"):
        cutpaste(images, ints[:1], floats)
    with pytest.raises(ValueError, match="floats"):
        cutpaste(images, ints, floats[:, :3])
    bad = ints.clone()
    bad[0, ref.BOX_H : ref.BOX_W + 1] = 2
    bad[0, ref.SRC_Y] = 5  # crop sticks out of the image
    bad[0, ref.CROP_H] = 3
    with pytest.raises(ValueError, match="crop"):
        cutpaste(images, bad, floats)
    bad = ints.clone()
    bad[0, ref.ORDER] = bad[0, ref.ORDER + 1]
    with pytest.raises(ValueError, match="permutation"):
        cutpaste(images, bad, floats)
    nan = floats.clone()
    nan[1, ref.HUE6] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        cutpaste(images, ints, nan)
    with pytest.raises(ValueError, match="foreground"):
        cutpaste(images, ints, floats, foreground=torch.ones(2, 1, 5, 9))
