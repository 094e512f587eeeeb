"""object_mask: the integer background test against numpy's float rule, the reference against a naive numpy version of
NSA's rule (and cv2.medianBlur where cv2 is installed), then every backend against the reference, bit for bit."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from anofast._backend import triton_interpreted
from anofast.ops.object_mask import MAX_MEDIAN, background_table, object_mask
from anofast.testing import assert_exact_ptx, assert_verbose_equal, backend_params, compile_ptx_for_cuda

INTERPRETED = triton_interpreted()
KINDS = ("random", "object", "stripes", "levels")
PAIRS = {
    "hazelnut": (20, 20),  # NSA's MVTec setting for hazelnut
    "mid": [(128, 40)],
    "two": [(20, 20), (200, 10)],  # on: neither dark nor bright
    "fraction": [(100.25, 3.5), (37.5, 0.0)],
}


def _images(batch: int, channels: int, size: tuple[int, int], kind: str, seed: int = 0) -> torch.Tensor:
    """``(B, C, H, W)`` uint8 test images."""
    g = torch.Generator().manual_seed(seed)
    h, w = size
    shape = (batch, channels, h, w)
    if kind == "random":  # about a third of each pair's pixels near the threshold
        return torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)
    if kind == "object":  # a bright disc on a dark noisy background, touching the border in some samples
        yy = torch.arange(h).view(1, 1, h, 1).float()
        xx = torch.arange(w).view(1, 1, 1, w).float()
        cy = torch.rand(batch, 1, 1, 1, generator=g) * h
        cx = torch.rand(batch, 1, 1, 1, generator=g) * w
        rad = (0.2 + 0.4 * torch.rand(batch, 1, 1, 1, generator=g)) * max(h, w)
        inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= rad**2
        noise = torch.randint(0, 40, shape, generator=g)
        return torch.where(inside, 150 + noise, noise).to(torch.uint8)
    if kind == "stripes":  # thin lines and isolated pixels: the filter removes some and keeps others
        x = torch.zeros(shape, dtype=torch.uint8)
        x[..., :, :: max(1, w // 5)] = 255
        x[..., :: max(1, h // 3), :] = 255
        x[..., 1::4, 2::3] = 255
        return x
    if kind == "levels":  # channel sums right at the thresholds of the pairs above
        levels = torch.tensor([0, 19, 20, 40, 41, 87, 88, 128, 168, 169, 190, 200, 210, 211, 255], dtype=torch.uint8)
        return levels[torch.randint(0, len(levels), shape, generator=g)]
    raise ValueError(kind)


def _naive(images: torch.Tensor, background, median: int, border: str = "replicate", shift: int = 0,
           majority: int = 0) -> torch.Tensor:
    """NSA's rule in numpy, on HxWxC images: the float64 channel mean, ``&= uint8(|mean - b| > t)``, then the
    window majority at clipped (replicated) coordinates. ``border``, ``shift`` and ``majority`` give wrong variants
    (zero borders, a window off by ``shift`` pixels, another majority) that the tests must tell apart."""
    pairs = [background] if not isinstance(background[0], (tuple, list)) else background
    x = images.numpy()
    batch, _, h, w = x.shape
    r = median // 2
    out = np.zeros((batch, 1, h, w), np.float32)
    for b in range(batch):
        img = x[b].transpose(1, 2, 0)  # H x W x C, as NSA holds it
        mask = np.ones((h, w), np.uint8)
        for bg, th in pairs:
            mask &= np.uint8(np.abs(img.mean(axis=-1) - bg) > th)
        offs = np.arange(-r, r + 1) + shift
        ys = np.arange(h)[:, None] + offs[None]  # (H, k)
        xs = np.arange(w)[:, None] + offs[None]  # (W, k)
        win = mask[ys.clip(0, h - 1)[:, None, :, None], xs.clip(0, w - 1)[None, :, None, :]]  # (H, W, k, k)
        if border == "zero":
            inside = ((ys >= 0) & (ys < h))[:, None, :, None] & ((xs >= 0) & (xs < w))[None, :, None, :]
            win = win * inside
        out[b, 0] = win.sum((2, 3)) >= (majority or (median * median + 1) // 2)
    return torch.from_numpy(out)


# --- the background test --------------------------------------------------------------------------------


def _sum_images(channels: int) -> np.ndarray:
    """``(255 C + 1, C)`` uint8: one pixel per channel sum s (the values spread over the channels)."""
    s = np.arange(255 * channels + 1)
    return np.stack([(s + i) // channels for i in range(channels)], axis=-1).astype(np.uint8)


def _table_rule(table, s: np.ndarray) -> np.ndarray:
    on = np.ones(s.shape, bool)
    for lo, hi in table:
        on &= (s < lo) | (s > hi)
    return on


@pytest.mark.parametrize("channels", [1, 3])
def test_table_equals_numpy_float_rule_exhaustively(channels):
    """Every channel sum, every integer brightness in [-3, 259] and threshold in [0, 70] (and 300): the integer
    rule equals numpy's ``abs(img.mean(-1) - b) > t``."""
    img = _sum_images(channels)
    s = img.astype(np.int64).sum(-1)
    mean = img.mean(axis=-1)  # float64, as NSA
    for b in range(-3, 260):
        want = np.abs(mean[None, :] - b) > np.array([*range(71), 300])[:, None]  # (thresholds, sums)
        for i, t in enumerate([*range(71), 300]):
            got = _table_rule(background_table((b, t), channels), s)
            if not np.array_equal(got, want[i]):
                bad = np.nonzero(got != want[i])[0][:5]
                raise AssertionError(f"C={channels} b={b} t={t}: sums {bad.tolist()} differ")


