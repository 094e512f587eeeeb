"""blend: reference properties (exact mask, untouched pixels), then every backend against the reference."""

from __future__ import annotations

import pytest
import torch

from anofast._backend import triton_interpreted
from anofast.ops.blend import blend
from anofast.reference.blend import INV255
from anofast.testing import assert_exact_ptx, compile_ptx_for_cuda, assert_verbose_equal, backend_params, make_batch

INTERPRETED = triton_interpreted()
SIZES = [(1, 1), (7, 5), (37, 53), (64, 64)]
CPP_SIZES = SIZES + [(256, 192), (5, 700)]  # 700 > 256: several texture chunks per row in the C++ path


def _inputs(batch: int, channels: int, size: tuple[int, int], seed: int = 0, density: float = 0.5):
    g = torch.Generator().manual_seed(seed)
    images = make_batch(batch, channels, *size, seed=seed)
    images[0, :, :1] = 0.0  # exact 0 and 1 pixels: the clamps and "no change" cases get exercised
    images[-1, :, -1:] = 1.0
    texture = torch.randint(0, 256, (batch, channels, *size), generator=g, dtype=torch.uint8)
    texture[0, :, :2] = 0
    texture[-1, :, -2:] = 255
    placement = (torch.rand(batch, 1, *size, generator=g) < density).float()
    opacity = torch.rand(batch, generator=g)
    opacity[0] = 0.0
    if batch > 1:
        opacity[1] = 1.0
    return images, texture, placement, opacity


def _bbox(batch: int, size: tuple[int, int], seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    h, w = size
    y = torch.randint(0, h + 1, (batch, 2), generator=g).sort(1).values
    x = torch.randint(0, w + 1, (batch, 2), generator=g).sort(1).values
    box = torch.stack((y[:, 0], x[:, 0], y[:, 1], x[:, 1]), 1)
    box[0] = torch.tensor([0, 0, h, w])
    if batch > 1:
        box[1] = 0  # an empty box: nothing is placed
    return box.to(torch.int32)


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.int32)


# --- reference properties ----------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3])
def test_reference_mask_is_exactly_the_changed_pixels(channels):
    images, texture, placement, opacity = _inputs(6, channels, (33, 41), seed=channels)
    out, mask, count = blend(images, texture, placement, opacity, backend="reference")
    assert out.shape == images.shape and mask.shape == (6, 1, 33, 41) and count.dtype == torch.int64
    changed = (out != images).any(dim=1, keepdim=True)
    assert torch.equal(mask, changed.float())
    assert torch.equal(_bits(torch.where(changed, 0.0, out)), _bits(torch.where(changed, 0.0, images)))
    assert torch.equal(count, mask.sum(dim=(1, 2, 3)).long())
    assert (mask <= placement).all()  # only placed pixels change
    assert out.min() >= 0 and out.max() <= 1
    assert count[0] == 0 and torch.equal(out[0], images[0])  # opacity 0: untouched
    placed = placement[1:2].expand_as(images[1:2]) > 0.5
    expect = texture[1:2].float() * INV255
    # opacity 1: the texture, up to the rounding of img + (t - img)
    torch.testing.assert_close(out[1:2][placed], expect[placed], rtol=0, atol=2.4e-7)
    assert count[2:].min() > 0


def test_reference_formula_and_threshold():
    images = torch.tensor([0.25, 0.5, 1.0, 0.0]).view(1, 1, 1, 4)
    texture = torch.tensor([255, 0, 0, 51], dtype=torch.uint8).view(1, 1, 1, 4)
    placement = torch.tensor([1.0, 0.51, 0.5, 1.0]).view(1, 1, 1, 4)  # > 0.5 places; 0.5 does not
    out, mask, count = blend(images, texture, placement, torch.tensor([0.5]), backend="reference")
    t = texture.float() * INV255
    expect = images + 0.5 * (t - images)
    assert torch.equal(out[0, 0, 0, :2], expect[0, 0, 0, :2]) and out[0, 0, 0, 2] == 1.0
    assert out[0, 0, 0, 3] == expect[0, 0, 0, 3]
    assert mask.flatten().tolist() == [1.0, 1.0, 0.0, 1.0] and count.tolist() == [3]


def test_reference_bbox_limits_placement():
    images, texture, placement, opacity = _inputs(4, 3, (20, 30), density=1.0)
    opacity[:] = 0.9
    box = torch.tensor([[2, 3, 10, 12], [0, 0, 0, 0], [0, 0, 20, 30], [19, 29, 20, 30]], dtype=torch.int32)
    _, mask, count = blend(images, texture, placement, opacity, bbox=box, backend="reference")
    for b, (y0, x0, y1, x1) in enumerate(box.tolist()):
        inside = torch.zeros(20, 30, dtype=torch.bool)
        inside[y0:y1, x0:x1] = True
        assert not mask[b, 0][~inside].any()
    assert count[1] == 0 and count[0] > 0


# --- every backend vs the reference ------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("backend", backend_params("blend"))
def test_matches_reference_bitwise(backend, channels):
    name, device = backend
    batch = 3 if name == "triton" else 5
    for size in CPP_SIZES if name == "cpp" else SIZES:
        inputs = _inputs(batch, channels, size, seed=size[0])
        for box in (None, _bbox(batch, size, seed=size[1])):
            expected = blend(*inputs, bbox=box, backend="reference")
            dev_box = None if box is None else box.to(device)
            got = blend(*(t.to(device) for t in inputs), bbox=dev_box, backend=name)
            what = f"{name} C={channels} {size} bbox={box is not None}"
            assert_verbose_equal(_bits(got[0].cpu()), _bits(expected[0]), f"{what} out")
            assert_verbose_equal(got[1].cpu(), expected[1], f"{what} mask")
            assert_verbose_equal(got[2].cpu(), expected[2], f"{what} count")


