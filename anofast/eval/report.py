"""Writes a run's files: results.json, report.md, PNG plots (matplotlib) and gallery/index.html; all atomic."""

from __future__ import annotations

import html
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from anofast.data.folder import atomic_write_bytes
from anofast.gallery import overlay

BAR_METRICS = ("image_auroc", "pixel_ap", "aupro")
THUMB = 96
COLUMNS = ("image_auroc", "image_ap", "image_f1max", "pixel_auroc", "pixel_ap", "pixel_f1max", "aupro")


def _pm(mean: dict[str, float], std: dict[str, float], k: str) -> str:
    return f"{mean[k]:.3f} ± {std[k]:.3f}"


def _fmt(v: Any, spec: str = ".3g") -> str:
    return "–" if v is None else format(v, spec)


def _rows(results: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [("baseline: " + results["baseline"]["name"], results["baseline"]), *results["generators"].items()]


def best_generator(results: dict[str, Any], metric: str = "image_auroc") -> tuple[str, float] | None:
    """The generator with the highest mean ``metric`` and its margin over the baseline."""
    gens = results["generators"]
    if not gens:
        return None
    name = max(gens, key=lambda g: gens[g]["mean"][metric])
    return name, gens[name]["mean"][metric] - results["baseline"]["mean"][metric]


def markdown(results: dict[str, Any]) -> str:
    """report.md: the settings, the detection table (mean ± std over seeds), fidelity / realism, timings."""
    c, d = results["config"], results["data"]
    lines = [
        f"# anofast eval: {Path(d['root']).name}",
        "",
        f"anofast {results['anofast_version']}; data `{d['root']}`: {d['train_good']} normal training images; "
        f"defects {', '.join(f'{k} ({v})' for k, v in d['defects'].items())}; {d['test_good']} good test images. "
        f"Few-shot third reserved (not evaluated): {d['few_shot_reserved']}; evaluated on {d['evaluation_images']} "
        f"images ({d['evaluation_defective']} defective).",
        "",
        f"Protocol: images resized to {c['size']}², frozen EfficientNet-Lite0 features, SuperSimpleNet-like head "
        f"trained {c['steps']} steps × {c['batch_size']} (half normal, half synthetic from {c['n_synthetic']} "
        f"generated images per seed), seeds 0..{c['seeds'] - 1}, no model selection. Baseline: kNN to a "
        f"{c['bank_size']}-feature normal memory bank (PatchCore-like, no synthetic data).",
        "",
        "## Detection on real defects (mean ± sample std over seeds)",
        "",
        "| detector | " + " | ".join(COLUMNS) + " |",
        "|---" * (len(COLUMNS) + 1) + "|",
    ]
    for name, r in _rows(results):
        lines.append(f"| {name} | " + " | ".join(_pm(r["mean"], r["std"], k) for k in COLUMNS) + " |")
    best = best_generator(results)
    if best is not None:
        for metric in ("image_auroc", "pixel_ap", "aupro"):
            name, delta = best_generator(results, metric)  # type: ignore[misc]
            lines.append("")
            lines.append(f"Best by {metric}: **{name}**, {delta:+.3f} over the baseline "
                         f"({results['generators'][name]['mean'][metric]:.3f} vs {results['baseline']['mean'][metric]:.3f}).")
    lines += [
        "",
        "## Synthetic anomalies: mask fidelity, realism, diversity, speed (first seed's pool)",
        "",
        f"Realism: KID ×1000 and Fréchet distance of Lite0 features of crops around each anomaly vs the "
        f"{d['real_defect_crops']} real defect crops of the evaluation split (lower = closer); diversity: mean "
        f"pairwise cosine distance (real defects: {_fmt(results['real_defects']['diversity'])}).",
        "",
        "| generator | anomalous | visible | leakage | bg PSNR | seam | area p50 | KID×1000 | FD | diversity | "
        "img/s (gen) | wall s |",
        "|---" * 12 + "|",
    ]
    for name, g in results["generators"].items():
        f, r = g.get("fidelity", {}), g.get("realism", {})
        q = f.get("mask_area_quantiles")
        kid = r.get("kid")
        thr = sum(s["throughput_ips"] for s in g["per_seed"]) / len(g["per_seed"])
        anom = sum(s["anomalous_fraction"] for s in g["per_seed"]) / len(g["per_seed"])
        lines.append(
            f"| {name} | {anom:.2f} | {_fmt(f.get('visible_fraction'))} | {_fmt(f.get('leakage'))} | "
            f"{_fmt(f.get('background_psnr'))} | {_fmt(f.get('seam_score'))} | {_fmt(q[2] if q else None)} | "
            f"{_fmt(None if kid is None else kid * 1000)} | {_fmt(r.get('frechet'))} | {_fmt(r.get('diversity'))} | "
            f"{thr:.0f} | {g['wall_s']:.0f} |"
        )
    m = results["machine"]
    lines += [
        "",
        f"Machine: {m['platform']}, {m['cpu_count']} CPUs, torch threads {m['torch_threads']}; load average "
        f"(1/5/15 min) at start {_fmt_load(m.get('load_avg_start'))}, at end {_fmt_load(m.get('load_avg_end'))}. "
        f"Total wall time {results['wall_s']:.0f} s.",
        "",
        "Files: `results.json` (every number, per seed), `bars.png`, `curves.png`, `gallery/index.html`.",
        "",
    ]
    return "\n".join(lines)


def _fmt_load(v: list[float] | None) -> str:
    return "–" if not v else "/".join(f"{x:.1f}" for x in v)


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return buf.getvalue()


def plots(results: dict[str, Any], out: Path) -> list[Path]:
    """bars.png (metrics with error bars per detector) and curves.png (image ROC and PRO curves, first seed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _rows(results)
    names = [n.replace("baseline: ", "") for n, _ in rows]
    fig, axes = plt.subplots(1, len(BAR_METRICS), figsize=(4 * len(BAR_METRICS), 3.2 + 0.15 * len(rows)))
    for ax, k in zip(axes, BAR_METRICS):
        ax.bar(range(len(rows)), [r["mean"][k] for _, r in rows], yerr=[r["std"][k] for _, r in rows], capsize=3,
               color=["grey"] + [f"C{i}" for i in range(len(rows) - 1)])
        ax.set_xticks(range(len(rows)), names, rotation=40, ha="right", fontsize=8)
        ax.set_title(k)
        lo = min(r["mean"][k] - r["std"][k] for _, r in rows)
        ax.set_ylim(max(0.0, lo - 0.05), 1.0)
    bars = out / "bars.png"
    atomic_write_bytes(bars, _png(fig))
    plt.close(fig)

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    for i, (name, r) in enumerate(rows):
        if not r.get("curves"):
            continue
        style = {"color": "grey", "linestyle": "--"} if i == 0 else {"color": f"C{i - 1}"}
        a1.plot(r["curves"]["image_roc"]["x"], r["curves"]["image_roc"]["y"], label=names[i], **style)
        a2.plot(r["curves"]["pro"]["x"], r["curves"]["pro"]["y"], label=names[i], **style)
    a1.set(xlabel="FPR", ylabel="TPR", title="image ROC (seed 0)")
    a2.set(xlabel="pixel FPR", ylabel="per-region overlap", title="PRO up to FPR 0.3 (seed 0)")
    a1.legend(fontsize=7)
    curves = out / "curves.png"
    atomic_write_bytes(curves, _png(fig))
    plt.close(fig)
    return [bars, curves]


def _thumb_png(image: Tensor) -> bytes:
    arr = image.permute(1, 2, 0).contiguous().numpy()
    im = Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr)
    im.thumbnail((THUMB, THUMB))
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def gallery(artefacts: dict[str, Any], out: Path) -> Path:
    """gallery/index.html: per generator a row of (source, synthetic, overlay) thumbnails; real defect crops."""
    folder = out / "gallery"
    folder.mkdir(parents=True, exist_ok=True)
    parts = ["<!doctype html><meta charset='utf-8'><title>anofast eval gallery</title>",
             "<style>body{font:13px sans-serif} img{margin:1px;image-rendering:pixelated} td{vertical-align:top}"
             "</style><h1>Synthetic anomalies next to real defects</h1>"]
    real = artefacts["real"][0]
    if real is not None and real.shape[0]:
        parts.append("<h2>real defects (crops, evaluation split)</h2><p>")
        for i, crop in enumerate(real):
            name = f"real_{i}.png"
            atomic_write_bytes(folder / name, _thumb_png((crop * 255 + 0.5).floor().clamp(0, 255).to(torch.uint8)))
            parts.append(f"<img src='{name}' title='real defect {i}'>")
        parts.append("</p>")
    for g, (src, syn, msk) in artefacts["samples"].items():
        slug = "".join(ch if ch.isalnum() else "_" for ch in g)
        parts.append(f"<h2>{html.escape(g)}</h2><p>source · synthetic · mask overlay</p><table><tr>")
        for i in range(syn.shape[0]):
            names = [f"{slug}_{i}_{kind}.png" for kind in ("src", "syn", "ovl")]
            atomic_write_bytes(folder / names[0], _thumb_png(src[i]))
            atomic_write_bytes(folder / names[1], _thumb_png(syn[i]))
            ov = overlay(Image.fromarray(syn[i].permute(1, 2, 0).numpy()), Image.fromarray(msk[i, 0].numpy() * 255))
            atomic_write_bytes(folder / names[2], _thumb_png(torch.from_numpy(np.array(ov)).permute(2, 0, 1)))
            parts.append("<td>" + "".join(f"<img src='{n}'>" for n in names) + "</td>")
            if i % 2 == 1:
                parts.append("</tr><tr>")
        parts.append("</tr></table>")
    index = folder / "index.html"
    atomic_write_bytes(index, "\n".join(parts).encode())
    return index


def write_report(results: dict[str, Any], artefacts: dict[str, Any], out: str | os.PathLike) -> dict[str, Path]:
    """Writes every file of a run into ``out`` (created); returns their paths by kind."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"results": out / "results.json", "report": out / "report.md"}
    atomic_write_bytes(paths["results"], (json.dumps(results, indent=1) + "\n").encode())
    atomic_write_bytes(paths["report"], markdown(results).encode())
    bars, curves = plots(results, out)
    paths.update(bars=bars, curves=curves, gallery=gallery(artefacts, out))
    return paths
