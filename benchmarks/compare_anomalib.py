"""Same-run comparison of anofast's Perlin generator with anomalib 2.7.0's ``PerlinAnomalyGenerator``.

Runs in the peer environment (``benchmarks/peers/setup_anomalib.sh`` creates it)::

    .venv-peers/bin/python benchmarks/compare_anomalib.py [--rounds 5] [--min-run-time 1.0] [--json PATH]

Every implementation gets the same (32, 3, 256, 256) float32 batch of real MVTec images and the same folder of
20 DTD textures (256², JPEG), on 2 threads. Rounds are interleaved (each round times every implementation once,
alternating which side of a pair goes first), and the reported figure is the median over rounds; a ratio is
the median of the per-round ratios, so slow phases of a shared machine hit both sides of a ratio alike.
Only the peer's public API is used (imported from the environment).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.utils.benchmark as tbench
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, RESULTS, cpu_model, metadata  # noqa: E402

BATCH, SIZE, N_TEXTURES = 32, 256, 20
DATA = REPO.parent / "shared" / "data"


@dataclass
class Entry:
    """One timed implementation of a case."""

    case: str
    impl: str
    side: str  # "peer", "anofast" or "baseline"
    fn: Callable[[], object]
    setup_s: float = 0.0
    ms: list[float] = field(default_factory=list)  # per-round medians


def load_images(data: Path) -> tuple[torch.Tensor, str]:
    """The input batch: MVTec hazelnut and leather good images, alternating, resized to 256² (bilinear)."""
    sets = [sorted((data / name).glob("*/good/*.png")) for name in ("mvtec_hazelnut_mini", "mvtec_leather_mini_256")]
    files = [f for f in itertools.chain.from_iterable(itertools.zip_longest(*sets)) if f is not None][:BATCH]
    if len(files) < BATCH:
        from anofast.testing import make_batch

        return make_batch(BATCH, 3, SIZE, SIZE), "anofast.testing.make_batch (MVTec samples not found)"
    arrays = [np.asarray(Image.open(f).convert("RGB").resize((SIZE, SIZE), Image.BILINEAR)) for f in files]
    batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div(255).contiguous()
    return batch, f"{len(files)} MVTec good images (hazelnut, leather) from {data}"


def write_textures(data: Path, out: Path) -> str:
    """20 DTD textures (two per class, sorted), resized to 256² (bicubic), written as JPEG (quality 95)."""
    classes = sorted(p for p in (data / "textures" / "dtd_subset").glob("*") if p.is_dir())
    per_class = -(-N_TEXTURES // max(1, len(classes)))
    files = [f for c in classes for f in sorted(c.glob("*.jpg"))[:per_class]][:N_TEXTURES]
    if len(files) < N_TEXTURES:
        raise FileNotFoundError(f"need {N_TEXTURES} DTD textures under {data / 'textures' / 'dtd_subset'}")
    for i, f in enumerate(files):
        img = Image.open(f).convert("RGB").resize((SIZE, SIZE), Image.BICUBIC)
        img.save(out / f"{i:02d}_{f.parent.name}.jpg", quality=95)
    return f"{len(files)} DTD textures ({len(classes)} classes), 256x256 JPEG q95"


def _timed_setup(make: Callable[[], object]) -> tuple[object, float]:
    t0 = time.perf_counter()
    obj = make()
    return obj, time.perf_counter() - t0


CASES = ("anomalib", "draem", "glass", "perlin")  # the baselines always run: every ratio to numpy.copyto needs them


def build_entries(images: torch.Tensor, textures: Path, cases: Sequence[str], peer_only: bool) -> list[Entry]:
    """Every (case, implementation) pair of the chosen cases; construction happens here, outside any timing."""
    from anomalib.data.utils.generators import PerlinAnomalyGenerator, generate_perlin_noise

    entries: list[Entry] = []
    seeds = itertools.count()  # a fresh seed per call: every call draws new anomalies, as the peer does

    def peer(case: str, **kw) -> None:
        gen, s = _timed_setup(lambda: PerlinAnomalyGenerator(anomaly_source_path=textures, **kw))
        entries.append(Entry(case, f"anomalib PerlinAnomalyGenerator({_kw(kw)})", "peer", lambda: gen(images), s))

    def ours(case: str, preset: str, **kw) -> None:
        import anofast

        if peer_only:
            return
        gen, s = _timed_setup(lambda: getattr(anofast.PerlinAnomaly, preset)(source=textures, **kw))
        name = f"anofast PerlinAnomaly.{preset}({_kw(kw)})"
        entries.append(Entry(case, name, "anofast", lambda: gen(images, seed=next(seeds)), s))

    if "anomalib" in cases:
        peer("anomalib default, p=1.0", probability=1.0)
        ours("anomalib default, p=1.0", "anomalib", p_anomaly=1.0)
        ours("anomalib default, p=1.0", "draem", p_anomaly=1.0)
    if "draem" in cases:
        peer("DRAEM config, p=0.5", blend_factor=(0.1, 1.0), probability=0.5)
        ours("DRAEM config, p=0.5", "draem")
    if "glass" in cases:
        peer("GLASS config, p=1.0, dual mask", probability=1.0, dual_mask=True)
        ours("GLASS config, p=1.0, dual mask", "glass")
    if "perlin" in cases:
        case, cpu = "Perlin noise/mask x32", torch.device("cpu")
        entries.append(
            Entry(case, "anomalib generate_perlin_noise(256, 256) x32", "peer",
                  lambda: [generate_perlin_noise(SIZE, SIZE, device=cpu) for _ in range(BATCH)])
        )  # fmt: skip
        if not peer_only:
            from anofast import sample_seeds
            from anofast.ops.perlin import perlin_mask, perlin_noise, sample_perlin_params

            def mask() -> object:  # parameters are drawn inside the timing, as the peer draws its own
                return perlin_mask(sample_perlin_params(sample_seeds(next(seeds), BATCH)), (SIZE, SIZE))

            def noise() -> object:
                return perlin_noise(sample_perlin_params(sample_seeds(next(seeds), BATCH)), (SIZE, SIZE))

            entries.append(Entry(case, "anofast sample_perlin_params + perlin_mask (rotated, thresholded)",
                                 "anofast", mask))  # fmt: skip
            entries.append(Entry(case, "anofast sample_perlin_params + perlin_noise", "anofast", noise))

    case = "memory-bound baselines"
    src = images.numpy()
    dst = np.empty_like(src)
    entries.append(Entry(case, "numpy.copyto", "baseline", lambda: np.copyto(dst, src)))
    entries.append(Entry(case, "torch clone", "baseline", images.clone))
    return entries


def _kw(kw: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kw.items())


def run(entries: list[Entry], rounds: int, min_run_time: float, threads: int) -> list[tuple[float, float]]:
    """Interleaved rounds: each round times every entry once; odd rounds reverse the order within a case.

    Returns the 1-minute load average at the start and end of each round: a load above the thread count
    means another tenant shared the CPUs (its OpenMP barriers then stall, which hurts many small ops most).
    """
    for e in entries:  # warm-up: lazy imports, caches, pool resizing
        e.fn()
    cases = list(dict.fromkeys(e.case for e in entries))
    load = []
    for r in range(rounds):
        start = os.getloadavg()[0]
        for case in cases:
            group = [e for e in entries if e.case == case]
            for e in group if r % 2 == 0 else group[::-1]:
                timer = tbench.Timer(stmt="fn()", globals={"fn": e.fn}, num_threads=threads)
                e.ms.append(timer.blocked_autorange(min_run_time=min_run_time).median * 1e3)
        load.append((start, os.getloadavg()[0]))
        print(f"round {r + 1}/{rounds} done, load average {start:.2f} -> {load[-1][1]:.2f}", file=sys.stderr)
    return load


def summarise(entries: list[Entry]) -> list[dict]:
    """Median images/s per entry and median per-round ratios vs the case's peer and vs numpy.copyto."""
    copy = next(e for e in entries if e.impl == "numpy.copyto")
    rows = []
    for e in entries:
        peer = next((p for p in entries if p.case == e.case and p.side == "peer"), None)

        def ratio(other: Entry | None) -> float | None:
            # other/e time = e's images/s over other's images/s, per round, then the median
            if other is None or other is e:
                return None
            return statistics.median(o / m for o, m in zip(other.ms, e.ms, strict=True))

        med = statistics.median(e.ms)
        rows.append(
            {
                "case": e.case,
                "impl": e.impl,
                "side": e.side,
                "median_ms": med,
                "min_ms": min(e.ms),
                "max_ms": max(e.ms),
                "round_ms": e.ms,
                "images_per_s": BATCH / med * 1e3,
                "ratio_vs_peer": ratio(peer) if e.side == "anofast" else None,
                # min/min: interference from other tenants only adds time, so the fastest rounds bound both sides
                "ratio_vs_peer_best": min(peer.ms) / min(e.ms) if peer is not None and e.side == "anofast" else None,
                "ratio_vs_numpy_copy": ratio(copy),
                "setup_s": e.setup_s,
            }
        )
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| case | implementation | images/s | median ms (min-max over rounds) | vs peer | vs peer, fastest rounds "
        "| vs numpy.copyto |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        vs_peer = f"{r['ratio_vs_peer']:.1f}x" if r["ratio_vs_peer"] is not None else "-"
        best = f"{r['ratio_vs_peer_best']:.1f}x" if r["ratio_vs_peer_best"] is not None else "-"
        vs_copy = f"{r['ratio_vs_numpy_copy']:.3f}" if r["ratio_vs_numpy_copy"] is not None else "-"
        lines.append(
            f"| {r['case']} | {r['impl']} | {r['images_per_s']:.1f} "
            f"| {r['median_ms']:.2f} ({r['min_ms']:.2f}-{r['max_ms']:.2f}) | {vs_peer} | {best} | {vs_copy} |"
        )
    return "\n".join(lines)


