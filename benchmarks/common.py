"""Shared harness for ``benchmarks/bench_<op>.py``: the backend matrix, timing, metadata and output.

A bench script defines ``CASES`` (dicts with at least ``batch``; ``height``/``width`` where they apply) and
``make_fn(case, backend, device) -> zero-arg callable`` that does the timed work only (inputs and parameters
are built in ``make_fn``, outside the timed region), then calls ``main(op, CASES, make_fn)``.

Timing is ``torch.utils.benchmark.Timer.blocked_autorange``: it synchronises CUDA and reports the median and
IQR over many blocks, never a single call. See benchmarks/README.md for the methodology.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import importlib
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.utils.benchmark as tbench

from anofast._dispatch import BACKENDS, implemented, usable

MakeFn = Callable[[dict, str, torch.device], Callable[[], object]]

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
CSV_COLUMNS = (
    "op", "backend", "device", "threads", "dtype", "batch", "height", "width", "extra", "median_us", "iqr_us",
    "images_per_s", "speedup_vs_reference", "anofast_version", "git_commit", "device_name", "timestamp",
)  # fmt: skip
# Rows with the same values in these columns describe the same measurement (``--overwrite`` replaces them).
CSV_KEY = ("op", "backend", "device", "threads", "dtype", "batch", "height", "width", "extra", "device_name")
DEFAULT_THREADS = (1, 2)
_SESSION: list[dict] = []  # every result of this process: a script calling main() per op writes one JSON


@dataclass(frozen=True)
class Config:
    """One cell of the backend matrix: a backend on a device at a thread count."""

    backend: str
    device: torch.device
    threads: int

    @property
    def id(self) -> str:
        return f"{self.backend}-{self.device.type}-t{self.threads}"


def matrix(op: str, backends: Iterable[str] | None = None, threads: Sequence[int] = DEFAULT_THREADS) -> list[Config]:
    """The usable (backend, device, threads) cells for ``op``, reference first.

    reference runs on the CPU (at the largest thread count) and on CUDA if present; cpp on the CPU at every
    count in ``threads``; triton on CUDA only (the CPU interpreter is a correctness tool, not a backend to time).
    ``op``'s module must be imported first so that its implementations are registered.
    """
    wanted = set(backends) if backends is not None else None
    most = max(threads)
    cells = []
    # A composite benchmark (a generator, not a registered op) runs on every backend, forced for all its ops.
    for backend in implemented(op) or BACKENDS:
        if wanted is not None and backend not in wanted:
            continue
        if backend == "reference":
            cands = [Config(backend, torch.device("cpu"), most), Config(backend, torch.device("cuda"), most)]
        elif backend == "cpp":
            cands = [Config(backend, torch.device("cpu"), t) for t in threads]
        else:
            cands = [Config(backend, torch.device("cuda"), most)]
        cells += [c for c in cands if c.device.type != "cuda" or torch.cuda.is_available()]
    return [c for c in cells if usable(c.backend, c.device)[0]]


def case_label(case: dict) -> str:
    """A short readable name for a case: ``b32 256x256 k=v``."""
    parts = [f"b{case['batch']}"]
    if "height" in case and "width" in case:
        parts.append(f"{case['height']}x{case['width']}")
    parts += [f"{k}={v}" for k, v in case.items() if k not in ("batch", "height", "width")]
    return " ".join(parts)


def time_fn(fn: Callable[[], object], threads: int, min_run_time: float) -> tbench.Measurement:
    """Median/IQR timing of ``fn()`` at ``threads`` torch threads (the Timer would otherwise force 1)."""
    torch.set_num_threads(threads)
    fn()  # warm-up outside the measurement: Triton compiles, lazy imports and caches fill here
    return tbench.Timer(stmt="fn()", globals={"fn": fn}, num_threads=threads).blocked_autorange(
        min_run_time=min_run_time
    )


def _run(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _extension_info() -> dict:
    """What the C++ extension reports about its build (None where it cannot tell)."""
    try:
        ext = importlib.import_module("anofast._C")
    except ImportError as exc:
        return {"cpp_available": False, "cpp_error": str(exc), "has_openmp": None}
    info = {"cpp_available": True, "has_openmp": bool(ext.has_openmp())}
    info["build_flags"] = str(getattr(ext, "build_flags", ""))
    info["native_build"] = "-march=native" in info["build_flags"]
    return info


def device_name(device: torch.device) -> str:
    """The GPU's name for CUDA devices, else the CPU model."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()


def metadata(packages: Sequence[str] = ()) -> dict:
    """Machine, software and build facts to store beside every result.

    Args:
        packages: extra distributions whose versions to record (e.g. ``("anomalib", "torchvision")``).
    """
    commit = _run(["git", "rev-parse", "HEAD"])
    versions = {p: _version(p) for p in ("anofast", "torch", "triton", "numpy", *packages)}
    return {
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": commit or None,
        "git_dirty": bool(_run(["git", "status", "--porcelain", "--untracked-files=no"])) if commit else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_num_threads": torch.get_num_threads(),
        # above the CPU count, other tenants shared the machine (multi-thread timings then suffer most)
        "load_average": list(os.getloadavg()),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "versions": versions,
        "build": _extension_info(),
        "env": {k: v for k, v in os.environ.items() if k.startswith(("ANOFAST_", "OMP_", "TRITON_INTERPRET"))},
    }


