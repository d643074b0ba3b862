#!/usr/bin/env bash
# Starts a throwaway PostgreSQL server for the store tests on 127.0.0.1 only (trust auth, data in a
# temp dir) and prints its URL on stdout, everything else on stderr:
#
#   export CLOISTER_TEST_POSTGRES_URL="$(bash scripts/start-postgres.sh)"
#
# Idempotent: a server already answering on the port is reused. Installs Debian's `postgresql`
# package when no server binaries are found. Stops nothing: stop it with
#   pg_ctl -D "$CLOISTER_PG_DIR" stop   (as the user that runs it; `postgres` when run as root).
set -euo pipefail

port="${CLOISTER_PG_PORT:-54329}"
data="${CLOISTER_PG_DIR:-${TMPDIR:-/tmp}/cloister-pg-$port}"
database=cloister_test

log() { echo "start-postgres: $*" >&2; }

find_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

bin="$(find_bin)"
if [[ -z "$bin" || ! -x "$bin/initdb" ]]; then
  log "no PostgreSQL server binaries under /usr/lib/postgresql; installing Debian's postgresql"
  if [[ "$(id -u)" -eq 0 ]]; then
    apt=(env DEBIAN_FRONTEND=noninteractive apt-get)
  elif command -v sudo >/dev/null 2>&1; then
    apt=(sudo env DEBIAN_FRONTEND=noninteractive apt-get)
  else
    log "not root and no sudo: install the postgresql package, then run this again"
    exit 1
  fi
  "${apt[@]}" update -qq >&2
  "${apt[@]}" install -y -qq postgresql >&2
  bin="$(find_bin)"
  [[ -n "$bin" && -x "$bin/initdb" ]] || { log "postgresql installed but no initdb found"; exit 1; }
fi

# PostgreSQL refuses to run as root: then the server runs as the package's `postgres` user.
if [[ "$(id -u)" -eq 0 ]]; then
  role=postgres
  id -u "$role" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$role"
  if command -v runuser >/dev/null 2>&1; then
    as_server() { runuser -u "$role" -- "$@"; }
  else
    as_server() { su -s /bin/sh "$role" -c "$(printf '%q ' "$@")"; }
  fi
else
  role="$(id -un)"
  as_server() { "$@"; }
fi

if "$bin/pg_isready" -q -h 127.0.0.1 -p "$port"; then
  log "a server already answers on 127.0.0.1:$port; reusing it"
else
  if [[ ! -f "$data/PG_VERSION" ]]; then
    log "creating a throwaway cluster in $data"
    mkdir -p "$data"
    chmod 700 "$data"
    if [[ "$(id -u)" -eq 0 ]]; then chown "$role" "$data"; fi
    as_server "$bin/initdb" -D "$data" -U "$role" -A trust -E UTF8 --no-sync >/dev/null
  fi
  log "starting PostgreSQL ($bin) on 127.0.0.1:$port"
  # Throwaway test data: no fsync. Enough connections for parallel tests, each with its pools.
  as_server "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 start \
    -o "-k /tmp -h 127.0.0.1 -p $port -c fsync=off -c synchronous_commit=off -c max_connections=300" >&2
fi

if ! "$bin/psql" -h 127.0.0.1 -p "$port" -U "$role" -d postgres -tAc \
  "SELECT 1 FROM pg_database WHERE datname = '$database'" | grep -q 1; then
  "$bin/createdb" -h 127.0.0.1 -p "$port" -U "$role" "$database"
fi

echo "postgres://$role@127.0.0.1:$port/$database"