def _machine_slug() -> str:
    return f"{re.sub(r'[^a-z0-9]+', '-', cpu_model().lower()).strip('-')}-{os.cpu_count()}cpu"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    ap.add_argument("--min-run-time", type=float, default=1.0, help="seconds per measurement (default 1.0)")
    ap.add_argument("--data", type=Path, default=DATA, help=f"shared data folder (default {DATA})")
    ap.add_argument("--json", type=Path, help="output (default benchmarks/results/<version>/compare_anomalib--...)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for both sides (default 2)")
    ap.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of {','.join(CASES)}")
    ap.add_argument("--peer-only", action="store_true", help="time only anomalib and the baselines")
    args = ap.parse_args(argv)

    cases = args.cases.split(",")
    if not set(cases) <= set(CASES):
        ap.error(f"--cases: expected a subset of {','.join(CASES)}, got {args.cases!r}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)  # anomalib draws from torch's global RNG
    images, images_desc = load_images(args.data)
    with tempfile.TemporaryDirectory(prefix="anofast-textures-") as tmp:
        textures_desc = write_textures(args.data, Path(tmp))
        entries = build_entries(images, Path(tmp), cases, args.peer_only)
        load = run(entries, args.rounds, args.min_run_time, args.threads)
    rows = summarise(entries)
    print(table(rows))

    meta = metadata(packages=("anomalib", "torchvision"))
    meta.update(
        threads=args.threads, rounds=args.rounds, min_run_time_s=args.min_run_time, batch=[BATCH, 3, SIZE, SIZE],
        inputs=images_desc, textures=textures_desc, load_average_per_round=load,
        command=" ".join([Path(sys.executable).name, *sys.argv]),
    )  # fmt: skip
    name = f"compare_anomalib--{_machine_slug()}--t{args.threads}.json"
    out = args.json or RESULTS / meta["versions"]["anofast"] / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"metadata": meta, "results": rows}, indent=2) + "\n")
    print(f"\nwrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
