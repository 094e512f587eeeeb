"""poisson_blend: the multigrid against a direct solve, the mask contract, then every backend against the reference."""

from __future__ import annotations

import pytest
import torch

from anofast._validate import check_images
from anofast.ops.poisson import MIXED, NORMAL, poisson_blend
from anofast._backend import triton_interpreted
from anofast.testing import assert_exact_ptx, assert_verbose_equal, backend_params, compile_ptx_for_cuda, make_batch


def _inputs(height: int, width: int, channels: int = 3, seed: int = 0):
    """Three samples: a large normal-clone patch with resizing, a mixed one, and an empty one."""
    g = torch.Generator().manual_seed(seed)
    images = make_batch(3, channels, height, width, seed=seed)
    source = make_batch(2, channels, height + 3, width - 2, seed=seed + 7)
    h1, w1 = height - 4, width - 5
    src_index = torch.tensor([1, 0, 1])
    src_box = torch.tensor([[1, 2, h1 - 3, w1 + 1], [0, 0, 5, 7], [2, 1, 4, 4]], dtype=torch.int32)
    box = torch.tensor([[2, 3, h1, w1], [1, 1, height - 2, width // 2], [0, 0, 0, 0]], dtype=torch.int32)
    mode = torch.tensor([NORMAL, MIXED, NORMAL], dtype=torch.int32)
    region = torch.rand(3, 1, height, width, generator=g) > 0.05
    return images, source, src_index, src_box, box, mode, region


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.int32)


def _direct_solve(dest: torch.Tensor, src: torch.Tensor, omega: torch.Tensor) -> torch.Tensor:
    """Dense float64 solve of 4 f_p - sum f_q = sum (s_p - s_q) on omega, f = dest elsewhere (one channel)."""
    idx = -torch.ones(omega.shape, dtype=torch.int64)
    cells = omega.nonzero().tolist()
    for k, (i, j) in enumerate(cells):
        idx[i, j] = k
    n = len(cells)
    a = torch.zeros(n, n, dtype=torch.float64)
    rhs = torch.zeros(n, dtype=torch.float64)
    d, s = dest.double(), src.double()
    for k, (i, j) in enumerate(cells):
        a[k, k] = 4
        for di, dj in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            q = idx[i + di, j + dj]
            rhs[k] += s[i, j] - s[i + di, j + dj]
            if q >= 0:
                a[k, q] = -1
            else:
                rhs[k] += d[i + di, j + dj]
    f = d.clone()
    f[omega] = torch.linalg.solve(a, rhs)
    return f


# --- reference properties -------------------------------------------------------------------------------


def test_multigrid_matches_a_direct_solve():
    # values kept inside (0, 1), so the clamp never acts; tol 0, so every solved pixel the vote keeps is compared
    h, w = 34, 41
    g = torch.Generator().manual_seed(1)
    images = 0.3 + 0.4 * make_batch(1, 1, h + 4, w + 6, seed=3)
    source = 0.3 + 0.4 * torch.rand(1, 1, h, w, generator=g)
    box = torch.tensor([[2, 3, h, w]], dtype=torch.int32)
    src_box = torch.tensor([[0, 0, h, w]], dtype=torch.int32)
    region = torch.ones(1, 1, h + 4, w + 6, dtype=torch.bool)
    region[..., 20:, 30:] = False  # an L-shaped domain: not a rectangle
    args = (images, source, torch.tensor([0]), src_box, box, torch.tensor([NORMAL], dtype=torch.int32))
    omega = torch.zeros(h, w, dtype=torch.bool)
    omega[1:-1, 1:-1] = True
    omega &= region[0, 0, 2:2 + h, 3:3 + w]
    exact = _direct_solve(images[0, 0, 2:2 + h, 3:3 + w], source[0, 0], omega)
    errors = []
    for cycles in (1, 3, 6):
        out, mask = poisson_blend(*args, region=region, cycles=cycles, backend="reference")
        sel = mask[0, 0, 2:2 + h, 3:3 + w] > 0
        assert sel.sum() > 0.8 * omega.sum()  # the 5x5 vote only trims corners of the domain
        errors.append((out[0, 0, 2:2 + h, 3:3 + w].double() - exact)[sel].abs().max().item())
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 2e-4  # 0.05 grey levels after the default 6 cycles


@pytest.mark.parametrize("channels", [1, 3])
def test_reference_mask_is_exactly_the_changed_pixels(channels):
    images, source, src_index, src_box, box, mode, region = _inputs(30, 33, channels)
    out, mask = poisson_blend(images, source, src_index, src_box, box, mode, region=region, tol=1 / 255,
                              cycles=3, backend="reference")
    changed = (out != images).any(1, keepdim=True).float()
    assert torch.equal(mask, changed)
    assert mask[0].sum() > 100 and mask[2].sum() == 0  # the empty box changes nothing
    assert not (mask.bool() & ~region).any()  # never outside the region
    for b, (y0, x0, h, w) in enumerate(box.tolist()):
        inside = torch.zeros(30, 33, dtype=torch.bool)
        inside[y0 + 1:y0 + h - 1, x0 + 1:x0 + w - 1] = True  # the box border is the Dirichlet boundary
        assert not mask[b, 0][~inside].any()
    assert out.min() >= 0 and out.max() <= 1


def test_mixed_with_a_flat_source_changes_nothing():
    images, source, src_index, src_box, box, _, _ = _inputs(24, 26)
    flat = torch.full_like(source, 0.5)
    mode = torch.full((3,), MIXED, dtype=torch.int32)
    out, mask = poisson_blend(images, flat, src_index, src_box, box, mode, tol=1 / 255, backend="reference")
    assert mask.sum() == 0 and torch.equal(out, images)


def test_zero_cycles_pastes_the_resampled_source():
    images, source, _, _, _, _, _ = _inputs(20, 22)
    box = torch.tensor([[3, 4, 10, 12]] * 3, dtype=torch.int32)
    src_box = torch.tensor([[0, 0, 10, 12]] * 3, dtype=torch.int32)  # no resampling: the pixels themselves
    mode = torch.zeros(3, dtype=torch.int32)
    out, mask = poisson_blend(images, source, torch.tensor([0, 1, 0]), src_box, box, mode, cycles=0,
                              backend="reference")
    sel = mask[:, :, 3:13, 4:16].bool().expand(-1, 3, -1, -1)
    patch = source[[0, 1, 0], :, :10, :12]
    assert sel.any() and torch.equal(out[:, :, 3:13, 4:16][sel], patch[sel])


def test_rounds_in_place_equal_rounds_on_copies():
    images, source, src_index, src_box, box, mode, _ = _inputs(26, 28)
    box2 = torch.tensor([[5, 6, 12, 14], [0, 0, 0, 0], [8, 2, 15, 20]], dtype=torch.int32)
    kw = dict(tol=1 / 255, cycles=2, backend="reference")
    a, _ = poisson_blend(images, source, src_index, src_box, box, mode, **kw)
    a, _ = poisson_blend(a, source, src_index, src_box, box2, mode, **kw)
    out, mask = images.clone(), torch.zeros(3, 1, 26, 28)
    poisson_blend(out, source, src_index, src_box, box, mode, out=out, original=images, mask=mask, **kw)
    poisson_blend(out, source, src_index, src_box, box2, mode, out=out, original=images, mask=mask, **kw)
    assert torch.equal(out, a) and torch.equal(mask, (out != images).any(1, keepdim=True).float())


# --- every backend vs the reference ---------------------------------------------------------------------


@pytest.mark.parametrize("backend", backend_params("poisson_blend"))
def test_rounds_in_one_call_equal_one_call_per_round(backend):
    """``(B, K, 4)`` boxes blend K rounds in order, as K calls on the same ``out`` (overlapping rounds, an empty
    box in the middle round), with the mask and diff of all rounds."""
    name, device = backend
    size, cycles = ((13, 14), 1) if name == "triton" else ((26, 28), 2)
    images, source, src_index, src_box, box, mode, region = _inputs(*size)
    box2 = torch.tensor([[5, 6, 7, 6], [0, 0, 0, 0], [1, 2, 9, 8]], dtype=torch.int32)
    box3 = torch.tensor([[0, 0, 0, 0], [2, 3, 8, 9], [3, 3, 9, 10]], dtype=torch.int32)
    src2 = torch.tensor([[1, 1, 4, 5], [0, 0, 3, 3], [2, 2, 6, 7]], dtype=torch.int32)
    boxes, src_boxes = (box, box2, box3), (src_box, src2, src_box)
    results = []
    for batched in (False, True):
        out, mask, diff = images.clone(), torch.zeros(3, 1, *size), torch.zeros(3, 1, *size)
        d = [t.to(device) for t in (out, source, src_index, mode, images, mask, diff, region)]
        kw = {"region": d[7], "tol": 1 / 255, "cycles": cycles, "out": d[0], "original": d[4], "mask": d[5],
              "diff": d[6], "backend": name}
        if batched:
            poisson_blend(d[0], d[1], d[2], torch.stack(src_boxes, 1).to(device), torch.stack(boxes, 1).to(device),
                          d[3], **kw)
        else:
            for b, sb in zip(boxes, src_boxes):
                poisson_blend(d[0], d[1], d[2], sb.to(device), b.to(device), d[3], **kw)
        results.append([t.cpu() for t in (d[0], d[5], d[6])])
    (out_a, mask_a, diff_a), (out_b, mask_b, diff_b) = results
    assert_verbose_equal(_bits(out_b), _bits(out_a), f"{name} out")
    assert torch.equal(mask_b, mask_a) and torch.equal(_bits(diff_b), _bits(diff_a))
    assert torch.equal(mask_b, (out_b != images).any(1, keepdim=True).float()) and float(mask_b.mean()) > 0.05



@pytest.mark.parametrize("backend", backend_params("poisson_blend"))
def test_matches_reference_bitwise(backend):
    name, device = backend
    # the Triton interpreter runs each pass in numpy: tiny images and one cycle there
    cases = [((13, 14), 3, 1, True), ((12, 15), 1, 1, False)] if name == "triton" else [
        ((30, 33), 3, 3, True), ((41, 37), 1, 2, False), ((17, 90), 3, 6, True)]
    for size, channels, cycles, with_region in cases:
        images, source, src_index, src_box, box, mode, region = _inputs(*size, channels)
        region = region if with_region else None
        kw = dict(tol=1 / 255, cycles=cycles)
        ref = poisson_blend(images, source, src_index, src_box, box, mode, region=region, backend="reference", **kw)
        dev = [t.to(device) for t in (images, source, src_index, src_box, box, mode)]
        got = poisson_blend(*dev, region=None if region is None else region.to(device), backend=name, **kw)
        what = f"{name} {size} C={channels} cycles={cycles}"
        assert_verbose_equal(_bits(got[0].cpu()), _bits(ref[0]), f"{what} out")
        assert_verbose_equal(got[1].cpu(), ref[1], f"{what} mask")


@pytest.mark.parametrize("backend", backend_params("poisson_blend"))
def test_uint8_original_and_source_and_diff(backend):
    """uint8 ``original`` / ``source`` give the bits of their float32 conversion, and ``diff`` is the channel sum of
    |out - original| after several rounds (zero where nothing changed), on every backend."""
    name, device = backend
    size, cycles = ((13, 14), 1) if name == "triton" else ((30, 33), 3)
    images, source, src_index, src_box, box, mode, region = _inputs(*size, 3)
    u8, src_u8 = ((t * 255).round().to(torch.uint8) for t in (images, source))
    f32, src_f32 = (check_images(t) for t in (u8, src_u8))
    box2 = box.flip(0).contiguous()
    box2[:, 2:] = box2[:, 2:].clamp(max=8)
    results = []
    for original, src in ((f32, src_f32), (u8, src_u8)):
        out, mask, diff = f32.clone(), torch.zeros(3, 1, *size), torch.zeros(3, 1, *size)
        dev = [t.to(device) for t in (out, src, src_index, src_box, mode, original, mask, diff, region)]
        for b in (box, box2):
            poisson_blend(dev[0], dev[1], dev[2], dev[3], b.to(device), dev[4], region=dev[8], tol=1 / 255,
                          cycles=cycles, out=dev[0], original=dev[5], mask=dev[6], diff=dev[7], backend=name)
        results.append([t.cpu() for t in (dev[0], dev[6], dev[7])])
    (out_f, mask_f, diff_f), (out_u, mask_u, diff_u) = results
    assert_verbose_equal(_bits(out_u), _bits(out_f), f"{name} out")
    assert torch.equal(mask_u, mask_f) and torch.equal(_bits(diff_u), _bits(diff_f))
    change = (out_f - f32).abs()
    assert torch.equal(_bits(diff_f), _bits((change[:, :1] + change[:, 1:2]) + change[:, 2:]))
    assert torch.equal(mask_f, (out_f != f32).any(1, keepdim=True).float()) and float(mask_f.mean()) > 0.02


@pytest.mark.parametrize("backend", backend_params("poisson_blend"))
def test_uint8_images_are_converted_by_the_kernel(backend):
    """uint8 ``images``: ``out`` (new or given) is their float32 conversion, blended: the bits of converting first,
    for every sample, the one without a patch included."""
    name, device = backend
    size, cycles = ((13, 14), 1) if name == "triton" else ((30, 33), 3)
    images, source, src_index, src_box, box, mode, region = _inputs(*size, 3)
    u8 = (images * 255).round().to(torch.uint8)
    f32 = check_images(u8)
    d = [t.to(device) for t in (u8, source, src_index, src_box, box, mode)]
    kw = {"region": region.to(device), "tol": 1 / 255, "cycles": cycles, "backend": name}
    ref_out, ref_mask = (t.cpu() for t in poisson_blend(f32.to(device), *d[1:], **kw))
    given = torch.full(u8.shape, 7.0, device=device)
    for out, mask in (poisson_blend(*d, **kw), poisson_blend(*d, out=given, **kw)):
        assert out.dtype == torch.float32 and out.shape == u8.shape
        assert_verbose_equal(_bits(out.cpu()), _bits(ref_out), f"{name} out")
        assert torch.equal(mask.cpu(), ref_mask)
    assert torch.equal(given.cpu(), ref_out)
    assert torch.equal(ref_out[2], f32[2]) and float(ref_mask.mean()) > 0.02  # sample 2 has no patch


@pytest.mark.parametrize("backend", [b for b in backend_params("poisson_blend") if b.id == "cpp"])
def test_cpp_thread_count_invariant(backend):
    images, source, src_index, src_box, box, mode, region = _inputs(40, 44)
    results = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        results.append(poisson_blend(images, source, src_index, src_box, box, mode, region=region, tol=1 / 255,
                                     backend="cpp"))
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])


