"""diffusion_step: every backend against the reference, bit for bit; determinism; noise; bad input."""

from __future__ import annotations

import pytest
import torch

from anofast import sample_seeds
from anofast.ops.diffusion_step import diffusion_step
from anofast.reference.diffusion_step import CLIP, KA, KS, NUM_COEFS
from anofast.testing import assert_exact_ptx, assert_verbose_equal, backend_params, compile_ptx_for_cuda, make_batch

SHAPES = [(1, 1, 1, 1), (3, 3, 7, 9), (2, 4, 13, 5)]


def _inputs(batch, channels, height, width, *, guided=False, seed=0, clip=True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, channels, height, width, generator=g)
    pred = torch.randn((2 if guided else 1) * batch, channels, height, width, generator=g)
    known = make_batch(batch, channels, height, width, seed=seed) * 2 - 1
    mask = (torch.rand(batch, 1, height, width, generator=g) > 0.5).float()
    coefs = torch.randn(batch, NUM_COEFS, generator=g)
    coefs[:, CLIP] = 0.75 if clip else float("inf")
    prev = torch.randn(batch, channels, height, width, generator=g)
    return x, pred, known, mask, coefs, sample_seeds(seed, batch), prev


def _bits(t):
    return t.contiguous().view(torch.int32)


@pytest.mark.parametrize("backend", backend_params("diffusion_step"))
@pytest.mark.parametrize("guided", [False, True])
def test_matches_reference_bitwise(backend, guided):
    name, device = backend
    for shape in SHAPES:
        for clip, use_prev in ((True, True), (False, False)):
            x, pred, known, mask, coefs, seeds, prev = _inputs(*shape, guided=guided, seed=shape[2], clip=clip)
            p = prev if use_prev else None
            exp = diffusion_step(x, pred, known, mask, coefs, seeds, 5, x0_prev=p, want_x0=True, backend="reference")
            dev = [t.to(device) for t in (x, pred, known, mask, coefs, seeds)]
            got = diffusion_step(*dev, 5, x0_prev=None if p is None else p.to(device), want_x0=True, backend=name)
            what = f"{name} {shape} guided={guided} clip={clip} prev={use_prev}"
            assert_verbose_equal(_bits(got[0].cpu()), _bits(exp[0]), f"{what} x_s")
            assert_verbose_equal(_bits(got[1].cpu()), _bits(exp[1]), f"{what} x0")
            assert diffusion_step(*dev, 5, backend=name)[1] is None


def test_reference_formula():
    x, pred, known, mask, coefs, seeds, prev = _inputs(2, 3, 6, 7, guided=True, clip=False)
    out, x0 = diffusion_step(x, pred, known, mask, coefs, seeds, 2, x0_prev=prev, want_x0=True, backend="reference")
    k = [coefs[:, i].view(2, 1, 1, 1) for i in range(NUM_COEFS)]
    e = pred[2:] + k[0] * (pred[:2] - pred[2:])
    torch.testing.assert_close(x0, k[1] * x + k[2] * e)
    # with KA = 1, KS = 0 the known region is the clean image exactly, whatever the noise
    coefs[:, KA], coefs[:, KS] = 1.0, 0.0
    out, _ = diffusion_step(x, pred, known, mask, coefs, seeds, 2, backend="reference")
    keep = mask.expand_as(x) < 0.5
    assert torch.equal(out[keep], known[keep])


def test_noise_is_standard_normal_and_fresh_per_step():
    b, c, h, w = 2, 3, 64, 64
    known = torch.zeros(b, c, h, w)
    coefs = torch.zeros(b, NUM_COEFS)
    coefs[:, KS] = 1.0  # out = z outside the (empty) mask
    seeds = sample_seeds(3, b)
    z0, _ = diffusion_step(known, known, known, torch.zeros(b, 1, h, w), coefs, seeds, 0)
    z1, _ = diffusion_step(known, known, known, torch.zeros(b, 1, h, w), coefs, seeds, 1)
    assert abs(z0.mean()) < 0.03 and abs(z0.std() - 1) < 0.03
    assert abs(torch.corrcoef(torch.stack((z0.flatten(), z1.flatten())))[0, 1]) < 0.02
    assert abs(torch.corrcoef(torch.stack((z0[0].flatten(), z0[1].flatten())))[0, 1]) < 0.03


@pytest.mark.parametrize("backend", backend_params("diffusion_step", include_reference=True))
def test_batch_split_and_threads_do_not_change_results(backend):
    name, device = backend
    x, pred, known, mask, coefs, seeds, prev = _inputs(3, 3, 9, 11, guided=False)
    args = [t.to(device) for t in (x, pred, known, mask, coefs, seeds)]
    torch.set_num_threads(2)
    full, _ = diffusion_step(*args, 4, backend=name)
    torch.set_num_threads(1)
    one, _ = diffusion_step(*args, 4, backend=name)
    assert torch.equal(full, one)
    for i in range(3):
        part, _ = diffusion_step(*(t[i : i + 1] for t in args), 4, backend=name)
        assert torch.equal(part, full[i : i + 1])


def test_bad_input_raises():
    x, pred, known, mask, coefs, seeds, prev = _inputs(2, 3, 5, 6)
    with pytest.raises(ValueError, match="pred must have shape"):
        diffusion_step(x, pred[:, :2], known, mask, coefs, seeds, 0)
    with pytest.raises(ValueError, match="pred must have shape"):
        diffusion_step(x, torch.cat((pred, pred, pred)), known, mask, coefs, seeds, 0)
    with pytest.raises(ValueError, match="mask must have shape"):
        diffusion_step(x, pred, known, mask[..., :3], coefs, seeds, 0)
    with pytest.raises(ValueError, match="coefs must have shape"):
        diffusion_step(x, pred, known, mask, coefs[:, :4], seeds, 0)
    with pytest.raises(TypeError, match="x must be float32"):
        diffusion_step(x.double(), pred, known, mask, coefs, seeds, 0)
    with pytest.raises(TypeError, match="seeds must have dtype"):
        diffusion_step(x, pred, known, mask, coefs, seeds.float(), 0)
    with pytest.raises(ValueError, match="step must be an int"):
        diffusion_step(x, pred, known, mask, coefs, seeds, -1)
    with pytest.raises(ValueError, match="32-bit noise counter"):
        diffusion_step(x, pred, known, mask, coefs, seeds, 2**32 // 90)


def test_triton_kernel_compiles_without_fma_or_division():
    from anofast._kernels.diffusion_step import _step_kernel

    sig = {n: "*fp32" for n in ("out_ptr", "x0_out_ptr", "x_ptr", "pred_ptr", "known_ptr", "mask_ptr", "coefs_ptr",
                                "x0_prev_ptr", "table_ptr")}  # fmt: skip
    sig |= {"seeds_ptr": "*i64", "batch": "i32", "numel": "i32", "hw": "i32", "step": "i32", "salt": "i32"}
    ptx = compile_ptx_for_cuda(_step_kernel, sig, {"GUIDED": True, "HAS_PREV": True, "WANT_X0": True, "BLOCK": 256})
    assert_exact_ptx(ptx)
