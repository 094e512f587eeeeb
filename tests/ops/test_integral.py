"""integral_image: the reference against naive loops and box sums, then every backend against the reference, exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anofast._backend import triton_interpreted
from anofast._dispatch import resolve
from anofast.ops.integral import integral_image
from anofast.testing import backend_params, compile_ptx_for_cuda

INTERPRETED = triton_interpreted()
KINDS = ("random", "sparse", "ones", "zeros", "values", "bool")


def _mask(batch: int, size: tuple[int, int], kind: str, seed: int = 0) -> torch.Tensor:
    """``(B, 1, H, W)`` uint8 (bool for ``kind='bool'``); ``values``: nonzero bytes anywhere in 1..255."""
    g = torch.Generator().manual_seed(seed)
    shape = (batch, 1, *size)
    if kind == "ones":
        return torch.ones(shape, dtype=torch.uint8)
    if kind == "zeros":
        return torch.zeros(shape, dtype=torch.uint8)
    on = torch.rand(shape, generator=g) < (0.05 if kind == "sparse" else 0.5)
    if kind == "bool":
        return on
    if kind == "values":  # every nonzero byte counts as 1, including 0x80 .. 0xFF
        return on.to(torch.uint8) * torch.randint(1, 256, shape, generator=g, dtype=torch.int32).to(torch.uint8)
    return on.to(torch.uint8)


def _naive(mask: torch.Tensor) -> torch.Tensor:
    """The definition, one output at a time: out[b, y, x] = #{mask[b, 0, y', x'] != 0 : y' < y, x' < x}."""
    m = mask.numpy()[:, 0] != 0
    batch, h, w = m.shape
    out = np.zeros((batch, h + 1, w + 1), dtype=np.int64)
    for b in range(batch):
        for y in range(h + 1):
            for x in range(w + 1):
                out[b, y, x] = int(m[b, :y, :x].sum())
    return torch.from_numpy(out.astype(np.int32))


def _check(name, device, mask, what, **kw):
    expected = integral_image(mask, backend="reference")
    got = integral_image(mask.to(device), backend=name, **kw)
    assert got.dtype == torch.int32 and got.device == mask.to(device).device, what
    got = got.cpu()
    assert got.shape == expected.shape, f"{what}: shape {tuple(got.shape)} != {tuple(expected.shape)}"
    if not torch.equal(got, expected):
        bad = (got != expected).nonzero()[:5].tolist()
        raise AssertionError(f"{what}: {(got != expected).sum().item()} entries differ, first at {bad}")


# --- the reference --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("size", [(1, 1), (1, 6), (5, 1), (4, 7), (9, 13)])
def test_reference_matches_naive_loops(kind, size):
    mask = _mask(2, size, kind, seed=sum(size))
    got = integral_image(mask, backend="reference")
    assert got.dtype == torch.int32 and got.shape == (2, size[0] + 1, size[1] + 1)
    assert torch.equal(got, _naive(mask))


def test_reference_small_example():
    mask = torch.tensor([[[[1, 0, 1], [0, 7, 255]]]], dtype=torch.uint8)
    got = integral_image(mask, backend="reference")
    assert got.tolist() == [[[0, 0, 0, 0], [0, 1, 1, 2], [0, 1, 2, 4]]]


@pytest.mark.parametrize("backend", backend_params("integral_image", include_reference=True))
def test_box_sums_equal_direct_sums(backend):
    """What NSA uses the table for: the count of any box is four look-ups."""
    name, device = backend
    size = (23, 31) if name == "triton" else (67, 90)
    mask = _mask(3, size, "random", seed=11)
    table = integral_image(mask.to(device), backend=name).cpu().long()
    g = torch.Generator().manual_seed(12)
    h, w = size
    for _ in range(300):
        b = int(torch.randint(0, 3, (1,), generator=g))
        y0, y1 = sorted(int(v) for v in torch.randint(0, h + 1, (2,), generator=g))
        x0, x1 = sorted(int(v) for v in torch.randint(0, w + 1, (2,), generator=g))
        t = table[b]
        box = int(t[y1, x1] - t[y0, x1] - t[y1, x0] + t[y0, x0])
        assert box == int((mask[b, 0, y0:y1, x0:x1] != 0).sum()), (b, y0, y1, x0, x1)
    assert int(table[:, h, w].sum()) == int((mask != 0).sum())


# --- every backend against the reference ----------------------------------------------------------------


@pytest.mark.parametrize("backend", backend_params("integral_image"))
def test_matches_reference_exactly(backend):
    name, device = backend
    if name == "triton":
        sizes, batches = [(1, 1), (1, 9), (8, 1), (6, 17), (5, 33)], (1, 3)
    else:
        # widths on both sides of the C++ kernel's 16-column vectors, and NSA's 256 x 256
        sizes = [(1, 1), (1, 15), (1, 16), (1, 17), (9, 1), (7, 5), (13, 31), (12, 32), (11, 33), (40, 71),
                 (3, 200), (64, 64), (256, 256)]  # fmt: skip
        batches = (1, 2, 5)
    for size in sizes:
        for batch in batches:
            for kind in KINDS:
                mask = _mask(batch, size, kind, seed=size[0] * 100 + size[1] + batch)
                _check(name, device, mask, f"{name} {size} b={batch} {kind}")


