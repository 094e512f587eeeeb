#!/usr/bin/env bash
# Rebuilds anofast._C in place (for an editable install), serialised by a lock so parallel builds don't collide.
set -euo pipefail
cd "$(dirname "$0")/.."
# ccache (when installed) makes a rebuild recompile only the files that changed.
if command -v ccache >/dev/null 2>&1; then
  export CC="${CC:-ccache gcc}" CXX="${CXX:-ccache g++}"
fi
exec flock /tmp/anofast-build.lock python setup.py -q build_ext --inplace -j 2
