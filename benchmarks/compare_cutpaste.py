"""Same-run comparison of anofast's CutPaste with anomalib 2.7.0's FoundAD ``CutPasteNormal`` and the unofficial
Runinho/pytorch-cutpaste ``CutPasteNormal`` (+ ToTensor + Normalize, as its training script uses it).

Runs in the peer environment (anomalib, torchvision), with the unofficial code fetched outside the repository::

    git clone https://github.com/Runinho/pytorch-cutpaste ../peers/pytorch-cutpaste   # any folder outside
    .venv-peers/bin/python benchmarks/compare_cutpaste.py [--rounds 5] [--min-run-time 1.0] \\
        [--runinho ../peers/pytorch-cutpaste] [--json PATH]

Every implementation gets the same 32 images of 256x256 (MVTec good images when ../shared/data has them): the
anomalib class a float (3, 256, 256) tensor per image, Runinho's a PIL image per image (its input type), anofast
the (32, 3, 256, 256) batch, on 2 threads. The peers return no mask; anofast returns image, exact mask, label and
parameters. Rounds are interleaved as in compare_anomalib.py and ratios are medians of per-round ratios.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, metadata  # noqa: E402
from compare_anomalib import BATCH, DATA, SIZE, Entry, _machine_slug, load_images, run, summarise, table  # noqa: E402

RUNINHO = Path(__file__).resolve().parents[2] / "peers" / "pytorch-cutpaste"  # ../peers beside the checkout


def build_entries(images: torch.Tensor, runinho: Path, peer_only: bool) -> list[Entry]:
    """Every (case, implementation) pair; construction happens here, outside any timing."""
    import numpy as np
    from anomalib.models.image.foundad.components.cutpaste import CutPasteNormal as AnomalibCutPasteNormal
    from PIL import Image
    from torchvision import transforms

    entries: list[Entry] = []
    seeds = itertools.count()
    per_image = list(images.unbind(0))
    pil = [Image.fromarray((im.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)) for im in per_image]

    case = "CutPaste-normal, jitter 0.1, every image pasted"
    foundad = AnomalibCutPasteNormal(area_ratio=(0.02, 0.15), aspect_ratio=0.3, color_jitter=0.1)
    entries.append(Entry(case, "anomalib FoundAD CutPasteNormal(area (0.02, 0.15), jitter 0.1), per image", "peer",
                         lambda: [foundad(im) for im in per_image]))  # fmt: skip
    sys.path.insert(0, str(runinho))
    from cutpaste import CutPasteNormal as RuninhoCutPasteNormal  # the fetched peer's module

    after = transforms.Compose([transforms.ToTensor(),
                                transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])])
    runinho_normal = RuninhoCutPasteNormal(transform=after)
    entries.append(Entry(case, "Runinho CutPasteNormal + ToTensor + Normalize, per PIL image", "peer",
                         lambda: [runinho_normal(im) for im in pil]))  # fmt: skip
    if not peer_only:
        import anofast

        for preset in ("normal", "scar"):
            gen = getattr(anofast.CutPaste, preset)(p_anomaly=1.0)
            entries.append(Entry(case, f"anofast CutPaste.{preset}(p_anomaly=1) batch of {BATCH} (+ exact mask)",
                                 "anofast", lambda gen=gen: gen(images, seed=next(seeds))))  # fmt: skip
    src = images.numpy()
    dst = np.empty_like(src)
    entries.append(Entry("memory-bound baselines", "numpy.copyto", "baseline", lambda: np.copyto(dst, src)))
    return entries


def summarise_two_peers(entries: list[Entry]) -> list[dict]:
    """summarise() compares with the case's first peer; add the ratio to every peer of the case."""
    import statistics

    rows = summarise(entries)
    for row, e in zip(rows, entries, strict=True):
        if e.side != "anofast":
            continue
        for p in (p for p in entries if p.case == e.case and p.side == "peer"):
            key = "ratio_vs_" + p.impl.split()[0].lower()
            row[key] = statistics.median(o / m for o, m in zip(p.ms, e.ms, strict=True))
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    ap.add_argument("--min-run-time", type=float, default=1.0, help="seconds per measurement (default 1.0)")
    ap.add_argument("--data", type=Path, default=DATA, help=f"shared data folder (default {DATA})")
    ap.add_argument("--runinho", type=Path, default=RUNINHO, help=f"checkout of Runinho/pytorch-cutpaste ({RUNINHO})")
    ap.add_argument("--json", type=Path, help="output (default benchmarks/results/<version>/compare_cutpaste--...)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for every side (default 2)")
    ap.add_argument("--peer-only", action="store_true", help="time only the peers and the baseline")
    args = ap.parse_args(argv)

    if not (args.runinho / "cutpaste.py").is_file():
        ap.error(f"--runinho: {args.runinho} has no cutpaste.py; clone Runinho/pytorch-cutpaste there")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    images, images_desc = load_images(args.data)
    entries = build_entries(images, args.runinho, args.peer_only)
    load = run(entries, args.rounds, args.min_run_time, args.threads)
    rows = summarise_two_peers(entries)
    print(table(rows))
    for r in rows:
        if r["side"] == "anofast":
            ratios = ", ".join(f"{k[9:]} {v:.1f}x" for k, v in r.items() if k.startswith("ratio_vs_") and
                               k not in ("ratio_vs_peer", "ratio_vs_peer_best", "ratio_vs_numpy_copy"))
            print(f"{r['impl']}: {r['images_per_s']:.0f} images/s; vs {ratios}")

    meta = metadata(packages=("anomalib", "torchvision"))
    meta.update(
        threads=args.threads, rounds=args.rounds, min_run_time_s=args.min_run_time, batch=[BATCH, 3, SIZE, SIZE],
        inputs=images_desc, load_average_per_round=load, runinho=str(args.runinho),
        command=" ".join([Path(sys.executable).name, *sys.argv]),
    )  # fmt: skip
    out = args.json or RESULTS / meta["versions"]["anofast"] / f"compare_cutpaste--{_machine_slug()}--t{args.threads}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"metadata": meta, "results": rows}, indent=2) + "\n")
    print(f"\nwrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
