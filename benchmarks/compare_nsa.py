"""Same-run comparison of anofast's NSA generator with the original NSA code (hmsch/natural-synthetic-anomalies).

The original ``patch_ex`` needs OpenCV, which anofast does not depend on; run this in an environment that has it
(the anomalib peer environment does) and point ``--nsa-path`` at a checkout of the original code outside the
repository::

    git clone https://github.com/hmsch/natural-synthetic-anomalies ../peers/natural-synthetic-anomalies
    .venv-peers/bin/python benchmarks/compare_nsa.py [--rounds 5] [--json PATH] [--anofast-python python]

Both sides get the same 32 images of 256x256 (MVTec hazelnut from ../shared/data when present, else synthetic) and
NSA's "Shift" setting: Poisson NORMAL_CLONE, gamma (2, 0.05, 0.03) half-widths in [0.03, 0.4], 3 patches, resize
(0.7, 1.3), binary label with tol 1, patches from the previous image (``same=False``), no background masks. The
original runs one image at a time (as in its DataLoader workers, each worker single-threaded); anofast runs the batch
on 2 threads. Rounds alternate which side goes first; a ratio is the median of the per-round ratios.

``--setting hazelnut-train`` uses the settings NSA's ``train_mvtec.py`` trains hazelnut with ("Shift-Intensity":
object masks by ``skip_background=(20, 20)``, rejection loops, the logistic soft label): on the anofast side
``NaturalSynthetic.nsa_mvtec("hazelnut")``. That is the setting of the original's 37-98 images/s on these machines
(plain "Shift" runs faster than that). Both sides compute the object masks by NSA's rule in every call; with
``--foreground estimate`` anofast uses ``anofast.foreground.estimate`` instead (in every call), with ``cached`` that
estimate made once before timing, as a data set that caches each image's foreground would.

``--anofast-python PY`` runs the anofast side in a worker process of that interpreter (anofast's own environment,
e.g. ``python``: the peer environment's torch build is not the one anofast pins); the rounds still interleave.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, RESULTS, metadata  # noqa: E402

BATCH, SIZE = 32, 256
DATA = REPO.parent / "shared" / "data" / "mvtec_hazelnut_mini" / "train"


def load_images() -> tuple[np.ndarray, str]:
    """(32, 256, 256, 3) uint8 images and where they came from."""
    from PIL import Image

    files = sorted(p for p in DATA.rglob("*.png"))[:BATCH] if DATA.is_dir() else []
    if len(files) == BATCH:
        ims = [np.asarray(Image.open(f).convert("RGB").resize((SIZE, SIZE), Image.BILINEAR)) for f in files]
        return np.stack(ims), str(DATA)
    from anofast.testing import make_batch

    x = (make_batch(BATCH, 3, SIZE, SIZE) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return np.ascontiguousarray(x), "anofast.testing.make_batch (synthetic)"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    ap.add_argument("--nsa-path", default=os.environ.get("NSA_PATH", str(Path(__file__).resolve().parents[2] / "peers" / "natural-synthetic-anomalies")),
                    help="checkout of hmsch/natural-synthetic-anomalies (default: %(default)s)")
    ap.add_argument("--threads", type=int, default=2, help="anofast's torch threads (default 2)")
    ap.add_argument("--setting", choices=("shift", "hazelnut-train"), default="shift",
                    help="shift: NSA 'Shift' without background masks (default); hazelnut-train: train_mvtec.py's "
                         "hazelnut settings for 'Shift-Intensity' (skip_background (20, 20), min_object_pct 0.7, "
                         "width bounds 0.35, logistic-intensity label (1/12, 24)); anofast's foreground comes from "
                         "anofast.foreground.estimate (see --foreground)")
    ap.add_argument("--foreground", choices=("threshold", "estimate", "cached"), default="threshold",
                    help="hazelnut-train only: threshold: NSA's object masks (skip_background) in every call, as the "
                         "original (default); estimate: anofast.foreground.estimate in every call instead; cached: "
                         "that estimate made once before timing, as a data set that caches each image's foreground "
                         "would")
    ap.add_argument("--anofast-python", help="run the anofast side in a worker process of this interpreter (default: "
                                             "in this process)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--json", type=Path, help="write the results here (default: benchmarks/results/0.1.0/...)")
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args)

    import cv2

    sys.path.insert(0, args.nsa_path)
    from self_sup_data.self_sup_tasks import patch_ex  # the original code, imported from its checkout

    cv2.setNumThreads(1)
    images, origin = load_images()
    kw = dict(same=False, num_patches=3, mode=cv2.NORMAL_CLONE, width_bounds_pct=((0.03, 0.4), (0.03, 0.4)),
              min_object_pct=0.25, min_overlap_pct=0.25, shift=True, label_mode="binary", skip_background=None,
              tol=1, resize=True, gamma_params=(2, 0.05, 0.03), resize_bounds=(0.7, 1.3), verbose=False)
    if args.setting == "hazelnut-train":
        kw.update(width_bounds_pct=((0.03, 0.35), (0.03, 0.35)), min_object_pct=0.7, min_overlap_pct=0.25,
                  skip_background=(20, 20), label_mode="logistic-intensity", intensity_logistic_params=(1 / 12, 24))
    np.random.seed(0)

    def run_peer() -> tuple[float, float]:
        t = time.perf_counter()
        changed = 0.0
        for i in range(BATCH):
            out, label = patch_ex(images[i], images[i - 1], **kw)
            changed += float(label.mean())
        return time.perf_counter() - t, changed / BATCH

    if args.anofast_python:
        cmd = [args.anofast_python, str(Path(__file__).resolve()), "--worker", "--setting", args.setting,
               "--foreground", args.foreground, "--threads", str(args.threads)]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

        def ask(line: str) -> dict:
            proc.stdin.write(line + "\n")
            proc.stdin.flush()
            return json.loads(proc.stdout.readline())

        def run_anofast() -> tuple[float, float]:
            r = ask("run")
            return r["s"], r["label"]

        anofast_env = ask("env")
    else:
        run_anofast = anofast_runner(args.setting, args.foreground, args.threads)
        anofast_env = {"python": sys.executable, "torch": torch.__version__}

    run_peer(), run_anofast()  # warm-up
    rows = []
    for r in range(args.rounds):
        order = (run_peer, run_anofast) if r % 2 == 0 else (run_anofast, run_peer)
        res = {fn.__name__: fn() for fn in order}
        rows.append({"peer_s": res["run_peer"][0], "anofast_s": res["run_anofast"][0],
                     "peer_label_mean": res["run_peer"][1], "anofast_label_mean": res["run_anofast"][1]})
        print(f"round {r}: original {BATCH / rows[-1]['peer_s']:.1f} images/s, anofast "
              f"{BATCH / rows[-1]['anofast_s']:.1f} images/s, ratio {rows[-1]['peer_s'] / rows[-1]['anofast_s']:.1f}x",
              flush=True)
    if args.anofast_python:
        proc.stdin.close()  # the worker stops at the end of its input
        proc.wait()
    peer = statistics.median(BATCH / r["peer_s"] for r in rows)
    ours = statistics.median(BATCH / r["anofast_s"] for r in rows)
    ratio = statistics.median(r["peer_s"] / r["anofast_s"] for r in rows)
    meta = metadata(("opencv-python-headless", "opencv-python"))
    result = {
        "metadata": meta, "images": origin, "batch": BATCH, "size": SIZE, "anofast_threads": args.threads,
        "anofast_env": anofast_env,
        "case": "NSA Shift: patch_ex NORMAL_CLONE, binary label vs NaturalSynthetic.nsa()" if args.setting == "shift"
        else "NSA Shift-Intensity, train_mvtec.py hazelnut settings (skip_background (20, 20)) vs "
             "NaturalSynthetic.nsa_mvtec('hazelnut') with foreground: " + {
                 "threshold": "NSA's object masks (skip_background) in every call",
                 "estimate": "foreground.estimate in every call", "cached": "foreground.estimate, cached"}[args.foreground],
        "setting": args.setting, "foreground": args.foreground if args.setting == "hazelnut-train" else None,
        "rounds": rows, "original_images_per_s": peer, "anofast_images_per_s": ours, "ratio": ratio,
        # the mean label: the binary mask's fraction (shift) or the mean soft label (hazelnut-train)
        "mean_label": {"original": statistics.mean(r["peer_label_mean"] for r in rows),
                       "anofast": statistics.mean(r["anofast_label_mean"] for r in rows)},
    }
    print(f"\nmedian over {args.rounds} rounds: original NSA {peer:.1f} images/s, anofast {ours:.1f} images/s, "
          f"ratio {ratio:.1f}x (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    suffix = "" if args.setting == "shift" else f"--{args.setting}" + {"threshold": "", "estimate": "--estimate-fg",
                                                                         "cached": "--cached-fg"}[args.foreground]
    suffix += "--own-env" if args.anofast_python else ""
    path = args.json or RESULTS / "0.1.0" / f"compare_nsa--amd-epyc-{os.cpu_count()}cpu--t{args.threads}{suffix}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {path}")
    return result


def anofast_runner(setting: str, foreground: str, threads: int):
    """A zero-argument callable that times one anofast call on the batch: ``() -> (seconds, mean label)``."""
    import anofast

    torch.set_num_threads(threads)
    images, _ = load_images()
    batch = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()  # uint8 (B, 3, H, W), as anofast takes it
    if setting == "shift":
        gen, fg_mode = anofast.NaturalSynthetic.nsa(), None
    else:
        fg_mode = foreground
        # NSA's object masks are the generator's own (skip_background) unless the estimate replaces them
        gen = anofast.NaturalSynthetic.nsa_mvtec("hazelnut", **({} if fg_mode == "threshold" else
                                                                {"skip_background": None}))
    cached = anofast.foreground.estimate(batch) if fg_mode == "cached" else None
    calls = iter(range(10**9))

    def run_anofast() -> tuple[float, float]:
        t = time.perf_counter()
        fg = anofast.foreground.estimate(batch) if fg_mode == "estimate" else cached
        out = gen(batch, seed=next(calls), foreground=fg)
        label = out.params["soft_label"] if "soft_label" in out.params else out.mask
        return time.perf_counter() - t, float(label.mean())

    return run_anofast


def worker(args: argparse.Namespace) -> dict:
    """``--worker``: answers ``run`` (one timed call) and ``env`` lines on stdin with JSON lines, until its input
    ends."""
    run = anofast_runner(args.setting, args.foreground, args.threads)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "run":
            s, label = run()
            reply = {"s": s, "label": label}
        elif cmd == "env":
            reply = {"python": sys.executable, "torch": torch.__version__}
        else:
            raise ValueError(f"unknown worker command {cmd!r}")
        print(json.dumps(reply), flush=True)
    return {}


if __name__ == "__main__":
    main()
