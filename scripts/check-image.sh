#!/usr/bin/env bash
# Builds the `cloister` image (deploy/build-image.sh) twice from the same binary, from scratch
# each time, and fails unless both builds give the same image id and manifest digest, and the
# binary inside the image reports the same `cloister measure` value as the one built from.
#
#   scripts/check-image.sh [BINARY]        (default: target/debug/cloister, as the tests build it)
#
# Installs buildah from Debian when it is missing (as root, or with sudo); builds with podman
# when that is installed, else with buildah (BUILDER overrides).
# Leaves the images and their OCI layouts out of the container storage and target/ afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

binary="${1:-${CARGO_TARGET_DIR:-target}/debug/cloister}"
[[ -x "$binary" ]] || { echo "check-image: no binary at $binary (build it first)" >&2; exit 1; }
log() { echo "check-image: $*" >&2; }

# buildah runs the image's binary here (`buildah run --isolation chroot`): podman's OCI runtime
# cannot set rlimits in gVisor sandboxes like this project's machines.
if ! command -v buildah >/dev/null 2>&1; then
  log "installing buildah from Debian"
  if [[ "$(id -u)" == 0 ]]; then apt=(env DEBIAN_FRONTEND=noninteractive apt-get); else apt=(sudo env DEBIAN_FRONTEND=noninteractive apt-get); fi
  "${apt[@]}" update -qq >&2 && "${apt[@]}" install -y -qq buildah >&2
fi
builder="${BUILDER:-$(command -v podman >/dev/null 2>&1 && echo podman || echo buildah)}"
export BUILDER="$builder"

work="$(mktemp -d -t cloister-check-image-XXXXXX)"
tag="localhost/cloister-check:$$"
cleanup() {
  if [[ -n "${container:-}" ]]; then buildah rm "$container" >/dev/null 2>&1 || true; fi
  "$builder" rmi -f "$tag" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

for n in 1 2; do
  bash deploy/build-image.sh --no-cache --tag "$tag" --out "$work/build$n" "$binary" >"$work/build$n.txt"
  "$builder" rmi -f "$tag" >/dev/null
done
cat "$work/build1.txt" >&2
field() { sed -n "s/^$1: *//p" "$2"; }
for what in "image id" "manifest digest"; do
  a="$(field "$what" "$work/build1.txt")" b="$(field "$what" "$work/build2.txt")"
  [[ -n "$a" && "$a" == "$b" ]] || { log "the two builds differ: $what $a vs $b"; exit 1; }
  log "two builds, one $what: $a"
done

# The binary in the image measures as the one built from (the sim measurement is the SHA-384 of
# the executable; hardware TEEs measure the VM or enclave around it, docs/deploy/).
outside="$("$binary" measure "$binary")"
bash deploy/build-image.sh --tag "$tag" --out "$work/build3" "$binary" >/dev/null
container="$(buildah from "$tag")"
inside="$(buildah --isolation chroot run "$container" -- /usr/local/bin/cloister measure /usr/local/bin/cloister)"
[[ "$inside" == "$outside" ]] || { log "measure inside the image $inside, outside $outside"; exit 1; }
log "cloister measure, inside the image and outside: $inside"
