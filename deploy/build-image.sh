#!/usr/bin/env bash
# Builds the `cloister` container image (deploy/Containerfile) from a `cloister` binary, with
# podman or buildah and no registry pull, and prints the image id and manifest digest.
#
#   deploy/build-image.sh [options] BINARY
#
#   --tag NAME          image name (default localhost/cloister:<commit, 12 hex>)
#   --out DIR           where the OCI layout and provenance.json go (default target/image)
#   --containerfile F   another Containerfile using the same context (deploy/nitro/ does)
#   --extra FILE        another executable for /usr/local/bin, with its libraries; repeatable
#   --file SRC=DEST     a further file at DEST in the image (mode 0755 if SRC is executable,
#                       else 0644); repeatable
#   --onnxruntime FILE  the onnxruntime library the worker loads (default: the one
#                       scripts/fetch-assets.sh put under $CLOISTER_CACHE/assets, fetched when
#                       absent); its SHA-256 must be the pinned one. Goes to
#                       /usr/local/lib/cloister/libonnxruntime.so.1.31.1, where `serve worker`
#                       looks for it by default (--onnxruntime)
#   --ca-bundle FILE    a CA bundle for /etc/ssl/certs/ca-certificates.crt (default: none; the
#                       worker pins the service's CA with --server-ca and the service's
#                       collateral fetcher carries its own roots)
#   --no-cache          build every step again (the reproducibility check uses it)
#
# The context is assembled in a temporary directory: the binary (and --extra files) under
# /usr/local/bin, the pinned onnxruntime library under /usr/local/lib/cloister, every shared library `ldd` names for them copied from this machine under the
# same path, /etc/passwd and /etc/group (root, and `cloister` with UID/GID 65532),
# /etc/nsswitch.conf (host names from /etc/hosts, then DNS), /tmp, and the
# runtime user's /var/lib/cloister (mode 0700). Every file is owned by root, modes are normalised and every
# timestamp is SOURCE_DATE_EPOCH (default: the commit time of HEAD), and the builder is run with
# --timestamp SOURCE_DATE_EPOCH and no identity label: the same binary, libraries, commit and
# builder give the same image, byte for byte.
#
# Environment: BUILDER (podman or buildah; default whichever is installed, podman first),
# SOURCE_DATE_EPOCH. `ldd` runs the binary's loader: build only binaries you trust, for the
# architecture of this machine.
set -euo pipefail
umask 022

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"

tag=""
out="$repo/target/image"
containerfile="$here/Containerfile"
ca_bundle=""
onnxruntime=""
# The library's pinned SHA-256: crates/cloister-engine/src/onnxruntime.rs (ONNXRUNTIME_SHA256).
onnxruntime_sha256=fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3
onnxruntime_dest=/usr/local/lib/cloister/libonnxruntime.so.1.31.1
no_cache=()
extras=()
files=()
binary=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --tag) tag="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --containerfile) containerfile="$2"; shift 2 ;;
    --extra) extras+=("$2"); shift 2 ;;
    --file) files+=("$2"); shift 2 ;;
    --ca-bundle) ca_bundle="$2"; shift 2 ;;
    --onnxruntime) onnxruntime="$2"; shift 2 ;;
    --no-cache) no_cache=(--no-cache); shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "build-image: unknown option $1" >&2; exit 2 ;;
    *) [[ -z "$binary" ]] || { echo "build-image: one BINARY only" >&2; exit 2; }; binary="$1"; shift ;;
  esac
done
[[ -n "$binary" ]] || { echo "usage: deploy/build-image.sh [options] BINARY (--help)" >&2; exit 2; }
[[ -f "$binary" && -x "$binary" ]] || { echo "build-image: $binary is not an executable file" >&2; exit 1; }

log() { echo "build-image: $*" >&2; }

builder="${BUILDER:-}"
if [[ -z "$builder" ]]; then
  if command -v podman >/dev/null 2>&1; then builder=podman
  elif command -v buildah >/dev/null 2>&1; then builder=buildah
  else
    log "neither podman nor buildah is installed (Debian: apt-get install podman, or buildah)"
    exit 1
  fi
fi

commit="$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)"
dirty=false
if [[ "$commit" != unknown ]] && ! git -C "$repo" diff --quiet HEAD -- 2>/dev/null; then dirty=true; fi
: "${SOURCE_DATE_EPOCH:=$(git -C "$repo" log -1 --format=%ct 2>/dev/null || echo 0)}"
export SOURCE_DATE_EPOCH
[[ -n "$tag" ]] || tag="localhost/cloister:${commit:0:12}"