def test_table_equals_numpy_on_quarter_values():
    """Brightness and threshold in steps of 0.25 (exact in binary) for three channels."""
    img = _sum_images(3)
    s = img.astype(np.int64).sum(-1)
    mean = img.mean(axis=-1)
    for b4 in range(-8, 1030, 3):
        for t4 in range(0, 120, 5):
            b, t = b4 / 4, t4 / 4
            assert np.array_equal(_table_rule(background_table((b, t), 3), s), np.abs(mean - b) > t), (b, t)


@pytest.mark.parametrize("channels", [2, 4, 7])
def test_table_equals_exact_rationals(channels):
    """Other channel counts, against exact rational arithmetic (also brightness values like 0.1 that are inexact
    in binary: the table uses the float's exact value)."""
    sums = range(255 * channels + 1)
    for b, t in ((0.1, 0.2), (20, 20), (100.3, 0.0), (128, 5.5), (255.0, 1e-9), (-1, 0.5), (300, 44.9)):
        table = background_table((b, t), channels)
        want = [abs(Fraction(s, channels) - Fraction(b)) > Fraction(t) for s in sums]
        assert _table_rule(table, np.arange(255 * channels + 1)).tolist() == want, (channels, b, t)


def test_table_rows_are_clamped_small_integers():
    assert background_table((20, 20), 3) == [(0, 120)]
    assert background_table([(20.5, 0.2), (-3, 1)], 3) == [(61, 62), (0, -1)]  # the second: always on
    assert background_table((1000, 0), 1) == [(256, 255)]  # always on
    assert background_table((128, 1000), 3) == [(0, 765)]  # never on
    for lo, hi in background_table([(0.3, 0.0), (7, 0), (255, 0.1)], 2):
        assert 0 <= lo <= hi + 1 <= 2 * 255 + 1
    # a single pair in any container, numpy scalars
    assert background_table([20, 20], 3) == background_table(((20, 20),), 3) == background_table([[20, 20]], 3)
    assert background_table((np.float32(20.5), np.int64(3)), 1) == background_table((20.5, 3), 1)


# --- the reference ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("median", [1, 3, 5, 7, 9])
def test_reference_equals_naive_nsa_rule(kind, median):
    for channels, size in ((1, (9, 13)), (3, (17, 11)), (2, (4, 3)), (3, (1, 1)), (4, (1, 6))):
        images = _images(2, channels, size, kind, seed=median + channels)
        for name, pairs in PAIRS.items():
            got = object_mask(images, pairs, median, backend="reference")
            assert_verbose_equal(got, _naive(images, pairs, median), f"{kind} m={median} C={channels} {size} {name}")


