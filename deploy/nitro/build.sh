#!/usr/bin/env bash
# Builds the Nitro Enclave image of the Cloister worker (deploy/nitro/Containerfile) with podman
# or buildah, reproducibly (deploy/build-image.sh), and saves it as a Docker archive for
# `nitro-cli build-enclave` on a machine with Docker (the parent instance, say).
#
#   deploy/nitro/build.sh --authority https://attest.example.com:8443 --instance in_… \
#       --service-fingerprint HEX --server-ca service-ca.pem [--out DIR] BINARY
#
# Needs socat and a static busybox on this machine (Debian: apt-get install socat
# busybox-static); they are copied into the image with their libraries.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
authority="" instance="" fingerprint="" server_ca="" out="" binary=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --authority) authority="$2"; shift 2 ;;
    --instance) instance="$2"; shift 2 ;;
    --service-fingerprint) fingerprint="$2"; shift 2 ;;
    --server-ca) server_ca="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "nitro/build: unknown option $1" >&2; exit 2 ;;
    *) binary="$1"; shift ;;
  esac
done
fail() { echo "nitro/build: $*" >&2; exit 1; }
[[ -n "$binary" ]] || fail "usage: deploy/nitro/build.sh --authority URL --instance ID --service-fingerprint HEX --server-ca FILE BINARY"
[[ "$authority" =~ ^https://([A-Za-z0-9.-]+)(:([0-9]+))?/?$ ]] ||
  fail "--authority must be https://HOST[:PORT] (a host name: the enclave maps it to its vsock bridge)"
service_host="${BASH_REMATCH[1]}"
service_port="${BASH_REMATCH[3]:-443}"
[[ "$instance" =~ ^in_[0-9a-z]+$ ]] || fail "--instance must be an instance id (in_…)"
[[ "$fingerprint" =~ ^[0-9a-f]{64}$ ]] || fail "--service-fingerprint must be 64 lowercase hex digits"
[[ -f "$server_ca" ]] || fail "--server-ca must be the service's CA certificate (PEM)"
socat="$(command -v socat)" || fail "socat is not installed (apt-get install socat)"
busybox="$(command -v busybox)" || fail "busybox is not installed (apt-get install busybox-static)"
ldd "$busybox" >/dev/null 2>&1 && fail "$busybox is dynamically linked; install busybox-static"

work="$(mktemp -d -t cloister-nitro-XXXXXX)"
trap 'rm -rf "$work"' EXIT
cat >"$work/worker.env" <<EOF
CLOISTER_SERVICE_HOST=$service_host
CLOISTER_SERVICE_PORT=$service_port
CLOISTER_INSTANCE=$instance
CLOISTER_SERVICE_FINGERPRINT=$fingerprint
EOF
printf '127.0.0.1 localhost\n127.0.0.1 %s\n' "$service_host" >"$work/hosts"

commit="$(git -C "$here/.." rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
tag="localhost/cloister-nitro:$commit"
out="${out:-$(cd "$here/../.." && pwd)/target/image-nitro}"
bash "$here/../build-image.sh" --tag "$tag" --out "$out" \
  --containerfile "$here/Containerfile" \
  --extra "$socat" --extra "$busybox" \
  --file "$here/enclave-entry.sh=/usr/local/bin/enclave-entry" \
  --file "$work/worker.env=/etc/cloister/worker.env" \
  --file "$server_ca=/etc/cloister/service-ca.pem" \
  --file "$work/hosts=/etc/hosts" \
  "$binary" | sed -n '1,5p'

builder="${BUILDER:-$(command -v podman >/dev/null 2>&1 && echo podman || echo buildah)}"
rm -f "$out/cloister-nitro.tar"
"$builder" push "$tag" "docker-archive:$out/cloister-nitro.tar:cloister-nitro:$commit" >&2

cat <<EOF
docker archive:   $out/cloister-nitro.tar

On the parent instance (Docker and aws-nitro-enclaves-cli installed, allocator running):
  docker load -i cloister-nitro.tar
  nitro-cli build-enclave --docker-uri cloister-nitro:$commit --output-file cloister.eif
      # prints PCR0 (the instance's reference measurement), PCR1, PCR2
  nitro-cli run-enclave --eif-path cloister.eif --cpu-count 2 --memory 8192 --enclave-cid 16
  socat TCP-LISTEN:8443,fork,reuseaddr VSOCK-CONNECT:16:9443 &          # parties → worker
  vsock-proxy 8001 $service_host $service_port &   # worker → service
      # (the host must be allowed in /etc/nitro_enclaves/vsock-proxy.yaml)
EOF