@pytest.mark.parametrize("backend", [b for b in backend_params("poisson_blend") if b.id == "cpp"])
def test_cpp_both_simd_copies_match_reference_on_many_patch_sizes(backend, monkeypatch):
    """Patch sides around the 8-wide blocks of the AVX2 loops (and levels with rows shorter than a block), both
    modes, with and without a region, through both copies of the C++ kernel."""
    g = torch.Generator().manual_seed(3)
    height, width, n = 48, 52, 12
    images = make_batch(n, 3, height, width, seed=4)
    source = make_batch(2, 3, height, width, seed=5)
    sides = torch.tensor([3, 5, 7, 8, 9, 15, 16, 17, 23, 31, 33, 41])
    h, w = sides, sides.flip(0)
    box = torch.stack((torch.randint(0, 7, (n,), generator=g), torch.randint(0, 11, (n,), generator=g), h, w), 1)
    src_box = torch.stack((torch.zeros(n, dtype=torch.int64), torch.ones(n, dtype=torch.int64), (h + 5).clamp(max=47),
                           (w - 2).clamp(min=1)), 1)
    args = (images, source, torch.arange(n) % 2, src_box.to(torch.int32), box.to(torch.int32),
            (torch.arange(n) % 2).to(torch.int32))
    region = torch.rand(n, 1, height, width, generator=g) > 0.1
    for reg in (None, region):
        ref = poisson_blend(*args, region=reg, tol=1 / 255, cycles=3, backend="reference")
        for no_avx2 in ("1", "0"):
            monkeypatch.setenv("ANOFAST_NO_AVX2", no_avx2)
            got = poisson_blend(*args, region=reg, tol=1 / 255, cycles=3, backend="cpp")
            what = f"ANOFAST_NO_AVX2={no_avx2} region={reg is not None}"
            assert_verbose_equal(_bits(got[0]), _bits(ref[0]), f"{what} out")
            assert_verbose_equal(got[1], ref[1], f"{what} mask")
        assert float(ref[1].mean()) > 0.01