def test_naive_variants_are_told_apart():
    """The test data catch the mistakes an implementation could make: zero instead of replicated borders, a window
    off by one pixel, a strict majority, or the threshold test as >=."""
    cases = [(_images(2, 3, size, kind, seed=1), pairs, m) for kind in KINDS for size in ((9, 13), (6, 5))
             for pairs in PAIRS.values() for m in (3, 5, 7)]

    def differs(**variant) -> bool:
        return any(not torch.equal(object_mask(x, p, m, backend="reference"), _naive(x, p, m, **variant))
                   for x, p, m in cases)

    assert differs(border="zero")
    assert differs(shift=1)
    assert differs(shift=-1)
    for m in (3, 5, 7):  # one vote fewer or more than the majority
        for votes in ((m * m + 3) // 2, (m * m - 1) // 2):
            assert any(not torch.equal(object_mask(x, p, k, backend="reference"), _naive(x, p, k, majority=votes))
                       for x, p, k in cases if k == m)
    # |mean - b| >= t instead of > t: pixels exactly at the threshold
    x = _images(2, 1, (9, 13), "levels", seed=2)
    assert not torch.equal(object_mask(x, (20, 20), 1, backend="reference"),
                           object_mask(x, (20, 19.999), 1, backend="reference"))


def test_reference_small_cases():
    img = torch.full((1, 3, 4, 4), 10, dtype=torch.uint8)
    img[..., 1:, 1:] = 200
    got = object_mask(img, (10, 20), 3, backend="reference")[0, 0]
    assert got.tolist() == [[0, 0, 0, 0], [0, 0, 1, 1], [0, 1, 1, 1], [0, 1, 1, 1]]
    assert object_mask(img, (10, 20), 1, backend="reference")[0, 0].tolist() == (img[0, 0] == 200).float().tolist()
    # a 1x1 image: every window is that pixel; a 1-pixel-wide image: replicated columns
    one = torch.tensor([[[[200]]]], dtype=torch.uint8)
    assert object_mask(one, (10, 20), 63, backend="reference").item() == 1.0
    col = torch.tensor([0, 255, 255, 0, 0, 255, 0], dtype=torch.uint8).view(1, 1, 7, 1)
    assert object_mask(col, (0, 0), 3, backend="reference").flatten().tolist() == [0, 1, 1, 0, 0, 0, 0]


def test_reference_equals_cv2_median_blur():
    """NSA's own pipeline, where cv2 is installed (not an anofast dependency)."""
    cv2 = pytest.importorskip("cv2")
    for kind in KINDS:
        for channels, size in ((3, (31, 40)), (1, (8, 9)), (3, (3, 2))):
            images = _images(2, channels, size, kind, seed=channels)
            for pairs in PAIRS.values():
                for median in (3, 5, 7, 9):
                    want = []
                    for b in range(2):
                        img = images[b].permute(1, 2, 0).numpy()
                        mask = np.ones(size, np.uint8)
                        for bg, th in [pairs] if not isinstance(pairs, list) else pairs:
                            mask &= np.uint8(np.abs(img.mean(axis=-1) - bg) > th)
                        want.append(torch.from_numpy(cv2.medianBlur(mask, median).astype(np.float32)))
                    got = object_mask(images, pairs, median, backend="reference")
                    assert_verbose_equal(got[:, 0], torch.stack(want), f"{kind} C={channels} {size} m={median}")


# --- every backend against the reference ----------------------------------------------------------------


def _check(name, device, images, pairs, median, what, **kw):
    expected = object_mask(images, pairs, median, backend="reference")
    got = object_mask(images.to(device), pairs, median, backend=name, **kw).cpu()
    assert got.dtype == torch.float32 and got.shape == (images.shape[0], 1, *images.shape[2:])
    assert_verbose_equal(got, expected, what)


@pytest.mark.parametrize("backend", backend_params("object_mask"))
def test_matches_reference_bitwise(backend):
    name, device = backend
    small = name == "triton" and INTERPRETED  # the interpreter's cost is per operation: fewer, smaller cases
    if small:
        sizes, medians, channels, batch = [(1, 1), (2, 3), (12, 17)], [1, 3, 7], [1, 3], 2
    else:
        sizes = [(1, 1), (2, 3), (3, 1), (6, 6), (7, 5), (12, 17), (37, 53), (64, 64), (70, 130)]
        medians, channels, batch = [1, 3, 5, 7, 9, 11, 13], [1, 2, 3, 4], 3
    for size in sizes:
        for median in medians:
            for c in channels if not (small and median == 7) else (3,):
                for kind in KINDS:
                    images = _images(batch, c, size, kind, seed=size[0] + median + c)
                    if small:
                        pnames = ("two",) if kind != "levels" else ("hazelnut", "fraction")
                    else:
                        pnames = ("hazelnut", "two") if kind != "levels" else PAIRS
                    for pname in pnames:
                        _check(name, device, images, PAIRS[pname], median, f"{name} {size} m={median} C={c} {kind} "
                               f"{pname}")


@pytest.mark.parametrize("backend", backend_params("object_mask"))
def test_uint8_output_is_the_float_output(backend):
    """``dtype=torch.uint8`` gives the same 0 / 1 values as the float32 output (the reference's), on every backend:
    small windows (the C++ kernel's unrolled sums) and a large one (its prefix sums), 1 and 3 channels."""
    name, device = backend
    small = name == "triton" and INTERPRETED
    for c, size, median in ((3, (9, 13), 3), (1, (9, 13), 7)) if small else ((3, (37, 53), 7), (1, (40, 31), 3),
                                                                              (3, (25, 70), 15)):
        images = _images(2, c, size, "object", seed=c + median)
        expected = object_mask(images, PAIRS["two"], median, backend="reference")
        got = object_mask(images.to(device), PAIRS["two"], median, dtype=torch.uint8, backend=name).cpu()
        assert got.dtype == torch.uint8 and got.is_contiguous()
        assert_verbose_equal(got, expected.to(torch.uint8), f"{name} uint8 C={c} m={median}")
        assert 0 < float(expected.mean()) < 1


@pytest.mark.parametrize("backend", backend_params("object_mask"))
def test_large_windows_and_extreme_channel_counts(backend):
    """Windows larger than the image (up to 63), and channel counts at the C++ kernel's 16-bit limit (257 channels
    of 255: a sum of 65535) and past it (258: 32-bit sums)."""
    name, device = backend
    small = name == "triton" and INTERPRETED
    for median in (15,) if small else (15, 31, 63):
        images = _images(2, 3, (6, 20) if small else (40, 90), "object", seed=median)
        _check(name, device, images, (20, 20), median, f"{name} m={median}")
    for c in (5, 258) if small else (5, 16, 257, 258, 300):
        images = _images(2, c, (3, 4), "levels", seed=c)
        images[0, :, 0, 0] = 255  # the largest sum
        images[0, :, 0, 1] = 0
        pairs_list = ((254.9, 0.0), (0, 0), [(20, 20), (200, 10)])
        for pairs in pairs_list if small else (*pairs_list, (255, 0), (0.5, 0.25)):
            for median in (1,) if small else (1, 3):
                _check(name, device, images, pairs, median, f"{name} C={c} {pairs} m={median}")


@pytest.mark.parametrize("backend", backend_params("object_mask"))
def test_float_input_is_quantised(backend):
    """Float images give the result of their grey levels round(x * 255); uint8 images divided by 255 give back the
    uint8 result."""
    name, device = backend
    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 3, 9, 14, generator=g)
    x[0, :, :3] = torch.randint(0, 511, (3, 3, 14), generator=g) / 510.0  # half grey levels: round's ties
    x[1, 0, 0, :2] = torch.tensor([0.0, 1.0])
    q = (x * 255).round().to(torch.uint8)
    for median in (1, 3, 7):
        got = object_mask(x.to(device), (100, 30), median, backend=name).cpu()
        assert torch.equal(got, object_mask(q, (100, 30), median, backend="reference"))
    u8 = _images(2, 3, (9, 14), "levels", seed=4)
    got = object_mask((u8.float() / 255).to(device), PAIRS["fraction"], 3, backend=name).cpu()
    assert torch.equal(got, object_mask(u8, PAIRS["fraction"], 3, backend="reference"))