ctx="$(mktemp -d -t cloister-image-XXXXXX)"
trap 'rm -rf "$ctx"' EXIT
rootfs="$ctx/rootfs"
mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc" "$rootfs/tmp" "$rootfs/var/lib" "$ctx/state/cloister"

# Shared libraries, as `ldd` resolves them here; one JSON object per line for the provenance.
libraries="$ctx/libraries.jsonl"
: >"$libraries"
copy_libraries() {
  local exe="$1" line path
  if ! ldd "$exe" >"$ctx/ldd.txt" 2>&1; then
    if grep -qE 'not a dynamic executable|statically linked' "$ctx/ldd.txt"; then return 0; fi
    log "ldd $exe failed:"; cat "$ctx/ldd.txt" >&2; exit 1
  fi
  while read -r line; do
    case "$line" in
      *"=> not found"*) log "ldd: $exe needs a library this machine lacks: $line"; exit 1 ;;
      *"=> /"*) path="${line#*=> }"; path="${path%% (*}" ;;
      /*) path="${line%% (*}" ;;
      *) continue ;; # linux-vdso.so.1 and friends live in the kernel
    esac
    [[ -e "$rootfs$path" ]] && continue
    mkdir -p "$rootfs$(dirname "$path")"
    cp -L "$path" "$rootfs$path"
    local package version
    package="$(dpkg -S "$path" 2>/dev/null | head -n1 | cut -d: -f1 || true)"
    [[ -n "$package" ]] || package="$(dpkg -S "$(readlink -f "$path")" 2>/dev/null | head -n1 | cut -d: -f1 || true)"
    version=""
    [[ -z "$package" ]] || version="$(dpkg-query -W -f='${Version}' "$package" 2>/dev/null || true)"
    printf '{"path":"%s","sha256":"%s","package":"%s","version":"%s"}\n' "$path" \
      "$(sha256sum "$rootfs$path" | cut -d' ' -f1)" "$package" "$version" >>"$libraries"
  done <"$ctx/ldd.txt"
}

cp "$binary" "$rootfs/usr/local/bin/cloister"
copy_libraries "$binary"
for extra in "${extras[@]}"; do
  [[ -f "$extra" && -x "$extra" ]] || { log "--extra $extra is not an executable file"; exit 1; }
  cp -L "$extra" "$rootfs/usr/local/bin/$(basename "$extra")"
  copy_libraries "$extra"
done
# The onnxruntime library: in the image, so the measurement covers it; the worker checks its
# SHA-256 again before loading it.
if [[ -z "$onnxruntime" ]]; then
  onnxruntime="${CLOISTER_CACHE:-$HOME/.cache/cloister}/assets/onnxruntime/onnxruntime/capi/libonnxruntime.so.1.31.1"
  [[ -f "$onnxruntime" ]] || bash "$repo/scripts/fetch-assets.sh" >&2
fi
[[ -f "$onnxruntime" ]] || { log "--onnxruntime $onnxruntime is not a file"; exit 1; }
if [[ "$(sha256sum "$onnxruntime" | cut -d' ' -f1)" != "$onnxruntime_sha256" ]]; then
  log "$onnxruntime is not the pinned onnxruntime library (SHA-256 $onnxruntime_sha256)"; exit 1
fi
mkdir -p "$rootfs$(dirname "$onnxruntime_dest")"
cp -L "$onnxruntime" "$rootfs$onnxruntime_dest"
printf '{"path":"%s","sha256":"%s","package":"%s","version":"%s"}\n' "$onnxruntime_dest" \
  "$onnxruntime_sha256" "onnxruntime (PyPI wheel, cp311-cp311-manylinux_2_28_x86_64)" "1.31.1" >>"$libraries"
if [[ -n "$ca_bundle" ]]; then
  mkdir -p "$rootfs/etc/ssl/certs"
  cp -L "$ca_bundle" "$rootfs/etc/ssl/certs/ca-certificates.crt"
fi
printf 'root:x:0:0:root:/root:/sbin/nologin\ncloister:x:65532:65532:cloister:/var/lib/cloister:/sbin/nologin\n' \
  >"$rootfs/etc/passwd"
printf 'root:x:0:\ncloister:x:65532:\n' >"$rootfs/etc/group"
printf 'hosts: files dns\n' >"$rootfs/etc/nsswitch.conf"
for spec in "${files[@]}"; do
  src="${spec%%=*}" dest="${spec#*=}"
  [[ "$spec" == *=/* && -f "$src" ]] || { log "--file $spec: want SRC=/absolute/DEST with SRC a file"; exit 1; }
  mkdir -p "$rootfs$(dirname "$dest")"
  cp -L "$src" "$rootfs$dest"
  if [[ -x "$src" ]]; then touch "$ctx/executable$(echo "$dest" | tr / _)"; fi
done

# Normalise: modes, and every timestamp (links included) to SOURCE_DATE_EPOCH.
find "$rootfs" -type d -exec chmod 0755 {} +
find "$rootfs" -type f -exec chmod 0644 {} +
find "$rootfs/usr/local/bin" -type f -exec chmod 0755 {} +
find "$rootfs" -type f \( -name '*.so' -o -name '*.so.*' \) -exec chmod 0755 {} +
for spec in "${files[@]}"; do
  dest="${spec#*=}"
  if [[ -e "$ctx/executable$(echo "$dest" | tr / _)" ]]; then chmod 0755 "$rootfs$dest"; fi
done
chmod 1777 "$rootfs/tmp"
chmod 0755 "$ctx/state"
chmod 0700 "$ctx/state/cloister"
find "$ctx/rootfs" "$ctx/state" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

binary_sha256="$(sha256sum "$binary" | cut -d' ' -f1)"
created="$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)"
log "building $tag with $builder ($("$builder" --version)), SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH"
"$builder" build "${no_cache[@]}" --format oci --timestamp "$SOURCE_DATE_EPOCH" \
  --identity-label=false --layers=false \
  --label "org.opencontainers.image.revision=$commit" \
  --label "org.opencontainers.image.created=$created" \
  --label "org.opencontainers.image.title=cloister" \
  --label "dev.cloister.binary.sha256=$binary_sha256" \
  -f "$containerfile" -t "$tag" "$ctx" >&2

case "$builder" in
  podman) image_id="$(podman image inspect --format '{{.Id}}' "$tag")" ;;
  *) image_id="$(buildah inspect --type image --format '{{.FromImageID}}' "$tag")" ;;
esac
image_id="sha256:${image_id#sha256:}"

# The manifest digest: what a registry and a pod spec (`image: …@sha256:…`) name. Written as an
# OCI layout under --out, which `skopeo copy oci:DIR:TAG docker://…` or `podman push` publish.
mkdir -p "$out"
rm -rf "$out/oci"
"$builder" push --digestfile "$out/digest" "$tag" "oci:$out/oci:${tag##*:}" >&2
digest="$(cat "$out/digest")"

# The simulated TEE's measurement of the binary (SHA-384 of the executable): what a `dev-sim`
# instance lists. Hardware TEEs measure something else (below).
sim_measurement=""
if sim_measurement="$("$binary" measure "$binary" 2>/dev/null)"; then :; else sim_measurement=""; fi

{
  printf '{\n'
  printf '  "image": "%s",\n' "$tag"
  printf '  "image_id": "%s",\n' "$image_id"
  printf '  "manifest_digest": "%s",\n' "$digest"
  printf '  "commit": "%s",\n' "$commit"
  printf '  "worktree_dirty": %s,\n' "$dirty"
  printf '  "source_date_epoch": %s,\n' "$SOURCE_DATE_EPOCH"
  printf '  "builder": "%s",\n' "$("$builder" --version)"
  printf '  "binary_sha256": "%s",\n' "$binary_sha256"
  printf '  "sim_measurement": "%s",\n' "$sim_measurement"
  printf '  "libraries": [%s]\n' "$(paste -sd, "$libraries")"
  printf '}\n'
} >"$out/provenance.json"

cat <<EOF
image:            $tag
image id:         $image_id
manifest digest:  $digest
provenance:       $out/provenance.json (commit $commit$([[ $dirty == true ]] && echo ', with uncommitted changes'))
sim measurement:  ${sim_measurement:-"(run: $binary measure $binary)"}

What to measure for the attestation instance (docs/deploy/):
  sim           $binary measure $binary   (SHA-384 of the binary, printed above)
  TDX, SNP      the image is not what the TEE measures: the confidential VM (or Kata pod VM) is.
                cloister measure --tee snp --ovmf OVMF --kernel K --initrd I --append CMDLINE \\
                    --vcpus N --vcpu-type TYPE --json        (launch_digest)
                cloister measure --tee tdx --event-log CCEL --json   (rtmr0..rtmr3; MRTD from the
                    first real quote); pin the image by digest: ${tag%:*}@$digest
  SGX           build the Gramine enclave from this binary (deploy/gramine/), then
                cloister measure --tee sgx --sigstruct cloister.sig --json   (mrenclave, mrsigner)
  Nitro         deploy/nitro/ builds the EIF; nitro-cli build-enclave prints PCR0
EOF
