#!/usr/bin/env bash
# The one device call of issue 16 (see bench/README.md): wheels carried in .whl/ (optional), then the suite,
# its log beside its JSON and table in $OUT. Arguments go to bench/gpu_suite.py (--budget, --only).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/gpu_suite}"
mkdir -p "$out"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv 2>&1 | tee "$out/gpu_suite.log"
PYTHONUNBUFFERED=1 python3 bench/gpu_suite.py --out "$out" "$@" 2>&1 | tee -a "$out/gpu_suite.log"