@pytest.mark.parametrize("backend", backend_params("object_mask"))
def test_batch_independence_non_contiguous_and_pair_forms(backend):
    name, device = backend
    images = _images(4, 3, (10, 12), "object", seed=8)
    whole = object_mask(images.to(device), (20, 20), 5, backend=name).cpu()
    for b in range(4):
        one = object_mask(images[b : b + 1].to(device), [(20, 20)], 5, backend=name).cpu()
        assert torch.equal(one, whole[b : b + 1])
    strided = _images(2, 6, (9, 22), "random", seed=4)[:, ::2, :, ::2]  # a strided view
    got = object_mask(strided.to(device), [(128, 40), (20, 5)], 3, backend=name).cpu()
    assert torch.equal(got, object_mask(strided.contiguous(), [(20, 5), (128, 40)], 3, backend="reference"))
    cl = images.to(memory_format=torch.channels_last)
    assert torch.equal(object_mask(cl.to(device), (20, 20), 5, backend=name).cpu(), whole)


@pytest.mark.parametrize("backend", [b for b in backend_params("object_mask") if b.id == "cpp"])
def test_cpp_thread_count_invariant(backend):
    """The C++ kernel splits images into bands of rows when the batch is small (more bands with more threads):
    the band seams must not show."""
    for batch, size in ((1, (256, 61)), (1, (100, 33)), (3, (130, 40)), (6, (40, 70))):
        images = _images(batch, 3, size, "object", seed=size[0])
        for median in (3, 7, 13):
            expected = object_mask(images, (20, 20), median, backend="reference")
            for threads in (1, 2, 3):
                torch.set_num_threads(threads)
                got = object_mask(images, (20, 20), median, backend="cpp")
                assert_verbose_equal(got, expected, f"threads={threads} B={batch} {size} m={median}")


