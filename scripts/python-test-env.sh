#!/usr/bin/env bash
# Creates (once) a Python virtual environment with a pinned `openai` package for the online
# inference tests, and prints the path of its interpreter:
#   export CLOISTER_TEST_PYTHON="$(scripts/python-test-env.sh)"
# The environment lives under ${CLOISTER_CACHE:-$HOME/.cache/cloister}/pyenv.
set -euo pipefail

OPENAI_VERSION="1.82.0"
cache="${CLOISTER_CACHE:-$HOME/.cache/cloister}"
env_dir="$cache/pyenv"
python="${PYTHON:-python3}"

if ! "$env_dir/bin/python" -c "import openai, sys; sys.exit(openai.__version__ != '$OPENAI_VERSION')" 2>/dev/null; then
    mkdir -p "$cache"
    "$python" -m venv "$env_dir" >&2
    "$env_dir/bin/python" -m pip install --quiet --disable-pip-version-check \
        "openai==$OPENAI_VERSION" >&2
fi
echo "$env_dir/bin/python"
