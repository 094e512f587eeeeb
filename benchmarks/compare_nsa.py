"""Same-run comparison of anofast's NSA generator with the original NSA code (hmsch/natural-synthetic-anomalies).

The original ``patch_ex`` needs OpenCV, which anofast does not depend on; run this in an environment that has it
(the anomalib peer environment does) and point ``--nsa-path`` at a checkout of the original code outside the
repository::

    git clone https://github.com/hmsch/natural-synthetic-anomalies ../peers/natural-synthetic-anomalies
    .venv-peers/bin/python benchmarks/compare_nsa.py [--setting mvtec --category hazelnut --label-mode binary]
        [--rounds 5] [--json PATH] [--anofast-python python]

Both sides get the same 32 images of 256x256 (the category's images from ../shared/data when present, repeated to
32; else synthetic ones). The original runs one image at a time (as in its DataLoader workers, each worker
single-threaded), taking its patches from the previous image (``same=False``); anofast runs the batch on 2 threads.
Rounds alternate which side goes first; a ratio is the median of the per-round ratios. ``--calls N`` times N anofast
calls per round (a new seed each) and takes their mean: one call lasts ~20 ms, so a single call per round is a short,
noisy sample next to the original's ~400 ms over its 32 per-image calls.

Settings:

- ``--setting mvtec``: NSA's ``train_mvtec.py`` settings for ``--category`` (half-width bounds, patch
  count, resize bounds, object / overlap fractions, object masks ``skip_background``, logistic parameters), with
  ``--label-mode`` ``logistic-intensity`` ("Shift-Intensity", the paper's NSA), ``binary`` ("Shift") or
  ``intensity``. The original gets them as ``patch_ex`` arguments, anofast as ``NaturalSynthetic.nsa_mvtec``: the
  same table on both sides. Both compute their object masks by NSA's rule in every call; ``--foreground estimate``
  gives anofast ``anofast.foreground.estimate`` in every call instead, ``cached`` that estimate made once before
  timing (as a data set that caches each image's foreground would). These are the settings of the original's
  37-98 images/s quoted for these machines (hazelnut "Shift" runs at ~75 here).
- ``--setting hazelnut-train``: ``mvtec`` for hazelnut with the logistic-intensity label.
- ``--setting shift`` (the default, for the commands of earlier measurements): ``patch_ex``'s "Shift" without
  object masks (3 patches, half-widths in [0.03, 0.4], resize [0.7, 1.3], binary label) against
  ``NaturalSynthetic.nsa()``; the original runs ~150-200 images/s there.

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
DATA = REPO.parent / "shared" / "data"
FOLDERS = {"hazelnut": "mvtec_hazelnut_mini", "leather": "mvtec_leather_mini_256"}  # category -> ../shared/data/...


def load_images(category: str) -> tuple[np.ndarray, str]:
    """(32, 256, 256, 3) uint8 images of ``category`` (repeated to 32) and where they came from."""
    from PIL import Image

    folder = DATA / FOLDERS.get(category, category) / "train"
    files = sorted(folder.rglob("*.png"))[:BATCH] if folder.is_dir() else []
    if len(files) >= 2:
        ims = [np.asarray(Image.open(f).convert("RGB").resize((SIZE, SIZE), Image.BILINEAR)) for f in files]
        return np.stack([ims[i % len(ims)] for i in range(BATCH)]), f"{folder} ({len(files)} images)"
    from anofast.testing import make_batch

    x = (make_batch(BATCH, 3, SIZE, SIZE) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return np.ascontiguousarray(x), "anofast.testing.make_batch (synthetic)"


def settings(args: argparse.Namespace) -> tuple[str, str]:
    """``(setting, label_mode)`` with the ``hazelnut-train`` alias resolved."""
    if args.setting == "hazelnut-train":
        return "mvtec", "logistic-intensity"
    return args.setting, args.label_mode


def make_generator(args: argparse.Namespace):
    """anofast's generator for the setting (its object masks replaced by nothing where the foreground is given)."""
    import anofast

    setting, label_mode = settings(args)
    if setting == "shift":
        return anofast.NaturalSynthetic.nsa()
    overrides = {} if args.foreground == "threshold" else {"skip_background": None}
    return anofast.NaturalSynthetic.nsa_mvtec(args.category, label_mode=label_mode, **overrides)


