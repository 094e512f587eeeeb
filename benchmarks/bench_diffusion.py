"""Benchmark of the fused diffusion sampler step, and of the sampler loop's overhead per step without a network.

``python benchmarks/bench_diffusion.py`` times the ``diffusion_step`` op on every backend (common.main);
``--compare`` adds a same-run, interleaved comparison with the same step written as separate torch ops (the way
a diffusers-style pipeline does it: guidance combine, x0 estimate, scheduler update, ``torch.randn`` noise,
``add_noise`` of the known region, mask blend) and the sampler overhead per step (``run_sampler`` with a model that
returns a precomputed tensor, divided by the step count).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import torch

from anofast import sample_seeds
from anofast.diffusion import NoiseSchedule, plan, run_sampler
from anofast.ops.diffusion_step import diffusion_step
from anofast.reference.diffusion_step import G
from anofast.testing import make_batch

CASES = [
    {"batch": 32, "channels": 3, "height": 256, "width": 256, "guided": True},
    {"batch": 32, "channels": 4, "height": 64, "width": 64, "guided": True},
]
SCHED = NoiseSchedule.linear()


def _inputs(case: dict, device: torch.device):
    b, c, h, w = case["batch"], case["channels"], case["height"], case["width"]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(b, c, h, w, generator=g).to(device)
    pred = torch.randn((2 if case["guided"] else 1) * b, c, h, w, generator=g).to(device)
    known = (make_batch(b, c, h, w) * 2 - 1).to(device)
    mask = torch.zeros(b, 1, h, w)
    mask[..., h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = 1
    st = plan(SCHED, 20, "ddim", eta=1.0)[5]  # a stochastic mid-trajectory DDIM step
    coefs = torch.tensor(st.coefs, dtype=torch.float32).repeat(b, 1)
    coefs[:, G] = 3.0
    return x, pred, known, mask.to(device), coefs.to(device), sample_seeds(0, b).to(device), st


def make_fn(case: dict, backend: str, device: torch.device):
    x, pred, known, mask, coefs, seeds, _ = _inputs(case, device)
    return lambda: diffusion_step(x, pred, known, mask, coefs, seeds, 6, backend=backend)


def make_torch_ops(case: dict):
    """The same DDIM step as separate torch ops (noise from torch.randn, as a diffusers pipeline draws it)."""
    x, pred, known, mask, coefs, seeds, st = _inputs(case, torch.device("cpu"))
    b = x.shape[0]
    ab_t, ab_s = SCHED.abar(st.t), SCHED.abar(st.s)
    var = (1 - ab_s) / (1 - ab_t) * (1 - ab_t / ab_s)
    g = coefs[:, G].view(b, 1, 1, 1)

    def step():
        cond, uncond = pred[:b], pred[b:]
        eps = uncond + g * (cond - uncond)
        x0 = (x - (1 - ab_t) ** 0.5 * eps) / ab_t**0.5
        xs = ab_s**0.5 * x0 + (1 - ab_s - var) ** 0.5 * eps + var**0.5 * torch.randn_like(x)
        kn = ab_s**0.5 * known + (1 - ab_s) ** 0.5 * torch.randn_like(known)
        return mask * xs + (1 - mask) * kn

    return step


def make_sampler_loop(case: dict, steps: int = 10):
    x, pred, known, mask, coefs, seeds, _ = _inputs(case, torch.device("cpu"))
    cond = torch.zeros(x.shape[0], 1)

    def model(xt, t, c):  # no network: a precomputed prediction
        return pred

    return lambda: run_sampler(model, known, mask, seeds, schedule=SCHED, steps=steps, sampler="dpmpp2m",
                               guidance=coefs[:, G], cond=cond, null_cond=cond)  # fmt: skip


def compare(rounds: int, threads: int, min_run_time: float) -> dict:
    """Interleaved rounds: fused cpp step, torch ops step, sampler loop per step; medians and per-round ratios."""
    from common import metadata, time_fn

    out: dict = {"metadata": metadata(), "threads": threads, "rounds": rounds, "cases": []}
    for case in CASES:
        fused, ops = make_fn(case, "cpp", torch.device("cpu")), make_torch_ops(case)
        loop = make_sampler_loop(case, steps=10)
        rows: dict[str, list[float]] = {"fused_ms": [], "torch_ops_ms": [], "sampler_per_step_ms": [], "load": []}
        for r in range(rounds):
            order = [("fused_ms", fused), ("torch_ops_ms", ops)]
            for name, fn in order if r % 2 == 0 else order[::-1]:
                rows[name].append(time_fn(fn, threads, min_run_time).median * 1e3)
            rows["sampler_per_step_ms"].append(time_fn(loop, threads, min_run_time).median * 1e3 / 10)
            rows["load"].append(os.getloadavg()[0])
        ratios = [o / f for o, f in zip(rows["torch_ops_ms"], rows["fused_ms"], strict=True)]
        res = {
            "case": case,
            **{k: statistics.median(v) for k, v in rows.items() if k != "load"},
            "ratio_torch_ops_over_fused": statistics.median(ratios),
            "per_round": rows,
        }
        res["overhead_per_step_ms"] = res["sampler_per_step_ms"] - res["fused_ms"]
        out["cases"].append(res)
        print(f"{case}: fused {res['fused_ms']:.2f} ms, torch ops {res['torch_ops_ms']:.2f} ms "
              f"(x{res['ratio_torch_ops_over_fused']:.2f}), sampler per step {res['sampler_per_step_ms']:.2f} ms, "
              f"load {rows['load']}")  # fmt: skip
    return out


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    if "--compare" in sys.argv:
        ap = argparse.ArgumentParser()
        ap.add_argument("--compare", action="store_true")
        ap.add_argument("--rounds", type=int, default=3)
        ap.add_argument("--threads", type=int, default=2)
        ap.add_argument("--min-run-time", type=float, default=0.5)
        ap.add_argument("--json", type=Path)
        a = ap.parse_args()
        result = compare(a.rounds, a.threads, a.min_run_time)
        if a.json:
            a.json.write_text(json.dumps(result, indent=2) + "\n")
    else:
        from common import main

        main("diffusion_step", CASES, make_fn)