@pytest.mark.parametrize("backend", backend_params("integral_image"))
def test_batch_size_independence(backend):
    name, device = backend
    mask = _mask(4, (10, 21), "random", seed=3)
    whole = integral_image(mask.to(device), backend=name).cpu()
    for b in range(4):
        one = integral_image(mask[b : b + 1].to(device), backend=name).cpu()
        assert torch.equal(one, whole[b : b + 1])


@pytest.mark.parametrize("backend", backend_params("integral_image"))
def test_non_contiguous_and_bool_views(backend):
    name, device = backend
    mask = _mask(2, (9, 40), "values", seed=4)[..., 1::2]  # a strided view
    _check(name, device, mask, f"{name} strided")
    _check(name, device, mask != 0, f"{name} bool")
    _check(name, device, _mask(3, (9, 20), "ones", seed=5).transpose(2, 3), f"{name} transposed")


@pytest.mark.parametrize("backend", [b for b in backend_params("integral_image") if b.id == "cpp"])
def test_cpp_thread_count_invariant(backend):
    mask = _mask(7, (50, 83), "random", seed=2)
    torch.set_num_threads(1)
    one = integral_image(mask, backend="cpp")
    torch.set_num_threads(2)
    two = integral_image(mask, backend="cpp")
    assert torch.equal(one, two)
    assert torch.equal(one, integral_image(mask, backend="reference"))


def test_auto_picks_cpp_on_the_cpu():
    if "cpp" not in [b.id for b in backend_params("integral_image")]:
        pytest.skip("no cpp backend")
    if resolve("integral_image", torch.device("cpu")) != "cpp":
        pytest.skip("ANOFAST_BACKEND or a missing extension changes auto")
    mask = _mask(2, (5, 6), "random")
    assert torch.equal(integral_image(mask), integral_image(mask, backend="reference"))


@pytest.mark.skipif(not INTERPRETED, reason="the interpreter's block-size variants; CUDA runs the default")
def test_triton_column_blocks_match_reference():
    """Several programs per row: each adds the count of the mask left of its block (the carry)."""
    pytest.importorskip("triton")
    from anofast._kernels.integral import integral_image_triton

    for block, sizes in ((1, ((3, 1), (2, 5))), (2, ((4, 7), (3, 12))), (4, ((5, 18),)), (8, ((3, 30),))):
        for size in sizes:
            for kind in ("random", "values", "ones"):
                mask = _mask(2, size, kind, seed=block + size[1])
                expected = integral_image(mask, backend="reference")
                got = integral_image_triton(mask, block=block)
                assert torch.equal(got, expected), (block, size, kind)


@pytest.mark.skipif(INTERPRETED, reason="compiles the real kernel; the interpreter replaces it")
def test_triton_kernel_compiles_for_cuda():
    from anofast._kernels import integral as ki

    sig = {"out_ptr": "*i32", "mask_ptr": "*u8", "H": "i32", "W": "i32"}
    for block in (64, 512, 1024):
        ptx = compile_ptx_for_cuda(ki._integral_image_kernel, sig, {"BLOCK": block})
        assert ".entry" in ptx


# --- bad input ------------------------------------------------------------------------------------------


def test_rejects_bad_inputs():
    mask = _mask(2, (6, 7), "random")
    for dtype in (torch.float32, torch.int32, torch.int8, torch.int64):
        with pytest.raises(TypeError, match=r"mask must have dtype torch\.bool or torch\.uint8"):
            integral_image(mask.to(dtype))
    with pytest.raises(TypeError, match="mask"):
        integral_image(mask.numpy())
    with pytest.raises(ValueError, match="mask"):
        integral_image(mask[:, 0])  # 3-D
    with pytest.raises(ValueError, match="mask"):
        integral_image(mask[None])  # 5-D
    with pytest.raises(ValueError, match="mask"):
        integral_image(mask.expand(2, 3, 6, 7))  # 3 channels
    with pytest.raises(ValueError, match="mask is an empty batch"):
        integral_image(mask[:0])
    with pytest.raises(ValueError, match="mask has an empty image size"):
        integral_image(mask[:, :, :0])
    with pytest.raises(ValueError, match="mask has an empty image size"):
        integral_image(mask[..., :0])
    with pytest.raises(ValueError, match="backend must be one of"):
        integral_image(mask, backend="gpu")


def test_rejects_too_many_pixels_for_int32():
    """H * W = 2**31 would overflow the counts; an expanded view (no memory) is refused before any copy."""
    huge = torch.zeros(1, 1, 1, 1, dtype=torch.uint8).expand(1, 1, 2**16, 2**15)
    with pytest.raises(ValueError, match=r"mask has 65536 x 32768 .*2\*\*31"):
        integral_image(huge)


@pytest.mark.parametrize("backend", [b for b in backend_params("integral_image") if b.id == "cpp"])
def test_cpp_binding_checks_shapes(backend):
    from anofast._backend import cpp_module

    fn = cpp_module().integral_image_cpu
    mask = _mask(2, (4, 5), "random").numpy()
    with pytest.raises(ValueError, match="out"):
        fn(mask, np.zeros((2, 4, 5), dtype=np.int32), 1)  # not (B, H + 1, W + 1)
    with pytest.raises(TypeError):
        fn(mask, np.zeros((2, 5, 6), dtype=np.int64), 1)  # int64 out