# --- bad input ------------------------------------------------------------------------------------------


def test_rejects_bad_inputs():
    images, source, src_index, src_box, box, mode, region = _inputs(20, 22)
    args = (images, source, src_index, src_box, box, mode)

    def call(i, value, **kw):
        a = list(args)
        a[i] = value
        return poisson_blend(*a, **kw)

    with pytest.raises(TypeError, match="images"):
        call(0, images.double())
    with pytest.raises(ValueError, match="images"):
        call(0, images[:, :2])
    with pytest.raises(ValueError, match="source"):
        call(1, source[:, :1])
    with pytest.raises(TypeError, match="src_box"):
        call(3, src_box.float())
    with pytest.raises(ValueError, match="box"):
        call(4, torch.tensor([[15, 0, 10, 5]] * 3, dtype=torch.int32))
    with pytest.raises(ValueError, match="src_box"):
        call(3, torch.tensor([[0, 0, 30, 5]] * 3, dtype=torch.int32))
    with pytest.raises(ValueError, match="src_index"):
        call(2, torch.tensor([0, 5, 0]))
    with pytest.raises(ValueError, match="mode"):
        call(5, torch.tensor([0, 2, 0], dtype=torch.int32))
    with pytest.raises(ValueError, match="region"):
        poisson_blend(*args, region=region[:, :, :5])
    with pytest.raises(ValueError, match="cycles"):
        poisson_blend(*args, cycles=-1)
    with pytest.raises(ValueError, match="tol"):
        poisson_blend(*args, tol=-1.0)
    with pytest.raises(ValueError, match="original"):
        poisson_blend(*args, out=images)
    with pytest.raises(ValueError, match="mask"):
        poisson_blend(*args, mask=torch.zeros(3, 1, 5, 5))
    with pytest.raises(ValueError, match="src_box"):  # (B, K, 4) boxes need (B, K, 4) source boxes
        call(4, torch.stack((box, box), 1))
    with pytest.raises(ValueError, match="uint8 images cannot be blended in place"):
        u8 = (images * 255).to(torch.uint8)
        poisson_blend(u8, source, src_index, src_box, box, mode, out=u8, original=u8.clone())
    with pytest.raises(TypeError, match="images must be float32 or uint8"):
        call(0, images.to(torch.int32))
    with pytest.raises(ValueError, match="source must not share memory with out"):
        poisson_blend(images.clone(), images, src_index, src_box, box, mode, out=images, original=images.clone())


