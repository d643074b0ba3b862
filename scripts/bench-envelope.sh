#!/usr/bin/env bash
# Side-by-side benchmark of the sealed envelope (docs/BENCHMARKS.md): `cloister seal`/`open` of one
# file against `rage` (cargo install rage), `openssl enc -aes-256-ctr` and `cat` on the same file,
# best of RUNS, every command on the same cores (all of them; CORES=1 pins each to core 0); then
# the AES-256-GCM ceilings (`openssl speed`, and the AEAD crates in cloister-seal's
# micro-benchmark).
#
# Usage: [CORES=1] scripts/bench-envelope.sh [SIZE_MIB]   (default 1024; build with
#        `cargo build --release -p cloister` first)
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-1024}
runs=${RUNS:-3}
pin=()
if [ "${CORES:-all}" = 1 ]; then pin=(taskset -c 0); fi
bin=${CLOISTER_BIN:-target/release/cloister}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

have_rage=1
command -v rage >/dev/null || { have_rage=0; echo "rage not found (cargo install rage --locked): its rows are left out" >&2; }
head -c $((size_mib << 20)) /dev/urandom >"$work/in"
"$bin" keygen --secret "$work/c.key" --public "$work/c.pub" 2>/dev/null
if [ "$have_rage" = 1 ]; then
  rage-keygen -o "$work/r.key" 2>/dev/null
  rage_pub=$(grep -o 'age1[0-9a-z]*' "$work/r.key" | head -n 1)
fi
key=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
iv=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')

best() { # best wall-clock seconds of $runs runs of "$@"
  local best=999999 t
  for _ in $(seq "$runs"); do
    t=$( { TIMEFORMAT=%R; time "${pin[@]}" "$@" >/dev/null 2>&1; } 2>&1 )
    best=$(awk -v a="$best" -v b="$t" 'BEGIN { print (b < a) ? b : a }')
  done
  echo "$best"
}

cat "$work/in" >/dev/null # warm the page cache
printf '%-34s %8s\n' "command (${size_mib} MiB, cores: ${CORES:-all})" "seconds"
printf '%-34s %8s\n' "cloister seal" "$(best "$bin" seal --recipient "$work/c.pub" --input "$work/in" --output "$work/c.sealed")"
printf '%-34s %8s\n' "cloister open" "$(best "$bin" open --secret "$work/c.key" --input "$work/c.sealed" --output "$work/c.out")"
cmp -s "$work/in" "$work/c.out" || { echo "cloister round trip differs" >&2; exit 1; }
if [ "$have_rage" = 1 ]; then
  printf '%-34s %8s\n' "rage -e" "$(best rage -e -r "$rage_pub" -o "$work/r.age" "$work/in")"
  printf '%-34s %8s\n' "rage -d" "$(best rage -d -i "$work/r.key" -o "$work/r.out" "$work/r.age")"
  cmp -s "$work/in" "$work/r.out" || { echo "rage round trip differs" >&2; exit 1; }
fi
printf '%-34s %8s\n' "openssl enc -aes-256-ctr" "$(best openssl enc -aes-256-ctr -K "$key" -iv "$iv" -in "$work/in" -out "$work/o.enc")"
printf '%-34s %8s\n' "cat (read + write floor)" "$(best sh -c "cat '$work/in' > '$work/cat.out'")"

echo
echo "AES-256-GCM ceiling, openssl speed (16 KiB blocks, 1 core):"
taskset -c 0 openssl speed -evp aes-256-gcm -seconds 3 -bytes 16384 2>/dev/null | tail -n 1
echo
echo "AEAD crates and in-memory seal/open (cloister-seal micro-benchmark):"
"${pin[@]}" cargo run --quiet --release -p cloister-seal --example seal_bench -- "$size_mib"