@pytest.mark.parametrize("backend", backend_params("blend"))
def test_non_contiguous_and_bool_placement(backend):
    name, device = backend
    images, texture, placement, opacity = _inputs(2, 3, (9, 14), seed=4)
    wide = torch.cat((images, images), dim=3)[..., ::2]  # a non-contiguous view
    expected = blend(wide.contiguous(), texture, placement, opacity, backend="reference")
    got = blend(wide.to(device), texture.to(device), (placement > 0.5).to(device), opacity.to(device), backend=name)
    for a, b in zip(got, expected, strict=True):
        assert torch.equal(a.cpu(), b)


@pytest.mark.parametrize("backend", backend_params("blend", include_reference=True))
def test_empty_batch(backend):
    name, device = backend
    images, texture, placement, opacity = (t[:0].to(device) for t in _inputs(1, 3, (6, 7)))
    out, mask, count = blend(images, texture, placement, opacity, backend=name)
    assert out.shape == (0, 3, 6, 7) and mask.shape == (0, 1, 6, 7) and count.shape == (0,)


@pytest.mark.parametrize("backend", backend_params("blend", include_reference=True))
@pytest.mark.parametrize("bad", [float("nan"), 1.5, -0.25])
def test_image_values_outside_unit_range_raise(backend, bad):
    name, device = backend
    images, texture, placement, opacity = _inputs(2, 3, (6, 9))
    images[1, 2, 4, 8] = bad  # far from the bbox below: the copy path checks values too
    box = torch.tensor([[0, 0, 2, 2], [0, 0, 1, 1]], dtype=torch.int32)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        blend(
            images.to(device),
            texture.to(device),
            placement.to(device),
            opacity.to(device),
            bbox=box.to(device),
            backend=name,
        )


@pytest.mark.parametrize("backend", [b for b in backend_params("blend") if b.id == "cpp"])
def test_cpp_thread_count_invariant(backend):
    inputs = _inputs(6, 3, (70, 90), seed=2)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = blend(*inputs, backend="cpp")
        torch.set_num_threads(2)
        two = blend(*inputs, backend="cpp")
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(one, two, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("backend", [b for b in backend_params("blend") if b.id == "cpp"])
def test_cpp_baseline_copy_matches(backend, monkeypatch):
    # x86-64 builds carry a 4-wide (SSE2) and an 8-wide (AVX2) copy of the row loop; check the one not picked.
    for channels in (1, 3):
        inputs = _inputs(4, channels, (13, 301), seed=channels)
        box = _bbox(4, (13, 301))
        expected = blend(*inputs, bbox=box, backend="reference")
        monkeypatch.setenv("ANOFAST_NO_AVX2", "1")
        got = blend(*inputs, bbox=box, backend="cpp")
        monkeypatch.delenv("ANOFAST_NO_AVX2")
        assert torch.equal(_bits(got[0]), _bits(expected[0]))
        assert torch.equal(got[1], expected[1]) and torch.equal(got[2], expected[2])


@pytest.mark.skipif(INTERPRETED, reason="compiles the real kernel; the interpreter replaces it")
def test_triton_kernel_compiles_for_cuda_without_fma():
    from anofast._kernels import blend as kb

    sig = {"out_ptr": "*fp32", "mask_ptr": "*fp32", "rows_ptr": "*i32", "img_ptr": "*fp32", "tex_ptr": "*u8",
           "place_ptr": "*fp32", "opacity_ptr": "*fp32", "bbox_ptr": "*i32", "H": "i32", "W": "i32"}  # fmt: skip
    for channels in (1, 3):
        for has_bbox in (False, True):
            const = {"C": channels, "HAS_BBOX": has_bbox, "BLOCK_W": 256}
            assert_exact_ptx(compile_ptx_for_cuda(kb._blend_kernel, sig, const))


# --- bad input -------------------------------------------------------------------------------------------


def test_rejects_bad_inputs():
    images, texture, placement, opacity = _inputs(2, 3, (6, 9))
    with pytest.raises(TypeError, match="images"):
        blend(images.double(), texture, placement, opacity)
    with pytest.raises(ValueError, match="images"):
        blend(images[:, :2], texture[:, :2], placement, opacity)
    with pytest.raises(TypeError, match="texture"):
        blend(images, texture.float(), placement, opacity)
    with pytest.raises(ValueError, match="texture"):
        blend(images, texture[..., :8], placement, opacity)
    with pytest.raises(ValueError, match="placement"):
        blend(images, texture, placement[:1], opacity)
    with pytest.raises(ValueError, match="opacity"):
        blend(images, texture, placement, torch.tensor([0.5, 1.5]))
    with pytest.raises(ValueError, match="opacity"):
        blend(images, texture, placement, torch.tensor([0.5, float("nan")]))
    with pytest.raises(ValueError, match="bbox"):
        blend(images, texture, placement, opacity, bbox=torch.tensor([[0, 0, 7, 9], [0, 0, 1, 1]], dtype=torch.int32))
    with pytest.raises(TypeError, match="bbox"):
        blend(images, texture, placement, opacity, bbox=torch.zeros(2, 4))
    with pytest.raises(TypeError, match="images"):
        blend(images.numpy(), texture, placement, opacity)  # type: ignore[arg-type]
