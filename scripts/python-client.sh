#!/usr/bin/env bash
# Builds the Python client (python/, `import cloister`) into a virtual environment and runs its
# pytest suite:
#   bash scripts/python-client.sh [PYTEST ARGS...]
# The environment, with pinned maturin and pytest, lives under
# ${CLOISTER_CACHE:-$HOME/.cache/cloister}/pyclient. The extension is built in the dev profile in
# ${CARGO_TARGET_DIR:-target}, the workspace's own target directory, so that the crates `cargo
# test` already built there with the same features are reused (python/README.md says how many).
# The tests that start `cloister` processes use
# ${CLOISTER_BIN:-$CARGO_TARGET_DIR/debug/cloister}; in CI (`CI` set) they fail without it.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"

MATURIN_VERSION="1.16.0"
PYTEST_VERSION="9.2.0"
cache="${CLOISTER_CACHE:-$HOME/.cache/cloister}"
env_dir="$cache/pyclient"
python="${PYTHON:-python3}"

if ! "$env_dir/bin/python" -c "
import sys
from importlib.metadata import version
sys.exit(version('maturin') != '$MATURIN_VERSION' or version('pytest') != '$PYTEST_VERSION')
" 2>/dev/null; then
    mkdir -p "$cache"
    "$python" -m venv "$env_dir"
    "$env_dir/bin/python" -m pip install --quiet --disable-pip-version-check \
        "maturin==$MATURIN_VERSION" "pytest==$PYTEST_VERSION"
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}"
case "$CARGO_TARGET_DIR" in /*) ;; *) CARGO_TARGET_DIR="$repo/$CARGO_TARGET_DIR" ;; esac
# `pip install ./python` with the pinned maturin as the build backend (no download at build time).
start=$SECONDS
PATH="$env_dir/bin:$PATH" "$env_dir/bin/python" -m pip install --quiet --disable-pip-version-check \
    --no-build-isolation --no-deps --force-reinstall ./python
echo "python-client: built and installed in $((SECONDS - start)) s" >&2

export CLOISTER_BIN="${CLOISTER_BIN:-$CARGO_TARGET_DIR/debug/cloister}"
cd python
# The installed package, not python/cloister/ (which has no compiled module): `pytest`, not
# `python -m pytest`, which would put the current directory first on the path.
exec "$env_dir/bin/pytest" -q "$@"
