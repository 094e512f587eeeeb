"""The whole benchmark on one MVTec-layout folder: :func:`run_eval` -> a JSON-ready results dict.

Per run: load and check the data (:mod:`anofast.eval.dataset`), embed every real image once, score the
no-synthetic baseline per seed; then per generator and seed: make the synthetic pool, train the head, evaluate on
the real evaluation split (:mod:`anofast.eval.downstream`). For the first seed's pool it also measures mask
fidelity (:mod:`anofast.eval.fidelity`) and realism / diversity against the real defects of the evaluation split
(:mod:`anofast.eval.realism`).
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

import anofast
from anofast.data.folder import check_size
from anofast.eval import dataset as ds
from anofast.eval import downstream as dn
from anofast.eval import fidelity, realism
from anofast.eval.metrics import pro_curve, roc_curve

METRICS = ("image_auroc", "image_ap", "image_f1max", "pixel_auroc", "pixel_ap", "pixel_f1max", "aupro")
CURVE_POINTS = 200
GALLERY_SAMPLES = 6


@dataclass(frozen=True)
class EvalConfig:
    """Settings of a run (all recorded in results.json).

    Attributes:
        seeds: the seeds 0 .. seeds-1 (head init, batch order, synthetic sources, generator seeds, bank subset).
        size: images are resized to size x size.
        n_synthetic: synthetic images the generator makes per seed.
        steps / batch_size: the head's fixed training budget (half normal, half synthetic per batch).
        bank_size: memory-bank features of the kNN baseline.
        source: anomaly-source texture folder passed to generators that take one (None: their default).
    """

    seeds: int = 3
    size: int = 224
    n_synthetic: int = 256
    steps: int = 300
    batch_size: int = 32
    bank_size: int = 8192
    source: str | None = None


def _thin(x: Tensor, y: Tensor, n: int = CURVE_POINTS) -> dict[str, list[float]]:
    idx = torch.linspace(0, x.numel() - 1, min(n, x.numel())).round().long()
    return {"x": [round(float(v), 5) for v in x[idx]], "y": [round(float(v), 5) for v in y[idx]]}


def _curves(maps: Tensor, scores: Tensor, labels: Tensor, masks: Tensor) -> dict[str, Any]:
    fpr, tpr, _ = roc_curve(scores, labels)
    pfpr, pro = pro_curve(maps, masks[:, 0])
    return {"image_roc": _thin(fpr, tpr), "pro": _thin(pfpr, pro)}


def _stats(per_seed: list[dict[str, Any]]) -> tuple[dict[str, float], dict[str, float]]:
    mean, std = {}, {}
    for k in METRICS:
        v = torch.tensor([r[k] for r in per_seed], dtype=torch.float64)
        mean[k] = float(v.mean())
        std[k] = float(v.std()) if v.numel() > 1 else 0.0
    return mean, std


def _clean(x: Any) -> Any:
    """NaN -> None for JSON."""
    if isinstance(x, float) and x != x:
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_clean(v) for v in x]
    return x


def run_eval(
    data: str | os.PathLike,
    generators: Sequence[str | Callable[..., Any]],
    config: EvalConfig = EvalConfig(),
    *,
    progress: bool | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Runs the protocol; returns ``(results, artefacts)``.

    Args:
        data: an MVTec-layout folder (:mod:`anofast.eval.dataset`).
        generators: names of ``anofast generate --method`` (``"perlin"``, ``"perlin:glass"``, ...), anofast
            generator objects, or callables ``(images (B,C,H,W) float in [0,1], seed: int) -> (images, masks)``.
        config: the protocol's settings.
        progress: tqdm bars on (True) / off (False); None: only on a terminal.

    Returns:
        ``results`` is JSON-ready (see the CLI's results.json); ``artefacts`` holds tensors the report draws:
        per generator a few synthetic samples (``"samples"``: sources, outputs, masks) and real defect crops.

    Raises:
        LayoutError: ``data`` is not an MVTec-layout folder or masks do not match images.
        GeneratorOutputError: a generator returns the wrong shape / type.
        ValueError: an unknown generator name, bad settings.
    """
    from tqdm import tqdm

    if config.seeds < 1 or config.n_synthetic < 2 or config.steps < 1 or config.batch_size < 2:
        raise ValueError(f"bad settings {config}: seeds, steps >= 1, n_synthetic, batch_size >= 2")
    t_run = time.perf_counter()
    size = check_size(config.size)
    gens = [dn.resolve_generator(g, config.source) for g in generators]
    names = [g.name for g in gens]
    if len(set(names)) != len(names):
        raise ValueError(f"generators must be distinct, got {names}")
    layout = ds.discover(data)
    evaluation = layout.evaluation()
    train_u8 = ds.load(layout.train, size)[0]
    test_u8, test_masks = ds.load(evaluation, size)
    for gen in gens:  # fail fast: a generator returning the wrong thing is reported before the long work
        gen(train_u8[:2].to(torch.float32) / 255.0, 0)
    labels = torch.tensor([t.label for t in evaluation])
    if int(labels.sum()) == 0 or int((labels == 0).sum()) == 0:
        raise ds.LayoutError(f"{data}: the evaluation split needs both good and defective test images")

    disable = None if progress is None else not progress
    with tqdm(total=train_u8.shape[0] + test_u8.shape[0], desc="embed real images", unit="img", disable=disable) as bar:
        train_f = dn.extract_features(train_u8, progress=bar.update)
        test_f = dn.extract_features(test_u8, progress=bar.update)
    real_crops = realism.defect_crops(test_u8.to(torch.float32) / 255.0, test_masks)
    real_emb = realism.embed(real_crops)

    results: dict[str, Any] = {
        "anofast_version": anofast.__version__,
        "config": asdict(config),
        "data": {
            "root": str(layout.root),
            "train_good": len(layout.train),
            "defects": {d: sum(t.defect == d for t in layout.test) for d in layout.defects},
            "test_good": sum(t.defect == "good" for t in layout.test),
            "few_shot_reserved": len(layout.few_shot()),
            "evaluation_images": len(evaluation),
            "evaluation_defective": int(labels.sum()),
            "real_defect_crops": int(real_crops.shape[0]),
        },
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "load_avg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None},
        "real_defects": {"diversity": realism.diversity(real_emb) if real_emb.shape[0] > 1 else None},
    }
    artefacts: dict[str, Any] = {"real": (real_crops[:GALLERY_SAMPLES], None), "samples": {}}

    # ---------------------------------------------------------------- baseline
    per_seed = []
    curves = None
    for seed in tqdm(range(config.seeds), desc="baseline (kNN)", disable=disable):
        t0 = time.perf_counter()
        maps, scores = dn.knn_baseline(train_f, test_f, size, seed=seed, bank_size=config.bank_size)
        row = {"seed": seed, **dn.evaluate(maps, scores, labels, test_masks), "wall_s": time.perf_counter() - t0}
        per_seed.append(row)
        if seed == 0:
            curves = _curves(maps, scores, labels, test_masks)
    mean, std = _stats(per_seed)
    results["baseline"] = {"name": "knn (no synthetic)", "per_seed": per_seed, "mean": mean, "std": std, "curves": curves}

    # ---------------------------------------------------------------- generators
    results["generators"] = {}
    for gen in gens:
        t_gen = time.perf_counter()
        per_seed, curves, extra = [], None, {}
        for seed in range(config.seeds):
            t0 = time.perf_counter()
            with tqdm(total=config.n_synthetic, desc=f"{gen.name} seed {seed}", unit="img", disable=disable) as bar:
                pool = dn.make_pool(gen, train_u8, seed=seed, count=config.n_synthetic, progress=bar.update)
            anomalous = int((pool.masks.flatten(1).amax(1) > 0).sum())
            head = dn.train_head(train_f, pool.features, pool.targets, seed=seed, steps=config.steps,
                                 batch_size=config.batch_size)
            maps, scores = dn.predict(head, test_f, size)
            row = {
                "seed": seed,
                **dn.evaluate(maps, scores, labels, test_masks),
                "throughput_ips": config.n_synthetic / max(pool.generator_seconds, 1e-9),
                "anomalous_fraction": anomalous / config.n_synthetic,
                "wall_s": time.perf_counter() - t0,
            }
            per_seed.append(row)
            if seed == 0:
                curves = _curves(maps, scores, labels, test_masks)
                extra = _pool_quality(pool, real_emb)
                artefacts["samples"][gen.name] = (
                    train_u8[pool.sources[:GALLERY_SAMPLES]], pool.images[:GALLERY_SAMPLES], pool.masks[:GALLERY_SAMPLES]
                )
        mean, std = _stats(per_seed)
        results["generators"][gen.name] = {
            "per_seed": per_seed, "mean": mean, "std": std, "curves": curves, **extra,
            "delta_vs_baseline": {k: mean[k] - results["baseline"]["mean"][k] for k in METRICS},
            "wall_s": time.perf_counter() - t_gen,
        }
    results["wall_s"] = time.perf_counter() - t_run
    results["machine"]["load_avg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    return _clean(results), artefacts


def _pool_quality(pool: dn.SyntheticPool, real_emb: Tensor) -> dict[str, Any]:
    """Mask fidelity, KID / Fréchet distance to the real defects, and diversity of one synthetic pool."""
    fid = fidelity.summarize(pool.fidelity)
    crops = realism.defect_crops(pool.images.to(torch.float32) / 255.0, pool.masks)
    out: dict[str, Any] = {"fidelity": fid, "realism": {"synthetic_crops": int(crops.shape[0])}}
    if crops.shape[0] >= 2 and real_emb.shape[0] >= 2:
        emb = realism.embed(crops)
        k_mean, k_std = realism.kid(emb, real_emb)
        out["realism"].update(kid=k_mean, kid_std=k_std, frechet=realism.frechet_distance(emb, real_emb),
                              diversity=realism.diversity(emb))
    return out
