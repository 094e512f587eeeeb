"""Test helpers shipped with the package: backend parametrization, tolerances, batch makers."""

from __future__ import annotations

import torch
from torch import Tensor

from anofast._dispatch import implemented, usable

# (rtol, atol) per op for float outputs compared with the reference. Integer / mask outputs are exact.
TOLERANCES: dict[str, tuple[float, float]] = {
    "default": (1.3e-6, 1e-5),
}


def tolerance(op: str) -> dict[str, float]:
    rtol, atol = TOLERANCES.get(op, TOLERANCES["default"])
    return {"rtol": rtol, "atol": atol}


def backend_params(op: str, include_reference: bool = False):
    """One ``pytest.param((backend, device))`` per implemented backend; unusable ones are skipped with why."""
    import pytest

    out = []
    for name in implemented(op):
        if name == "reference" and not include_reference:
            continue
        device = torch.device("cuda" if name == "triton" and torch.cuda.is_available() else "cpu")
        ok, why = usable(name, device)
        out.append(pytest.param((name, device), id=name, marks=pytest.mark.skipif(not ok, reason=why or "n/a")))
    return out


def make_batch(batch: int, channels: int, height: int, width: int, seed: int = 0) -> Tensor:
    """A smooth-plus-noise float32 image batch in [0, 1] (natural-ish statistics, deterministic)."""
    g = torch.Generator().manual_seed(seed)
    yy = torch.linspace(0, 1, height).view(1, 1, height, 1)
    xx = torch.linspace(0, 1, width).view(1, 1, 1, width)
    phase = torch.rand(batch, channels, 1, 1, generator=g) * 6.28
    base = 0.5 + 0.25 * torch.sin(6 * xx + phase) * torch.cos(4 * yy + phase)
    noise = 0.1 * torch.rand(batch, channels, height, width, generator=g)
    return (base + noise).clamp(0, 1).contiguous()


def assert_verbose_equal(actual: Tensor, expected: Tensor, what: str = "") -> None:
    """torch.equal, with the first mismatches printed."""
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    if torch.equal(actual, expected):
        return
    diff = (actual != expected).nonzero()[:5].tolist()
    raise AssertionError(
        f"{what}: {(actual != expected).sum().item()} elements differ; first at {diff}: "
        f"{[actual[tuple(i)].item() for i in diff]} vs {[expected[tuple(i)].item() for i in diff]}"
    )


def compile_ptx_for_cuda(kernel, signature: dict, constexprs: dict) -> str:
    """PTX of a Triton ``kernel`` compiled for sm_80 with FMA fusion off; needs triton, not a GPU."""
    import pytest

    triton = pytest.importorskip("triton")
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from triton.compiler.errors import CompilationError

    src = ASTSource(fn=kernel, signature={**signature, **dict.fromkeys(constexprs, "constexpr")}, constexprs=constexprs)
    try:
        compiled = triton.compile(src, target=GPUTarget("cuda", 80, 32), options={"enable_fp_fusion": False})
    except CompilationError:
        raise
    except Exception as exc:  # a missing toolchain piece (ptxas ...), not an error in the kernel
        pytest.skip(f"cannot compile for CUDA here: {exc}")
    return compiled.asm["ptx"]


def assert_exact_ptx(ptx: str) -> None:
    """Exactness needs plain IEEE float ops: no contracted multiply-add, no approximate reciprocal / division."""
    for op in ("fma.rn.f32", "mad.f32", "rcp.", "div.approx", "div.full", "div.rn.f32"):
        assert op not in ptx, op