@pytest.mark.parametrize("backend", [b for b in backend_params("object_mask") if b.id == "cpp"])
def test_cpp_both_simd_copies_match_reference(backend, monkeypatch):
    for size in ((5, 3), (23, 41), (17, 301)):
        for median in (1, 7, 11):
            for c in (1, 3, 2, 258):
                images = _images(2, c, size, "random" if c < 258 else "levels", seed=median + c)
                expected = object_mask(images, PAIRS["two"], median, backend="reference")
                for no_avx2 in ("1", "0"):
                    monkeypatch.setenv("ANOFAST_NO_AVX2", no_avx2)
                    got = object_mask(images, PAIRS["two"], median, backend="cpp")
                    assert_verbose_equal(got, expected, f"NO_AVX2={no_avx2} {size} m={median} C={c}")


@pytest.mark.parametrize("backend", [b for b in backend_params("object_mask") if b.id == "cpp"])
def test_cpp_checks_its_arguments(backend):
    from anofast._backend import cpp_module

    fn = cpp_module().object_mask_cpu
    images = np.zeros((1, 3, 4, 5), np.uint8)
    out = np.zeros((1, 1, 4, 5), np.float32)
    good = np.array([[0, 120]], np.int32)
    fn(images, good, 3, out, 1)
    for table in (np.array([[-1, 10]], np.int32), np.array([[0, 766]], np.int32), np.array([[50, 10]], np.int32),
                  np.zeros((0, 2), np.int32)):
        with pytest.raises(ValueError, match="table"):
            fn(images, table, 3, out, 1)
    for median in (0, 2, 65):
        with pytest.raises(ValueError, match="median"):
            fn(images, good, median, out, 1)
    with pytest.raises(ValueError, match="out"):
        fn(images, good, 3, np.zeros((1, 1, 4, 4), np.float32), 1)
    with pytest.raises(TypeError, match="out"):
        fn(images, good, 3, np.zeros((1, 1, 4, 5), np.int32), 1)
    with pytest.raises(TypeError):
        fn(images.astype(np.float32), good, 3, out, 1)  # noconvert: no silent copies


@pytest.mark.skipif(not INTERPRETED, reason="the interpreter's block-size variant; CUDA runs the default")
def test_triton_small_blocks_match_reference():
    """32 pixels per program, as on CUDA: blocks across rows and samples, and a partial last block."""
    pytest.importorskip("triton")
    from anofast._kernels.object_mask import object_mask_triton

    images = _images(3, 3, (7, 11), "object", seed=5)
    for median in (3, 5):
        table = torch.tensor(background_table(PAIRS["two"], 3), dtype=torch.int32)
        expected = object_mask(images, PAIRS["two"], median, backend="reference")
        assert_verbose_equal(object_mask_triton(images, table, median, block=32), expected, f"block 32 m={median}")


