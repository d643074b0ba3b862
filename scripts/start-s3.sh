#!/usr/bin/env bash
# Starts a throwaway S3-compatible server for the model-repository tests on 127.0.0.1 only (moto's
# server mode, from PyPI; data in memory) and prints its URL on stdout, everything else on stderr:
#
#   export CLOISTER_TEST_S3_URL="$(bash scripts/start-s3.sh)"
#
# Idempotent: a server already answering on the port is reused. moto[server] is installed into a
# virtual environment under the cache ($CLOISTER_CACHE, default ~/.cache/cloister) when no
# `moto_server` is found; without `python3 -m venv` (Debian's python3-venv), it is installed
# (as root) or pip's --user install is used instead. Stops nothing: stop it with
#   kill "$(cat "$CLOISTER_CACHE/moto-$port.pid")"
set -euo pipefail

port="${CLOISTER_S3_PORT:-54330}"
url="http://127.0.0.1:$port"
cache="${CLOISTER_CACHE:-$HOME/.cache/cloister}"
venv="$cache/moto-venv"
python="${PYTHON:-python3}"
# Pinned: the version the tests were run against (it honours If-None-Match: * on PUT, which makes manifests create-only).
moto_spec="moto[server]==${CLOISTER_MOTO_VERSION:-5.2.1}"

log() { echo "start-s3: $*" >&2; }

answers() {
  "$python" - "$url" <<'EOF' >/dev/null 2>&1
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(sys.argv[1] + "/", timeout=2)
except urllib.error.HTTPError:
    pass  # any HTTP answer means a server is there
EOF
}

if answers; then
  log "a server already answers on $url; reusing it"
  echo "$url"
  exit 0
fi

command -v "$python" >/dev/null 2>&1 || { log "no $python: install python3 first"; exit 1; }
mkdir -p "$cache"

install_venv() {
  "$python" -m venv "$venv" >&2 && "$venv/bin/python" -m pip install -q "$moto_spec" >&2
}

as_root() {
  if [[ "$(id -u)" -eq 0 ]]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else return 1; fi
}

server=""
if [[ -x "$venv/bin/moto_server" ]]; then
  server="$venv/bin/moto_server"
elif command -v moto_server >/dev/null 2>&1; then
  server="$(command -v moto_server)"
else
  log "installing $moto_spec into $venv"
  rm -rf "$venv"
  if ! install_venv; then
    rm -rf "$venv"
    if command -v apt-get >/dev/null 2>&1 &&
      as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 &&
      as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2 &&
      install_venv; then
      :
    else
      rm -rf "$venv"
      log "no usable venv; falling back to pip install --user"
      "$python" -m pip install -q --user "$moto_spec" >&2 ||
        "$python" -m pip install -q --user --break-system-packages "$moto_spec" >&2
    fi
  fi
  if [[ -x "$venv/bin/moto_server" ]]; then
    server="$venv/bin/moto_server"
  else
    user_bin="$("$python" -c 'import site; print(site.USER_BASE)')/bin"
    if [[ -x "$user_bin/moto_server" ]]; then
      server="$user_bin/moto_server"
    else
      server="$(command -v moto_server || true)"
    fi
  fi
fi
[[ -n "$server" ]] || { log "moto_server not found after installing $moto_spec"; exit 1; }

log "starting $server on $url"
nohup "$server" -H 127.0.0.1 -p "$port" >"$cache/moto-$port.log" 2>&1 &
echo $! >"$cache/moto-$port.pid"

for _ in $(seq 1 60); do
  if answers; then
    echo "$url"
    exit 0
  fi
  sleep 0.5
done
log "moto did not answer on $url within 30 s; its log:"
cat "$cache/moto-$port.log" >&2 || true
exit 1