def peer_kwargs(args: argparse.Namespace) -> dict:
    """``patch_ex``'s arguments for the setting, from the same table as anofast's generator."""
    import cv2

    kw = dict(same=False, num_patches=3, mode=cv2.NORMAL_CLONE, width_bounds_pct=((0.03, 0.4), (0.03, 0.4)),
              min_object_pct=0.25, min_overlap_pct=0.25, shift=True, label_mode="binary", skip_background=None,
              tol=1, resize=True, gamma_params=(2, 0.05, 0.03), resize_bounds=(0.7, 1.3), verbose=False)
    setting, label_mode = settings(args)
    if setting == "mvtec":
        import anofast

        gen = anofast.NaturalSynthetic.nsa_mvtec(args.category, label_mode=label_mode)
        bg = gen.skip_background
        kw.update(num_patches=gen.num_patches, width_bounds_pct=gen.width_bounds, resize_bounds=gen.resize_bounds,
                  min_object_pct=gen.min_object_pct, min_overlap_pct=gen.min_overlap_pct, label_mode=label_mode,
                  skip_background=None if bg is None else [tuple(int(v) for v in p) for p in bg],
                  intensity_logistic_params=gen.intensity_logistic_params)
    return kw


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    ap.add_argument("--nsa-path", default=os.environ.get("NSA_PATH", str(Path(__file__).resolve().parents[2] / "peers" / "natural-synthetic-anomalies")),
                    help="checkout of hmsch/natural-synthetic-anomalies (default: %(default)s)")
    ap.add_argument("--threads", type=int, default=2, help="anofast's torch threads (default 2)")
    ap.add_argument("--calls", type=int, default=1,
                    help="anofast calls per round, each on the 32 images with a new seed (default 1): its rate is "
                         "averaged over them, as the original's is over its 32 per-image calls")
    ap.add_argument("--setting", choices=("mvtec", "hazelnut-train", "shift"), default="shift",
                    help="mvtec: train_mvtec.py's settings for --category; hazelnut-train: mvtec for hazelnut with "
                         "the logistic-intensity label; shift: patch_ex 'Shift' without object masks (default)")
    ap.add_argument("--category", default="hazelnut", help="MVTec AD class of --setting mvtec (default hazelnut; "
                                                           "images for hazelnut and leather)")
    ap.add_argument("--label-mode", choices=("logistic-intensity", "binary", "intensity"), default="logistic-intensity",
                    help="--setting mvtec: the label (default logistic-intensity: 'Shift-Intensity'; binary: 'Shift')")
    ap.add_argument("--foreground", choices=("threshold", "estimate", "cached"), default="threshold",
                    help="--setting mvtec: threshold: NSA's object masks in every call, as the original (default); "
                         "estimate: anofast.foreground.estimate in every call instead; cached: that estimate made "
                         "once before timing")
    ap.add_argument("--anofast-python", help="run the anofast side in a worker process of this interpreter (default: "
                                             "in this process)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--json", type=Path, help="write the results here (default: benchmarks/results/0.1.0/...)")
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args)
    setting, label_mode = settings(args)
    category = args.category if setting == "mvtec" else "hazelnut"

    import cv2

    sys.path.insert(0, args.nsa_path)
    from self_sup_data.self_sup_tasks import patch_ex  # the original code, imported from its checkout

    cv2.setNumThreads(1)
    images, origin = load_images(category)
    kw = peer_kwargs(args)
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
               "--category", args.category, "--label-mode", args.label_mode, "--foreground", args.foreground,
               "--threads", str(args.threads), "--calls", str(args.calls)]
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
        run_anofast = anofast_runner(args)
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
    if setting == "shift":
        case = "NSA Shift without object masks: patch_ex NORMAL_CLONE, binary label vs NaturalSynthetic.nsa()"
    else:
        fg = {"threshold": "NSA's object masks (skip_background) in every call",
              "estimate": "foreground.estimate in every call", "cached": "foreground.estimate, cached"}[args.foreground]
        case = (f"NSA train_mvtec.py settings for {category}, label {label_mode}: patch_ex vs "
                f"NaturalSynthetic.nsa_mvtec({category!r}); anofast's foreground: {fg}")
    result = {
        "metadata": meta, "images": origin, "batch": BATCH, "size": SIZE, "anofast_threads": args.threads,
        "anofast_calls_per_round": args.calls,
        "anofast_env": anofast_env, "case": case, "setting": setting, "category": category if setting == "mvtec" else None,
        "label_mode": label_mode, "foreground": args.foreground if setting == "mvtec" else None,
        "peer_kwargs": {k: (v if isinstance(v, (int, float, str, type(None))) else repr(v)) for k, v in kw.items()},
        "rounds": rows, "original_images_per_s": peer, "anofast_images_per_s": ours, "ratio": ratio,
        # the mean label: the binary mask's fraction or the mean soft label
        "mean_label": {"original": statistics.mean(r["peer_label_mean"] for r in rows),
                       "anofast": statistics.mean(r["anofast_label_mean"] for r in rows)},
    }
    print(f"\nmedian over {args.rounds} rounds: original NSA {peer:.1f} images/s, anofast {ours:.1f} images/s, "
          f"ratio {ratio:.1f}x (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    if setting == "shift":
        suffix = ""
    else:
        suffix = f"--{category}-{label_mode}" + {"threshold": "", "estimate": "--estimate-fg",
                                                  "cached": "--cached-fg"}[args.foreground]
    suffix += "--own-env" if args.anofast_python else ""
    suffix += f"--calls{args.calls}" if args.calls != 1 else ""
    path = args.json or RESULTS / "0.1.0" / f"compare_nsa--amd-epyc-{os.cpu_count()}cpu--t{args.threads}{suffix}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {path}")
    return result


def anofast_runner(args: argparse.Namespace):
    """A zero-argument callable that times one round of anofast (``--calls`` calls on the batch):
    ``() -> (seconds per call, mean label)``."""
    import anofast

    torch.set_num_threads(args.threads)
    setting, _ = settings(args)
    images, _ = load_images(args.category if setting == "mvtec" else "hazelnut")
    batch = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()  # uint8 (B, 3, H, W), as anofast takes it
    gen = make_generator(args)
    fg_mode = args.foreground if setting == "mvtec" else "threshold"
    cached = anofast.foreground.estimate(batch) if fg_mode == "cached" else None
    calls = iter(range(10**9))

    def run_anofast() -> tuple[float, float]:
        """Seconds per call (the mean over ``--calls`` calls) and the last call's mean label."""
        t = time.perf_counter()
        for _ in range(args.calls):
            fg = anofast.foreground.estimate(batch) if fg_mode == "estimate" else cached
            out = gen(batch, seed=next(calls), foreground=fg)
        seconds = (time.perf_counter() - t) / args.calls
        label = out.params["soft_label"] if "soft_label" in out.params else out.mask
        return seconds, float(label.mean())

    return run_anofast


def worker(args: argparse.Namespace) -> dict:
    """``--worker``: answers ``run`` (one timed round) and ``env`` lines on stdin with JSON lines, until its input
    ends."""
    run = anofast_runner(args)
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