@pytest.mark.skipif(INTERPRETED, reason="compiles the real kernel; the interpreter replaces it")
def test_triton_kernel_compiles_for_cuda():
    from anofast._kernels import object_mask as km

    sig = {"out_ptr": "*fp32", "img_ptr": "*u8", "tab_ptr": "*i32", "total": "i64", "H": "i32", "W": "i32",
           "C": "i32", "P": "i32"}
    for median in (1, 7):
        assert_exact_ptx(compile_ptx_for_cuda(km._object_mask_kernel, sig, {"MEDIAN": median, "BLOCK": 256}))
    assert_exact_ptx(compile_ptx_for_cuda(km._object_mask_kernel, {**sig, "out_ptr": "*u8"}, {"MEDIAN": 7, "BLOCK": 256}))


# --- bad input ------------------------------------------------------------------------------------------


def test_rejects_bad_images():
    x = _images(2, 3, (6, 7), "random")
    f = x.float() / 255
    with pytest.raises(TypeError, match="images must be a torch.Tensor"):
        object_mask(x.numpy(), (20, 20))
    for dtype in (torch.float64, torch.float16, torch.int32, torch.bool):
        with pytest.raises(TypeError, match="images must be uint8 or float32"):
            object_mask(x.to(dtype), (20, 20))
    with pytest.raises(ValueError, match="images must have shape"):
        object_mask(x[0], (20, 20))
    with pytest.raises(ValueError, match="empty batch"):
        object_mask(x[:0], (20, 20))
    with pytest.raises(ValueError, match="at least 1 channel"):
        object_mask(x[:, :0], (20, 20))
    for empty in (x[:, :, :0], x[..., :0]):
        with pytest.raises(ValueError, match="empty image size"):
            object_mask(empty, (20, 20))
    v = f.clone()
    v[1, 2, 5, 6] = float("nan")
    with pytest.raises(ValueError, match="images contains NaN"):
        object_mask(v, (20, 20))
    for bad in (float("inf"), -float("inf"), 1.0001, -1e-6, 255.0):
        v = f.clone()
        v[0, 0, 0, 0] = bad
        with pytest.raises(ValueError, match=r"images must hold values in \[0, 1\]"):
            object_mask(v, (20, 20))


def test_rejects_bad_background_and_median():
    x = _images(1, 3, (6, 7), "random")
    for bad in (None, 20, "ab", {20: 20}, (20,), (1, 2, 3), [(20, 20), (30,)], [(20, 20), 30], (True, 2), ("a", 2),
                (20, None), [(20, 20), (1, "x")], (torch.tensor(20.0), 20)):
        with pytest.raises(TypeError, match="background"):
            object_mask(x, bad)
    for bad in ((), [], (20, -1), [(20, 20), (1, -0.5)], (float("nan"), 1), (20, float("inf")),
                (-float("inf"), 1)):
        with pytest.raises(ValueError, match="background"):
            object_mask(x, bad)
    for bad in (2, 0, -1, -7, MAX_MEDIAN + 2, 64):
        with pytest.raises(ValueError, match="median must be an odd int"):
            object_mask(x, (20, 20), bad)
    for bad in (7.0, True, "7", None):
        with pytest.raises(TypeError, match="median must be an int"):
            object_mask(x, (20, 20), bad)
    with pytest.raises(ValueError, match="backend must be one of"):
        object_mask(x, (20, 20), backend="gpu")
    for bad in (torch.float64, torch.bool, "uint8"):
        with pytest.raises(TypeError, match="dtype must be torch.float32 or torch.uint8"):
            object_mask(x, (20, 20), dtype=bad)
    assert object_mask(x, (20, 20), np.int64(3)).shape == (1, 1, 6, 7)  # numpy ints are ints


def test_cpp_refuses_cuda_tensors():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from anofast import BackendUnavailableError

    with pytest.raises(BackendUnavailableError):
        object_mask(torch.zeros(1, 3, 4, 4, dtype=torch.uint8, device="cuda"), (20, 20), backend="cpp")


def test_output_is_a_fresh_float_tensor():
    x = _images(2, 1, (5, 5), "object")
    out = object_mask(x, (20, 20), 3)
    assert out.dtype == torch.float32 and out.is_contiguous() and set(out.unique().tolist()) <= {0.0, 1.0}
    assert not math.isnan(float(out.sum()))