@pytest.mark.skipif(triton_interpreted(), reason="compiles the real kernel; the interpreter replaces it")
def test_triton_kernel_compiles_for_cuda_without_fma():
    from anofast._kernels import poisson as kp

    ptrs = {"out_ptr": "*fp32", "orig_ptr": "*fp32", "mask_ptr": "*fp32", "diff_ptr": "*fp32", "img_ptr": "*fp32",
            "sidx_ptr": "*i32",
            "sbox_ptr": "*i32", "scale_ptr": "*fp32", "box_ptr": "*i32", "mode_ptr": "*i32", "region_ptr": "*u8",
            "nlev_ptr": "*i32", "tab_ptr": "*i32", "wm_ptr": "*u8", "wsrc_ptr": "*fp32", "wx_ptr": "*fp32",
            "wb_ptr": "*fp32", "wr_ptr": "*fp32", "wd_ptr": "*fp32", "ws_ptr": "*fp32", "wc_ptr": "*i32"}  # fmt: skip
    ints = dict.fromkeys(("H", "W", "HS", "WS", "HP", "WP", "TOT", "cycles"), "i32")
    sig = {**ptrs, **ints, "tol_sum": "fp32"}
    for has_region, u8 in ((False, False), (True, True)):  # uint8 original / source, with the diff output
        types = {**sig, "orig_ptr": "*u8", "img_ptr": "*u8"} if u8 else sig
        const = {"C": 3, "HAS_REGION": has_region, "HAS_DIFF": u8, "ORIG_U8": u8, "SRC_U8": u8, "BLOCK": 256}
        assert_exact_ptx(compile_ptx_for_cuda(kp._poisson_kernel, types, const))