def run_op(
    op: str,
    cases: Sequence[dict],
    make_fn: MakeFn,
    backends: Iterable[str] | None = None,
    threads: Sequence[int] = DEFAULT_THREADS,
    min_run_time: float = 1.0,
) -> list[dict]:
    """Times every case on every usable cell of ``op``'s matrix; one result dict per (case, cell)."""
    cells = matrix(op, backends, threads)
    saved = torch.get_num_threads()
    results = []
    try:
        for case in cases:
            rows = []
            for cell in cells:
                torch.set_num_threads(cell.threads)
                m = time_fn(make_fn(case, cell.backend, cell.device), cell.threads, min_run_time)
                rows.append(
                    {
                        "op": op,
                        "backend": cell.backend,
                        "device": cell.device.type,
                        "device_name": device_name(cell.device),
                        "threads": cell.threads,
                        "case": case_label(case),
                        "params": dict(case),
                        "median_ms": m.median * 1e3,
                        "iqr_ms": m.iqr * 1e3,
                        "images_per_s": case["batch"] / m.median if m.median > 0 else None,
                        "measurements": len(m.times),
                        "runs_per_measurement": m.number_per_run,
                    }
                )
            # The reference on the same device type is the baseline (CPU reference at the largest thread count).
            ref = {r["device"]: r["median_ms"] for r in rows if r["backend"] == "reference"}
            for r in rows:
                base = ref.get(r["device"])
                r["speedup_vs_reference"] = base / r["median_ms"] if base and r["median_ms"] > 0 else None
            results += rows
    finally:
        torch.set_num_threads(saved)
    return results


def _fmt(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "-"
    return f"{x:.{digits}g}" if abs(x) < 10 ** digits else f"{x:.0f}"


def markdown_table(results: Sequence[dict]) -> str:
    """The results as a GitHub markdown table."""
    head = "| op | backend | device | threads | case | median ms | IQR ms | images/s | speedup vs reference |"
    lines = [head, "|" + "---|" * 9]
    for r in results:
        lines.append(
            f"| {r['op']} | {r['backend']} | {r['device']} | {r['threads']} | {r['case']} | {_fmt(r['median_ms'])} "
            f"| {_fmt(r['iqr_ms'], 2)} | {_fmt(r['images_per_s'])} | {_fmt(r['speedup_vs_reference'], 3)} |"
        )
    return "\n".join(lines)


def _csv_row(r: dict, meta: dict) -> dict:
    p = r["params"]
    extra = {k: v for k, v in p.items() if k not in ("batch", "height", "width", "dtype")}
    return {
        "op": r["op"],
        "backend": r["backend"],
        "device": r["device"],
        "threads": str(r["threads"]),
        "dtype": str(p.get("dtype", "float32")),
        "batch": str(p["batch"]),
        "height": str(p.get("height", "")),
        "width": str(p.get("width", "")),
        "extra": json.dumps(extra, sort_keys=True) if extra else "",
        "median_us": f"{r['median_ms'] * 1e3:.1f}",
        "iqr_us": f"{r['iqr_ms'] * 1e3:.1f}",
        "images_per_s": f"{r['images_per_s']:.1f}" if r["images_per_s"] else "",
        "speedup_vs_reference": f"{r['speedup_vs_reference']:.2f}" if r["speedup_vs_reference"] else "",
        "anofast_version": meta["versions"]["anofast"] or "",
        "git_commit": meta["git_commit"] or "",
        "device_name": r["device_name"],
        "timestamp": meta["timestamp"],
    }


def append_csv(results: Sequence[dict], meta: dict, path: Path, overwrite: bool) -> None:
    """Appends rows to ``path``; with ``overwrite``, rows with the same key are replaced instead."""
    new = [_csv_row(r, meta) for r in results]
    old = []
    if path.exists():
        with path.open(newline="") as f:
            old = list(csv.DictReader(f))
    if overwrite:
        keys = {tuple(r[k] for k in CSV_KEY) for r in new}
        old = [r for r in old if tuple(r.get(k, "") for k in CSV_KEY) not in keys]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        w.writeheader()
        w.writerows(old + new)


def main(op: str, cases: list[dict], make_fn: MakeFn, argv: Sequence[str] | None = None) -> list[dict]:
    """Command-line entry of a bench script: times ``op`` over ``cases``, prints a table, optionally saves it."""
    ap = argparse.ArgumentParser(description=f"Benchmark anofast's {op} on every usable backend.")
    ap.add_argument("--json", type=Path, metavar="PATH", help="write {metadata, results} to PATH")
    ap.add_argument("--csv", action="store_true", help="append rows to benchmarks/results/all.csv")
    ap.add_argument("--overwrite", action="store_true", help="with --csv: replace rows with the same key")
    ap.add_argument("--quick", action="store_true", help="first two cases only, 0.1 s per measurement")
    ap.add_argument("--backends", help="comma-separated subset of reference,cpp,triton")
    ap.add_argument("--threads", default=",".join(map(str, DEFAULT_THREADS)), help="cpp thread counts (1,2)")
    ap.add_argument("--min-run-time", type=float, default=1.0, help="seconds per measurement (default 1)")
    args = ap.parse_args(argv)

    backends = args.backends.split(",") if args.backends else None
    threads = tuple(int(t) for t in args.threads.split(","))
    meta = metadata()
    results = run_op(
        op,
        cases[:2] if args.quick else cases,
        make_fn,
        backends=backends,
        threads=threads,
        min_run_time=0.1 if args.quick else args.min_run_time,
    )
    print(markdown_table(results))
    build = meta["build"]
    print(
        f"\n{meta['cpu_model']}, {meta['cpu_count']} CPUs, torch {meta['versions']['torch']}, "
        f"openmp={build['has_openmp']}, native={build.get('native_build')}, commit {meta['git_commit']}",
        file=sys.stderr,
    )
    _SESSION.extend(results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"metadata": meta, "results": _SESSION}, indent=2) + "\n")
    if args.csv:
        append_csv(results, meta, RESULTS / "all.csv", args.overwrite)
    return results
