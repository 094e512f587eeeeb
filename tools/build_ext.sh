#!/usr/bin/env bash
# Rebuilds anofast._C in place (for an editable install), serialised by a lock so parallel builds don't collide.
set -euo pipefail
cd "$(dirname "$0")/.."
exec flock /tmp/anofast-build.lock python setup.py -q build_ext --inplace -j 2
