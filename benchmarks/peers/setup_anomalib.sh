#!/usr/bin/env bash
# Creates .venv-peers: anomalib 2.7.0 (the peer) and anofast in one environment, for same-run ratios.
# A separate environment because PyPI's torchvision (needed by anomalib) does not import beside the CPU build
# of torch 2.13.0 that anofast's own environment uses. About 2 minutes and 6.3 GB; runs on the CPU.
# Usage (from anywhere): benchmarks/peers/setup_anomalib.sh   then   .venv-peers/bin/python benchmarks/compare_anomalib.py
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=.venv-peers   # ignored by git (.venv*/ in .gitignore)
python3 -m venv "$VENV"
"$VENV/bin/pip" install torch==2.14.1 torchvision==0.29.1 anomalib==2.7.0
"$VENV/bin/pip" install -e .
"$VENV/bin/python" - <<'PY'
import torch
from anomalib.data.utils.generators.perlin import PerlinAnomalyGenerator

out, mask = PerlinAnomalyGenerator(probability=1.0)(torch.rand(2, 3, 64, 64))
assert out.shape == (2, 3, 64, 64) and mask.shape[-2:] == (64, 64), (out.shape, mask.shape)
import anofast, anofast._C  # noqa: E401  (the editable install built the extension for this torch)
print("peer environment OK: torch", torch.__version__, "anofast", anofast.__version__)
PY
