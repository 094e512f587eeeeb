"""``anofast eval``: the benchmark protocol from the command line (registered by :mod:`anofast.cli`)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_GENERATORS = "perlin:draem,perlin:anomalib,perlin:glass"


def add_parser(sub: Any, positive: Any) -> None:
    """Adds the ``eval`` sub-command to the ``anofast`` parser's sub-parsers ``sub``."""
    from anofast.eval.protocol import EvalConfig

    d = EvalConfig()
    p = sub.add_parser(
        "eval", help="score generators on real defects (downstream detection, mask fidelity, realism, diversity)",
        description="Trains a small detector (frozen EfficientNet-Lite0 features + a SuperSimpleNet-like head) on the "
        "normal training images of an MVTec-layout folder plus each generator's anomalies, evaluates it on the real "
        "test defects (the first third of each defect type is reserved for few-shot generators and not evaluated), "
        "compares with a kNN baseline, and writes results.json, report.md, bars.png, curves.png and "
        "gallery/index.html into --out.")
    p.add_argument("--data", required=True, metavar="DIR",
                   help="MVTec-layout folder: train/good, test/<defect>, ground_truth/<defect>/<stem>_mask.png")
    p.add_argument("--generators", default=DEFAULT_GENERATORS, metavar="LIST",
                   help="comma-separated generator names of `anofast generate --method`, optionally name:preset "
                   "(default: %(default)s)")
    p.add_argument("--seeds", type=positive, default=d.seeds, metavar="N", help="seeds 0..N-1 (default: %(default)s)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--size", type=positive, default=d.size, metavar="S",
                   help="images are resized to SxS (default: %(default)s)")
    p.add_argument("--synthetic", type=positive, default=d.n_synthetic, metavar="N",
                   help="synthetic images per generator and seed (default: %(default)s)")
    p.add_argument("--steps", type=positive, default=d.steps, metavar="N",
                   help="training steps of the head (default: %(default)s)")
    p.add_argument("--batch-size", type=positive, default=d.batch_size, metavar="B",
                   help="head batch, half normal and half synthetic (default: %(default)s)")
    p.add_argument("--bank-size", type=positive, default=d.bank_size, metavar="N",
                   help="memory-bank features of the kNN baseline (default: %(default)s)")
    p.add_argument("--source", metavar="DIR", help="anomaly-source textures for generators that take one")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    """Runs :func:`anofast.eval.protocol.run_eval` and writes the report."""
    from anofast.cli import CLIError
    from anofast.eval.dataset import LayoutError
    from anofast.eval.downstream import GeneratorOutputError
    from anofast.eval.protocol import EvalConfig, run_eval
    from anofast.eval.report import best_generator, write_report

    t0 = time.perf_counter()
    names = [g.strip() for g in args.generators.split(",") if g.strip()]
    if not names:
        raise CLIError("--generators is empty")
    config = EvalConfig(seeds=args.seeds, size=args.size, n_synthetic=args.synthetic, steps=args.steps,
                        batch_size=args.batch_size, bank_size=args.bank_size, source=args.source)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {out} exists and is not a folder")
    try:
        results, artefacts = run_eval(args.data, names, config)
    except (LayoutError, GeneratorOutputError, ImportError, ValueError) as e:  # bad data, generator or setting
        raise CLIError(str(e)) from None
    paths = write_report(results, artefacts, out)
    best = best_generator(results)
    line = f"; best {best[0]} ({best[1]:+.3f} image AUROC over the kNN baseline)" if best else ""
    print(f"anofast eval: {len(names)} generator(s) x {args.seeds} seed(s) in {time.perf_counter() - t0:.0f} s{line}\n"
          f"  {paths['report']}\n  {paths['gallery']}", file=sys.stdout)
    return 0
