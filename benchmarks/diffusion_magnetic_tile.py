"""Demonstration of ``anofast.diffusion.FewShotInpainter`` on real defects: MTD magnetic tiles.

Few-shot split (METHODS.md §8.4): per defect type, the first third of the defect images (sorted by file index) is
the training set; the rest is held out. Writes into ``benchmarks/results/diffusion-magnetic_tile/``:
``gallery.png`` (per type: real held-out defect | its mask | generated on a normal tile with that mask),
``memorisation.json`` (nearest-neighbour RMS distance of generated crops and of real held-out crops to the training
crops) and ``train.json`` (steps, wall time, load average, loss).

    python benchmarks/diffusion_magnetic_tile.py train --minutes 15      # resumable (checkpoint in --workdir)
    python benchmarks/diffusion_magnetic_tile.py evaluate
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from anofast.diffusion.fewshot import FewShotInpainter

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ANOFAST_SHARED_DATA", REPO.parent / "shared" / "data")) / "magnetic_tile"
OUT = REPO / "benchmarks" / "results" / "diffusion-magnetic_tile"
TYPES = ("blowhole", "break", "crack", "fray", "uneven")
CROP = 64


def _index(p: Path) -> int:
    m = re.search(r"(\d+)$", p.stem)
    return int(m.group(1)) if m else 0


def _grey(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.asarray(Image.open(path).convert("L"), dtype=np.float32) / 255.0)[None]


def split(root: Path = DATA) -> dict[str, tuple[list, list]]:
    """Per defect type: (train, held-out) lists of (image (1, H, W), mask (1, H, W)); empty masks dropped."""
    out = {}
    for kind in TYPES:
        files = sorted((root / "test" / kind).glob("*.jpg"), key=_index)
        n = len(files) // 3
        parts: tuple[list, list] = ([], [])
        for i, f in enumerate(files):
            mask = (_grey(root / "ground_truth" / kind / f"{f.stem}_mask.png") > 0.5).float()
            if mask.any():
                parts[i >= n].append((_grey(f), mask))
        out[kind] = parts
    return out


def crop_at_mask(image: torch.Tensor, mask: torch.Tensor, size: int = CROP) -> torch.Tensor:
    """A ``size`` square crop centred on the mask's box (shifted inside the image; reflect-padded if smaller)."""
    ys, xs = mask[0].nonzero(as_tuple=True)
    cy, cx = (int(ys.min()) + int(ys.max())) // 2, (int(xs.min()) + int(xs.max())) // 2
    h, w = image.shape[-2:]
    if h < size or w < size:
        image = F.pad(image[None], (0, max(0, size - w), 0, max(0, size - h)), mode="reflect")[0]
        h, w = image.shape[-2:]
    y0, x0 = min(max(cy - size // 2, 0), h - size), min(max(cx - size // 2, 0), w - size)
    return image[:, y0 : y0 + size, x0 : x0 + size]


def train(args: argparse.Namespace) -> None:
    data = split()
    images, masks, labels = [], [], []
    for k, kind in enumerate(TYPES):
        for im, m in data[kind][0]:
            images.append(im)
            masks.append(m)
            labels.append(k)
    model = FewShotInpainter(TYPES, channels=1, crop=CROP, seed=0)
    ckpt = Path(args.workdir) / "fewshot-magnetic_tile.safetensors"
    losses: list[float] = []
    load0 = os.getloadavg()
    t0 = time.monotonic()
    start_step = 0
    if ckpt.exists():
        start_step = FewShotInpainter.load(ckpt).step
    model.fit(images, masks, labels, steps=args.steps, checkpoint=ckpt, checkpoint_every=100,
              time_limit=args.minutes * 60, callback=lambda s, loss: losses.append(loss))  # fmt: skip
    wall = time.monotonic() - t0
    OUT.mkdir(parents=True, exist_ok=True)
    log = OUT / "train.json"
    runs = json.loads(log.read_text())["runs"] if log.exists() else []
    runs.append({
        "start_step": start_step, "end_step": model.step, "wall_s": round(wall, 1), "threads": torch.get_num_threads(),
        "load_average_start": load0, "load_average_end": os.getloadavg(), "params": model.num_params(),
        "train_images": len(images), "per_type": {k: len(data[k][0]) for k in TYPES},
        "loss_first_50": float(np.mean(losses[:50])) if losses else None,
        "loss_last_50": float(np.mean(losses[-50:])) if losses else None, "config": json.loads(model.config.to_json()),
    })  # fmt: skip
    log.write_text(json.dumps({"runs": runs}, indent=2) + "\n")
    print(f"trained to step {model.step} in {wall:.0f} s; checkpoint {ckpt}")


def evaluate(args: argparse.Namespace) -> None:
    data = split()
    model = FewShotInpainter.load(args.checkpoint or Path(args.workdir) / "fewshot-magnetic_tile.safetensors")
    normals = sorted((DATA / "train" / "good").glob("*.jpg"), key=_index)
    rows, report = [], {}
    gen_all, train_all, held_all = [], [], []
    for k, kind in enumerate(TYPES):
        train_set, held = data[kind]
        train_crops = torch.stack([crop_at_mask(im, m) for im, m in train_set])
        held = held[: args.per_type]
        gens, reals = [], []
        for j, (im, m) in enumerate(held):
            normal = _grey(normals[(7 * k + j) % len(normals)])
            normal = F.interpolate(normal[None], size=im.shape[-2:], mode="bilinear", align_corners=False)[0]
            out = model(normal[None].clamp(0, 1), m[None], seed=1000 * k + j, defect_type=k, steps=args.steps,
                        sampler=args.sampler, guidance=args.guidance)  # fmt: skip
            assert torch.equal(out.image[0][out.mask[0].expand_as(out.image[0]) == 0],
                               normal.clamp(0, 1)[out.mask[0].expand_as(normal) == 0])  # fmt: skip
            gens.append(crop_at_mask(out.image[0], m))
            reals.append(crop_at_mask(im, m))
            rows.append(torch.cat([crop_at_mask(im, m), crop_at_mask(m, m), crop_at_mask(out.image[0], m)], dim=2))
        gen_t, real_t = torch.stack(gens), torch.stack(reals)
        d_gen, d_real = _nn_rms(gen_t, train_crops), _nn_rms(real_t, train_crops)
        report[kind] = {
            "generated": len(gens), "held_out_real": len(reals), "train": len(train_crops),
            "nn_rms_generated_to_train": _stats(d_gen), "nn_rms_heldout_real_to_train": _stats(d_real),
        }  # fmt: skip
        gen_all.append(d_gen)
        held_all.append(d_real)
        train_all.append(train_crops)
    all_gen, all_real = torch.cat(gen_all), torch.cat(held_all)
    report["all"] = {"nn_rms_generated_to_train": _stats(all_gen), "nn_rms_heldout_real_to_train": _stats(all_real),
                     "ratio_of_medians": float(all_gen.median() / all_real.median())}  # fmt: skip
    report["settings"] = {"steps": args.steps, "sampler": args.sampler, "guidance": args.guidance,
                          "checkpoint_step": model.step, "crop": CROP}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "memorisation.json").write_text(json.dumps(report, indent=2) + "\n")
    _gallery(rows, args.per_type, args.out / "gallery.png")
    print(json.dumps(report["all"], indent=2))


def downstream(args: argparse.Namespace) -> None:
    """``anofast eval`` on magnetic_tile: the few-shot diffusion generator against ``perlin:draem``.

    The generator places a real training mask (first third of a random defect type, resized to the image) on each
    normal image and inpaints that type there (grey model; the grey result is repeated to RGB for the detector).
    """
    from anofast import sample_seeds
    from anofast.eval.protocol import EvalConfig, run_eval
    from anofast.eval.report import write_report

    data = split()
    pool = [(k, m) for k, kind in enumerate(TYPES) for _, m in data[kind][0]]
    model = FewShotInpainter.load(args.checkpoint or Path(args.workdir) / "fewshot-magnetic_tile.safetensors")

    def fewshot_diffusion(images: torch.Tensor, seed: int):
        g = torch.Generator().manual_seed(seed)
        pick = torch.randint(len(pool), (images.shape[0],), generator=g).tolist()
        size = images.shape[-2:]
        masks = torch.stack([F.interpolate(pool[i][1][None], size=size, mode="nearest")[0] for i in pick])
        types = torch.tensor([pool[i][0] for i in pick])
        out = model(images[:, :1].contiguous(), masks, seed=sample_seeds(seed, images.shape[0]), defect_type=types,
                    steps=args.steps, sampler=args.sampler, guidance=args.guidance)  # fmt: skip
        return out.image.expand(-1, images.shape[1], -1, -1).contiguous(), out.mask

    config = EvalConfig(seeds=args.seeds, size=args.size, n_synthetic=args.synthetic, steps=args.head_steps)
    results, artefacts = run_eval(DATA, ["perlin:draem", fewshot_diffusion], config, progress=True)
    args.out.mkdir(parents=True, exist_ok=True)
    write_report(results, artefacts, args.out / "eval")
    print(json.dumps({k: v.get("mean", v) if isinstance(v, dict) else v
                      for k, v in results.get("generators", {}).items()}, indent=1, default=str)[:4000])  # fmt: skip


def _nn_rms(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """RMS pixel distance of each crop of ``a`` to its nearest crop of ``b`` (over the 8 flips/rotations of b)."""
    views = torch.cat([torch.rot90(b.flip(-1) if f else b, r, (-2, -1)) for f in (0, 1) for r in range(4)])
    d = torch.cdist(a.flatten(1), views.flatten(1)) / a[0].numel() ** 0.5
    return d.min(dim=1).values


def _stats(d: torch.Tensor) -> dict[str, float]:
    return {"median": float(d.median()), "mean": float(d.mean()), "min": float(d.min())}


def _gallery(rows: list[torch.Tensor], per_row: int, path: Path) -> None:
    """Rows of (real | mask | generated) triplets, ``per_row`` per line, 2-px gaps."""
    cells = [F.pad(r, (2, 2, 2, 2), value=1.0) for r in rows]
    lines = [torch.cat(cells[i : i + per_row], dim=2) for i in range(0, len(cells), per_row)]
    width = max(x.shape[-1] for x in lines)
    grid = torch.cat([F.pad(x, (0, width - x.shape[-1]), value=1.0) for x in lines], dim=1)
    Image.fromarray((grid[0].clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8), "L").save(path, optimize=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("command", choices=("train", "evaluate", "downstream"))
    ap.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "anofast-diffusion-magnetic_tile"),
                    help="checkpoint folder")
    ap.add_argument("--minutes", type=float, default=15.0, help="train: wall-time limit of this run")
    ap.add_argument("--steps", type=int, default=None, help="train: total steps (4000); evaluate: sampler steps (20)")
    ap.add_argument("--checkpoint", help="evaluate: checkpoint file (default: the one in --workdir)")
    ap.add_argument("--out", type=Path, default=OUT, help="evaluate: output folder")
    ap.add_argument("--per-type", type=int, default=6, help="evaluate: generated samples per defect type")
    ap.add_argument("--sampler", default="dpmpp2m")
    ap.add_argument("--guidance", type=float, default=1.5)
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--seeds", type=int, default=1, help="downstream: eval seeds")
    ap.add_argument("--size", type=int, default=224, help="downstream: image size")
    ap.add_argument("--synthetic", type=int, default=64, help="downstream: synthetic images per seed")
    ap.add_argument("--head-steps", type=int, default=300, help="downstream: detector head steps")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.command == "train":
        args.steps = args.steps or 4000
        train(args)
    elif args.command == "evaluate":
        args.steps = args.steps or 20
        evaluate(args)
    else:
        args.steps = args.steps or 10
        downstream(args)


if __name__ == "__main__":
    main()
