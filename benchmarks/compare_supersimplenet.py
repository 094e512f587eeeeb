"""Same-run comparison of ``FeatureNoise.supersimplenet()`` with anomalib 2.7.0's SuperSimpleNet ``AnomalyGenerator``.

Runs in the peer environment (``benchmarks/peers/setup_anomalib.sh`` creates it)::

    .venv-peers/bin/python benchmarks/compare_supersimplenet.py [--rounds 3] [--threads 2] [--json PATH] \
        [--anofast-python python] [--impls anomalib,anofast,...] [--peer-json EARLIER.json]

Both get the same (32, 1536, 64, 64) float32 adapted features (SuperSimpleNet's default: 256² input, 1536 dims,
feature grid 64²), empty real-anomaly masks and zero labels, and both return the duplicated batch of 64 noisy
feature maps with their feature-grid masks and labels. Each implementation runs in its own subprocess (one after
the other, never in parallel), so that its peak resident memory (``ru_maxrss``, input included) is its own;
images/s counts input images (32 per call). Only anomalib's public class is used.

Rows:
- ``anomalib AnomalyGenerator(0, 0.015, 0.2)``: the peer (``forward(None, features, masks, labels)``).
- ``anofast FeatureNoise.supersimplenet()``: the same work (returns a fresh (64, ...) tensor).
- ``anofast ..., out=``: the same work, written into one (64, ...) buffer reused across calls, as a training loop
  can (no first-touch page faults on 1.5 GiB per call).
- ``anofast ..., features = out[:32]``: the same work with one (64, ...) buffer and no separate input: the features
  are written into its first half (here by ``normal_``, untimed, before every call, as a backbone / adaptor would
  write them), and the op fills the second copy and adds the first copy's noise in place. The process holds the
  1.5 GiB duplicated batch and nothing else of that size.
- ``anofast ... inplace on the duplicated batch``: the noise written in place into a (64, ...) batch that already
  holds both copies (for a pipeline whose backbone produces the duplicated batch); not the same work as the peer,
  shown separately.

``THP_MEM_ALLOC_ENABLE=1`` in the environment (a PyTorch setting: large CPU tensors on transparent huge pages) is
passed on to every worker; it changes the first-touch cost of fresh tensors for both sides.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import metadata  # noqa: E402

SHAPE = (32, 1536, 64, 64)
IMPLS = ("anomalib", "anofast", "anofast-out", "anofast-alias", "anofast-inplace")
NAMES = {
    "anomalib": "anomalib AnomalyGenerator(0, 0.015, 0.2)",
    "anofast": "anofast FeatureNoise.supersimplenet()",
    "anofast-out": "anofast FeatureNoise.supersimplenet(), out= a buffer reused across calls",
    "anofast-alias": "anofast FeatureNoise.supersimplenet(), features = out[:32] (one buffer, no separate input)",
    "anofast-inplace": "anofast FeatureNoise.supersimplenet(copies=1), inplace on the duplicated batch",
}


def worker(impl: str, rounds: int, threads: int) -> dict:
    """Times ``rounds`` calls of one implementation (after one warm-up call) in this process."""
    torch.set_num_threads(threads)
    b, _, h, w = SHAPE
    refill = None  # untimed work before each call
    if impl == "anofast-alias":
        buf = torch.empty((2 * b, *SHAPE[1:]))
        features = buf[:b]
        gen = torch.Generator().manual_seed(0)

        def refill() -> None:  # the backbone's next features, written into the first half
            features.normal_(generator=gen)
    else:
        features = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    if impl == "anomalib":
        from anomalib.models.image.supersimplenet.anomaly_generator import AnomalyGenerator

        gen = AnomalyGenerator(noise_mean=0, noise_std=0.015, threshold=0.2)
        masks, labels = torch.zeros(b, 1, h, w), torch.zeros(b)

        def call(i: int) -> object:
            return gen(None, features, masks, labels)
    elif impl == "anofast-alias":
        from anofast import FeatureNoise

        ours = FeatureNoise.supersimplenet()

        def call(i: int) -> object:
            return ours(features, seed=i, out=buf)
    elif impl in ("anofast", "anofast-out"):
        from anofast import FeatureNoise

        ours = FeatureNoise.supersimplenet()
        buf = torch.empty((2 * b, *SHAPE[1:])) if impl == "anofast-out" else None

        def call(i: int) -> object:
            return ours(features, seed=i, out=buf)
    else:
        from anofast import FeatureNoise

        ours = FeatureNoise.supersimplenet(copies=1)
        features = torch.cat((features, features))  # the duplicated batch replaces the input (no extra copy kept)

        def call(i: int) -> object:
            return ours(features, seed=i, inplace=True)

    # RSS before the first call: the input (and the buffer, for "anofast-out") and the interpreter with torch.
    with open("/proc/self/statm") as fh:
        rss_before = int(fh.read().split()[1]) * resource.getpagesize() / 2**30
    times = []
    for i in range(rounds + 1):
        if refill is not None:
            refill()
        t0 = time.perf_counter()
        out = call(i)
        dt = time.perf_counter() - t0
        del out
        if i:  # the first call is a warm-up (lazy imports, extension load)
            times.append(dt)
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"impl": impl, "seconds": times, "peak_rss_gib": rss_kib / 2**20, "rss_before_gib": rss_before}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="timed calls per implementation (default 3)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--impls", default=",".join(IMPLS), help=f"subset of {','.join(IMPLS)}")
    ap.add_argument("--json", type=Path, help="write {metadata, results} here")
    ap.add_argument("--peer-json", type=Path, help="take the anomalib row from this earlier --json (not re-run)")
    ap.add_argument("--anofast-python", help="interpreter for the anofast rows (default: this one). anofast's own "
                    "environment has the CPU build of torch, whose import takes ~0.2 GiB of RSS where the peer "
                    "environment's CUDA build takes ~0.5 GiB: this changes the peak-memory ratio, not the work")
    ap.add_argument("--worker", choices=IMPLS, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.rounds, args.threads)))
        return

    results = {}
    if args.peer_json:
        results["anomalib"] = json.loads(args.peer_json.read_text())["results"]["anomalib"]
    for impl in args.impls.split(","):
        python = sys.executable if impl == "anomalib" else (args.anofast_python or sys.executable)
        cmd = [python, __file__, "--worker", impl, "--rounds", str(args.rounds), "--threads", str(args.threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        r["python"] = python
        r["torch"] = subprocess.run([python, "-c", "import torch; print(torch.__version__)"], capture_output=True,
                                    text=True).stdout.strip()
        r["median_s"] = statistics.median(r["seconds"])
        r["images_per_s"] = SHAPE[0] / r["median_s"]
        results[impl] = r
        print(f"{NAMES[impl]:<90} {r['median_s'] * 1e3:9.1f} ms/call  {r['images_per_s']:8.1f} images/s  "
              f"peak RSS {r['peak_rss_gib']:.2f} GiB (before the first call {r['rss_before_gib']:.2f})", flush=True)
    peer = results.get("anomalib")
    if peer:
        for impl, r in results.items():
            if impl != "anomalib":
                r["speedup_vs_anomalib"] = peer["median_s"] / r["median_s"]
                r["memory_fraction_of_anomalib"] = r["peak_rss_gib"] / peer["peak_rss_gib"]
                # what the generator itself adds on top of what the process held before its first call
                peer_before = peer.get("rss_before_gib", r["rss_before_gib"])  # older peer JSONs lack it: same input
                grow = (r["peak_rss_gib"] - r["rss_before_gib"]) / (peer["peak_rss_gib"] - peer_before)
                r["memory_growth_fraction_of_anomalib"] = grow
                print(f"{NAMES[impl]}: {r['speedup_vs_anomalib']:.1f}x anomalib's speed, "
                      f"{r['memory_fraction_of_anomalib']:.2f} of its peak memory, {grow:.2f} of its growth")
    if args.json:
        meta = metadata(("anomalib",))
        meta.update(shape=list(SHAPE), rounds=args.rounds, threads=args.threads,
                    thp_mem_alloc_enable=os.environ.get("THP_MEM_ALLOC_ENABLE", ""))
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"metadata": meta, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
